"""How a tool's answer and a tool's failure read to a model.

Answers are compact JSON text. One longer than ``[mcpd].max_answer_chars`` is cut where it
can be paged: the longest list in the answer (``results``, ``rows``, ``traces``, ...) keeps as
many leading items as fit, and ``_truncated`` says what was cut and how to ask for the rest.
An answer with no such list is cut as text, with the same note at the end.

Failures name the daemon: a 4xx carries the daemon's own message (the model can correct its
call), a 5xx or a timeout says which daemon failed; neither carries a stack trace.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..clients.base import UpstreamError

__all__ = ["render", "failure_message", "TRUNCATED_KEY"]

#: the key that marks a cut answer (a leading underscore: no daemon answers with it)
TRUNCATED_KEY = "_truncated"
#: characters of a 4xx answer's extra fields quoted in a tool error
_BODY_QUOTE_CHARS = 2000


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def render(answer: Any, limit: int, how_to_page: str) -> tuple[str, bool]:
    """``(text, truncated)``: ``answer`` as JSON of at most about ``limit`` characters."""
    text = _dumps(answer)
    if len(text) <= limit:
        return text, False
    wrapped = isinstance(answer, list)
    doc: dict[str, Any] = {"items": answer} if wrapped else answer if isinstance(answer, dict) else {}
    lists = [k for k, v in doc.items() if isinstance(v, list) and v]
    if lists:
        key = max(lists, key=lambda k: len(_dumps(doc[k])))
        items = doc[key]

        def attempt(n: int) -> str:
            note = {
                "field": key,
                "returned": n,
                "total": len(items),
                "how_to_page": how_to_page,
            }
            return _dumps({**doc, key: items[:n], TRUNCATED_KEY: note})

        lo, hi = 0, len(items)  # the largest n whose text fits: binary search
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(attempt(mid)) <= limit:
                lo = mid
            else:
                hi = mid - 1
        cut = attempt(lo)
        if len(cut) <= limit:
            return cut, True
    note = (
        f"\n[truncated: {limit} of {len(text)} characters shown; {how_to_page}]"
    )
    return text[: max(0, limit - len(note))] + note, True


def _is_timeout(exc: UpstreamError) -> bool:
    return exc.status == 504 or (
        exc.status is None and isinstance(exc.__cause__, asyncio.TimeoutError | TimeoutError)
    )


def failure_message(exc: UpstreamError, gateway_url: str) -> str:
    """What a model reads when a gateway call failed (never a traceback)."""
    daemon = exc.service
    if exc.status is None:
        if _is_timeout(exc):
            return f"{daemon} did not answer in time (through the gateway at {gateway_url}); try again later"
        return f"the gateway at {gateway_url} could not be reached, so {daemon} was not called: is the stack up?"
    if exc.status >= 500:
        if exc.status == 504:
            return f"{daemon} timed out (504): {exc.message}"
        return f"{daemon} failed ({exc.status}): {exc.message}"
    text = f"{daemon} refused the call ({exc.status}): {exc.message}"
    body = exc.body
    if isinstance(body, dict) and set(body) - {"error"}:
        quoted = _dumps(body)
        if quoted not in text:
            if len(quoted) > _BODY_QUOTE_CHARS:
                quoted = quoted[:_BODY_QUOTE_CHARS] + "...(cut)"
            text += f"\nanswer: {quoted}"
    return text
