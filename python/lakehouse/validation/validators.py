"""The fill, email and playbook validators (contract section 13.3).

Each validator takes the artifact (a JSON object, with the caller's context under
``_context``) and the worker roster, and returns a :class:`Report` or raises the first
:class:`ValidationError` it meets. :func:`validate` picks one by kind (``fill``, ``email``,
``playbook``) and injects the context; an unknown kind raises :class:`UnknownKind`.

The reasons for the reference's six parity cases are byte-exact (section 13.2). For the
messages the contract only quotes in part, the wording is ours and follows the reference's
style (``'single quotes'`` around values, "doesn't match contract city"); docs/llm.md lists
every one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from .report import Report, ValidationError, rust_debug
from .workers import Worker, WorkerRoster

__all__ = [
    "KINDS",
    "UnknownKind",
    "contains_salary_disclosure",
    "contains_ssn_pattern",
    "grounded_in_roster",
    "inject_context",
    "validate",
    "validate_email",
    "validate_fill",
    "validate_playbook",
]

SMS_MAX_CHARS = 160
SUBJECT_MAX_CHARS = 78
#: how close a salary keyword and a $ amount must be (characters between them)
SALARY_WINDOW = 40


class UnknownKind(ValueError):
    """``kind`` names no validator (HTTP 400)."""


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _context(artifact: Mapping[str, Any]) -> dict[str, Any]:
    ctx = artifact.get("_context")
    if ctx is None:
        return {}
    if not isinstance(ctx, dict):
        raise ValidationError.schema("_context", "must be an object")
    return ctx


def _ctx_text(ctx: Mapping[str, Any], key: str) -> str | None:
    value = ctx.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError.schema(f"_context.{key}", "must be a string")
    return value.strip() or None


def _count(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError.schema(field, "must be a non-negative integer")
    return value


# -- fill -------------------------------------------------------------------------------


def validate_fill(artifact: Mapping[str, Any], roster: WorkerRoster) -> Report:
    """``staffing.fill``: ``{fills: [{candidate_id, name}], _context?}``.

    Order: schema -> completeness (count == ``target_count``) -> consistency (per fill:
    phantom id, inactive worker, city / state / role against the context, duplicate id) ->
    policy (client blacklist). A name that differs from the roster is a Warning only.
    """
    report = Report("staffing.fill")
    ctx = _context(artifact)
    fills = artifact.get("fills")
    if not isinstance(fills, list):
        raise ValidationError.schema("fills", "missing or not an array")
    for i, fill in enumerate(fills):
        if not isinstance(fill, dict):
            raise ValidationError.schema(f"fills[{i}]", "must be an object")
        cid = fill.get("candidate_id")
        if not isinstance(cid, str) or not cid.strip():
            raise ValidationError.schema(f"fills[{i}].candidate_id", "missing or not a non-empty string")
        if not isinstance(fill.get("name"), str):
            raise ValidationError.schema(f"fills[{i}].name", "missing or not a string")
    target = _count(ctx.get("target_count"), "_context.target_count")
    wanted = {key: _ctx_text(ctx, key) for key in ("city", "state", "role")}
    client = _ctx_text(ctx, "client_id")
    blacklist = ctx.get("blacklist")
    if blacklist is not None and (
        not isinstance(blacklist, list) or not all(isinstance(b, str) for b in blacklist)
    ):
        raise ValidationError.schema("_context.blacklist", "must be an array of strings")

    if target is not None and len(fills) != target:
        raise ValidationError.completeness(
            f"fills has {len(fills)} endorsed candidates but target_count is {target}"
        )
    if not fills:
        raise ValidationError.completeness("fills must be non-empty")

    workers: list[Worker] = []
    seen: dict[str, int] = {}
    for i, fill in enumerate(fills):
        cid = fill["candidate_id"].strip()
        worker = roster.get(cid)
        if worker is None:
            raise ValidationError.consistency(
                f"fills[{i}].candidate_id '{cid}' does not exist in worker roster"
            )
        if not worker.active:
            raise ValidationError.consistency(
                f"fills[{i}].candidate_id '{cid}' is not active (status '{worker.status}')"
            )
        for key, want in wanted.items():
            have = getattr(worker, key)
            if want is None:
                continue
            if have is None:
                report.warn(f"roster has no {key} for '{cid}'; {key} not checked", f"fills[{i}]")
            elif _norm(have) != _norm(want):
                raise ValidationError.consistency(
                    f"fills[{i}] {key} '{have}' doesn't match contract {key} '{want}'"
                )
        first = seen.setdefault(cid.casefold(), i)
        if first != i:
            raise ValidationError.consistency(
                f"fills[{i}].candidate_id '{cid}' duplicates fills[{first}]"
            )
        workers.append(worker)

    banned = {b.strip().casefold() for b in blacklist or []}
    for i, (fill, worker) in enumerate(zip(fills, workers, strict=True)):
        cid = fill["candidate_id"].strip()
        if client is not None and client.casefold() in worker.blacklisted_clients:
            raise ValidationError.policy(
                f"fills[{i}].candidate_id '{cid}' is blacklisted for client '{client}'"
            )
        if cid.casefold() in banned:
            raise ValidationError.policy(
                f"fills[{i}].candidate_id '{cid}' is on the client blacklist"
            )

    for i, (fill, worker) in enumerate(zip(fills, workers, strict=True)):
        name = fill["name"]
        if worker.name is not None and _norm(name) != _norm(worker.name):
            report.warn(
                f"fills[{i}].name '{name}' differs from roster name '{worker.name}'",
                f"fills[{i}].name",
            )
    return report


# -- email ------------------------------------------------------------------------------

# The flanking-digit guard: a longer run of digits (an account number, 1234-56-78901) is not
# an SSN. Phone numbers (3-3-4) never match the 3-2-4 shape.
_SSN = re.compile(r"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])", re.ASCII)
_SALARY_WORD = re.compile(
    r"\b(?:salary|salaries|wage|wages|pay|pays|paying|paid|payrate|pay rate|compensation"
    r"|earn|earns|earning|earnings|income|hourly|rate)\b",
    re.IGNORECASE,
)
_AMOUNT = re.compile(r"\$\s?[0-9][0-9,]*(?:\.[0-9]+)?")


def contains_ssn_pattern(text: str) -> bool:
    """True when ``text`` holds an ``NNN-NN-NNNN`` sequence not inside a longer digit run."""
    return _SSN.search(text) is not None


def contains_salary_disclosure(text: str) -> bool:
    """True when a salary keyword and a ``$`` amount sit within :data:`SALARY_WINDOW` chars."""
    words = [(m.start(), m.end()) for m in _SALARY_WORD.finditer(text)]
    if not words:
        return False
    for amount in _AMOUNT.finditer(text):
        for start, end in words:
            gap = amount.start() - end if start < amount.start() else start - amount.end()
            if gap <= SALARY_WINDOW:
                return True
    return False


def _channel(artifact: Mapping[str, Any], to: str) -> str:
    for key in ("channel", "type", "kind"):
        value = artifact.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or value.strip().lower() not in ("sms", "email"):
            raise ValidationError.schema(key, "must be 'sms' or 'email'")
        return value.strip().lower()
    return "email" if "@" in to else "sms"


def validate_email(artifact: Mapping[str, Any], roster: WorkerRoster) -> Report:
    """``staffing.email``: ``{to, body, subject?, channel?, name?, _context?}``.

    Order: schema (``to``, ``body``) -> length (SMS body <= 160 characters, email subject <=
    78) -> PII (SSN pattern, salary disclosure, in subject and body) -> worker-name
    consistency when ``_context.candidate_id`` is given. The channel is ``channel`` /
    ``type`` / ``kind`` when present, else ``email`` when ``to`` holds an ``@``, else ``sms``.
    """
    report = Report("staffing.email")
    ctx = _context(artifact)
    to = artifact.get("to")
    if not isinstance(to, str) or not to.strip():
        raise ValidationError.schema("to", "missing or empty")
    body = artifact.get("body")
    if not isinstance(body, str):
        raise ValidationError.schema("body", "missing or not a string")
    subject = artifact.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise ValidationError.schema("subject", "must be a string")
    channel = _channel(artifact, to)
    candidate_id = _ctx_text(ctx, "candidate_id")

    if channel == "sms" and len(body) > SMS_MAX_CHARS:
        raise ValidationError.schema(
            "body", f"SMS body is {len(body)} characters; the limit is {SMS_MAX_CHARS}"
        )
    if channel == "email" and subject is not None and len(subject) > SUBJECT_MAX_CHARS:
        raise ValidationError.schema(
            "subject", f"subject is {len(subject)} characters; the limit is {SUBJECT_MAX_CHARS}"
        )

    parts = [("subject", subject or ""), ("body", body)]
    for where, text in parts:
        if contains_ssn_pattern(text):
            raise ValidationError.policy(
                f"SSN-shaped sequence in {where} — personal identifiers must not be sent"
            )
    for where, text in parts:
        if contains_salary_disclosure(text):
            raise ValidationError.policy(
                f"salary disclosure in {where} — pay amounts must not be sent in outreach"
            )

    if candidate_id is not None:
        worker = roster.get(candidate_id)
        if worker is None:
            raise ValidationError.consistency(
                f"_context.candidate_id '{candidate_id}' does not exist in worker roster"
            )
        named = next(
            (artifact[k] for k in ("name", "candidate_name", "to_name") if isinstance(artifact.get(k), str)),
            None,
        )
        if worker.name is not None:
            if named is not None and _norm(named) != _norm(worker.name):
                raise ValidationError.consistency(
                    f"name '{named}' doesn't match roster name '{worker.name}' "
                    f"for candidate_id '{candidate_id}'"
                )
            first = worker.name.split()[0]
            if not re.search(rf"\b{re.escape(first)}\b", body, re.IGNORECASE):
                report.warn(f"body does not mention the candidate's name '{worker.name}'", "body")
    return report


# -- playbook ---------------------------------------------------------------------------


def validate_playbook(artifact: Mapping[str, Any], roster: WorkerRoster) -> Report:
    """``staffing.playbook``: ``{operation, endorsed_names, target_count?, fingerprint}``.

    In the contract's order: ``operation`` starts with ``fill: ``; ``endorsed_names`` is
    non-empty and at most ``target_count × 2`` (``target_count`` from the artifact, else
    ``_context``; no upper bound when neither has it); ``fingerprint`` is present.
    """
    report = Report("staffing.playbook")
    ctx = _context(artifact)
    op = artifact.get("operation")
    op_text = op if isinstance(op, str) else ""
    if not op_text.startswith("fill: "):
        raise ValidationError.schema(
            "operation", f"expected `fill: ...` prefix, got {rust_debug(op_text)}"
        )
    names = artifact.get("endorsed_names")
    if names is None:
        names = []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError.schema("endorsed_names", "must be an array of strings")
    if not names:
        raise ValidationError.completeness("endorsed_names must be non-empty")
    target = (
        _count(artifact["target_count"], "target_count")
        if artifact.get("target_count") is not None
        else _count(ctx.get("target_count"), "_context.target_count")
    )
    if target is not None and len(names) > target * 2:
        raise ValidationError.completeness(
            f"endorsed_names ({len(names)}) exceeds target_count × 2 ({target * 2})"
        )
    fingerprint = artifact.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        raise ValidationError.schema(
            "fingerprint", "missing — required for Phase 25 validity window"
        )
    return report


# -- dispatch ---------------------------------------------------------------------------

Validator = Callable[[Mapping[str, Any], WorkerRoster], Report]

#: kind -> validator
KINDS: dict[str, Validator] = {
    "fill": validate_fill,
    "email": validate_email,
    "playbook": validate_playbook,
}


def inject_context(artifact: Mapping[str, Any], context: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``artifact`` with ``context`` merged into its ``_context`` (context wins)."""
    out = dict(artifact)
    if context:
        existing = out.get("_context")
        base = existing if isinstance(existing, dict) else {}
        out["_context"] = {**base, **context}
    return out


def validate(
    kind: str,
    artifact: Mapping[str, Any],
    roster: WorkerRoster,
    context: Mapping[str, Any] | None = None,
) -> Report:
    """Run the ``kind`` validator on ``artifact`` with ``context`` injected as ``_context``.

    Returns the :class:`Report` (``elapsed_ms`` filled in); raises :class:`ValidationError`
    on failure and :class:`UnknownKind` for a kind with no validator.
    """
    validator = KINDS.get(kind)
    if validator is None:
        raise UnknownKind(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    start = time.perf_counter()
    report = validator(inject_context(artifact, context), roster)
    report.elapsed_ms = int((time.perf_counter() - start) * 1000)
    return report


def grounded_in_roster(kind: str, artifact: Mapping[str, Any] | None, roster: WorkerRoster) -> bool | None:
    """The session log's forensic bit: every fill's candidate exists in the roster.

    None when not applicable (email, playbook) or when there is no artifact to judge.
    """
    if kind != "fill" or artifact is None:
        return None
    fills = artifact.get("fills")
    if not isinstance(fills, list) or not fills:
        return False
    return all(
        isinstance(f, dict) and isinstance(f.get("candidate_id"), str) and f["candidate_id"] in roster
        for f in fills
    )
