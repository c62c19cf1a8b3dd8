"""``extract_json``: the first JSON object in a model's answer (contract section 13.5).

The search, in order:

1. fenced blocks: every ```` ```json ```` block, then every plain ```` ``` ```` block, each
   searched as in step 2;
2. the whole text: candidates are the ``{`` ... ``}`` spans whose braces balance (counted
   outside JSON strings, with backslash escapes honoured), in order of their opening brace;
   the first span that parses as a JSON object wins. A balanced span that does not parse is
   skipped **with everything inside it**, so a broken object never yields one of its nested
   objects; an opening brace that never closes ends the search (the text is truncated
   output, and the objects nested in it are fragments, not the answer).

So: a fenced block gives its content; prose around bare braces is ignored; of several
objects the first balanced one wins; a nested object returns the outer one; unicode and
escaped quotes inside strings are fine; ``{}`` matches; a top-level array yields its first
inner object; text without JSON, or with a balanced but invalid object, does not match; and
trailing garbage after a valid object is ignored. The 12 fixture classes are tested one by
one in tests/llm/test_extract_json.py.

Quote tracking starts at an opening brace: stray quotes in the prose before it are ignored.
The scan is linear in the text size: one pass pairs the braces, and the spans tried are
disjoint, so each character is parsed at most once.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["extract_json", "extract_json_report"]

_FENCE = re.compile(r"```([A-Za-z0-9_-]*)[^\S\n]*\n?(.*?)```", re.DOTALL)


def _pair_braces(text: str) -> list[tuple[int, int | None]]:
    """``(open, close)`` for each ``{`` in order; ``close`` is None when it never closes.

    String state is tracked only while some brace is open, so quotes in prose are ignored.
    """
    pairs: list[tuple[int, int | None]] = []
    stack: list[int] = []  # indexes into pairs
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == "{":
            stack.append(len(pairs))
            pairs.append((i, None))
        elif ch == "}":
            if stack:
                idx = stack.pop()
                pairs[idx] = (pairs[idx][0], i)
        elif ch == '"' and stack:
            in_string = True
    return pairs


def _first_object(text: str) -> dict[str, Any] | None:
    skip_until = -1
    for start, end in _pair_braces(text):
        if start <= skip_until:
            continue  # inside a balanced span that did not parse
        if end is None:
            return None  # truncated: whatever is nested inside is a fragment
        try:
            value = orjson.loads(text[start : end + 1])
        except orjson.JSONDecodeError:
            skip_until = end
            continue
        if isinstance(value, dict):
            return value
    return None


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (see the module docstring), or None."""
    if not isinstance(text, str):
        raise TypeError("extract_json expects a string")
    if "```" in text:
        blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
        ordered = [b for t, b in blocks if t == "json"] + [b for t, b in blocks if t != "json"]
        for body in ordered:
            found = _first_object(body)
            if found is not None:
                return found
    return _first_object(text)


def extract_json_report(text: str) -> dict[str, Any]:
    """``{matched, value}``, the reference's parity helper output."""
    value = extract_json(text)
    return {"matched": value is not None, "value": value}
