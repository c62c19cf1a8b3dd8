"""generate -> validate -> correct: the loop behind ``/iterate`` (contract section 13.4).

Each iteration asks the model (through a :data:`ChatCaller`, chatd in the daemon), pulls
the first JSON object out of the answer (:func:`extract_json`), and validates it:

* no object: status ``no_json``; a nudge ("your response wasn't valid JSON") is appended
  to the prompt and the loop goes on;
* a :class:`ValidationError`: status ``validation_failed`` with the error's wire JSON; the
  error is appended to the prompt and the loop goes on;
* a report: status ``accepted``; the loop ends with HTTP 200 and ``{artifact, validation,
  iterations, history, trace_id}``.

After ``max_iterations`` attempts without acceptance: HTTP 422 ``{error, iterations,
history, trace_id}``. When the chat call itself fails (chatd down, provider error): HTTP 502
(504 for a timeout) with the same failure shape and the history so far; the session row
says ``infra_error``. ``history[]`` items are ``{iteration, raw (first 2000 characters),
status: {kind, error?}}``.

Defaults (the Rust runtime's): ``max_iterations`` 3, ``temperature`` 0.2, ``max_tokens``
4096. The trace id is the body's ``trace_id``, else the request's (the
``X-Lakehouse-Trace-Id`` header, else minted): the daemon resolves it before calling
:func:`run_iterate`.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from ..chat.registry import PROVIDERS
from ..chat.types import MAX_TOKENS_LIMIT
from ..web import MAX_TRACE_ID, valid_trace_id
from .extract import extract_json
from .report import Report, ValidationError
from .session_log import SCHEMA
from .validators import KINDS, inject_context

__all__ = [
    "DEFAULT_MAX_ITERATIONS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEMPERATURE",
    "Attempt",
    "ChatCaller",
    "ChatFailure",
    "IterateOutcome",
    "IterateRequest",
    "compose_model",
    "run_iterate",
]

DEFAULT_MAX_ITERATIONS = 3
DEFAULT_TEMPERATURE = 0.2
DEFAULT_MAX_TOKENS = 4096
#: characters of a raw answer kept in ``history`` on the wire
RAW_CAP = 2000
#: characters of the prompt kept in a session row
PROMPT_CAP = 4000

NO_JSON_NUDGE = (
    "\n\nYour previous response wasn't valid JSON. Respond with exactly one JSON object and "
    "nothing else."
)
VALIDATION_NUDGE = (
    "\n\nYour previous response failed validation with this error:\n{error}\n"
    "Correct the artifact and respond with the corrected JSON object only."
)


class IterateRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /iterate``; zero / empty values mean "the default" (Go's omitempty)."""

    kind: str
    prompt: str
    provider: str = ""
    model: str = ""
    system: str = ""
    context: dict[str, Any] | None = None
    max_iterations: int = 0
    temperature: float | None = None
    max_tokens: int = 0
    trace_id: str = ""

    def check(self, max_iterations_cap: int) -> None:
        """ValueError for values no default can fix (the daemon answers 400)."""
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not self.prompt.strip():
            raise ValueError("prompt: must be a non-empty string")
        if self.provider and self.provider not in PROVIDERS:
            raise ValueError(
                f"provider: unknown provider {self.provider!r} (known: {', '.join(PROVIDERS)})"
            )
        if self.trace_id and not valid_trace_id(self.trace_id):
            raise ValueError(
                f"trace_id: must be 1-{MAX_TRACE_ID} visible ASCII characters (no spaces or "
                "control characters)"
            )
        if not 0 <= self.max_iterations <= max_iterations_cap:
            raise ValueError(f"max_iterations: must be 0..{max_iterations_cap} (0 = default)")
        if not 0 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ValueError(f"max_tokens: must be 0..{MAX_TOKENS_LIMIT} (0 = default)")
        if self.temperature is not None and (
            not math.isfinite(self.temperature) or self.temperature < 0
        ):
            raise ValueError("temperature: must be a finite number >= 0")


def compose_model(provider: str, model: str) -> str:
    """The model string for chatd: ``<provider>/<model>`` unless the model already says it."""
    if not provider or model.startswith(provider + "/"):
        return model
    return f"{provider}/{model}"


class ChatFailure(Exception):
    """The chat call failed for an infrastructure reason (not the model's answer)."""

    def __init__(self, message: str, *, timeout: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout
        #: a client error of chatd's to pass on as is (404: no such model), else None
        self.status = status


#: ``await chat(system=, user=, model=, temperature=, max_tokens=, trace_id=)`` -> the text;
#: raises :class:`ChatFailure`.
ChatCaller = Callable[..., Awaitable[str]]
#: ``validate(artifact_with_context)`` -> Report, or raises ValidationError
Validate = Callable[[Mapping[str, Any]], Report]


@dataclass
class Attempt:
    iteration: int
    raw: str
    kind: Literal["no_json", "validation_failed", "accepted"]
    error: str | None = None
    span_id: str = field(default_factory=lambda: secrets.token_hex(8))

    def to_wire(self) -> dict[str, Any]:
        status: dict[str, Any] = {"kind": self.kind}
        if self.error:
            status["error"] = self.error
        return {"iteration": self.iteration, "raw": self.raw[:RAW_CAP], "status": status}


@dataclass
class IterateOutcome:
    """Everything one ``/iterate`` call produced: the HTTP answer and the session row."""

    kind: str
    model: str
    provider: str
    prompt: str
    max_iterations: int
    trace_id: str
    started: datetime
    verdict: Literal["accepted", "max_iter_exhausted", "infra_error"] = "max_iter_exhausted"
    history: list[Attempt] = field(default_factory=list)
    artifact: dict[str, Any] | None = None
    #: the last object extracted, accepted or not (for grounded_in_roster on failures)
    last_extracted: dict[str, Any] | None = None
    report: Report | None = None
    error: str = ""
    infra_timeout: bool = False
    #: chatd's client-error status (404 for an unknown model), answered instead of 502
    infra_status: int | None = None
    duration_ms: int = 0
    grounded_in_roster: bool | None = None

    @property
    def iterations(self) -> int:
        return len(self.history)

    @property
    def http_status(self) -> int:
        if self.verdict == "accepted":
            return 200
        if self.verdict == "infra_error":
            if self.infra_status is not None:
                return self.infra_status
            return 504 if self.infra_timeout else 502
        return 422

    def response_body(self) -> dict[str, Any]:
        history = [a.to_wire() for a in self.history]
        if self.verdict == "accepted" and self.report is not None:
            return {
                "artifact": self.artifact,
                "validation": self.report.to_json(),
                "iterations": self.iterations,
                "history": history,
                "trace_id": self.trace_id,
            }
        return {
            "error": self.error,
            "iterations": self.iterations,
            "history": history,
            "trace_id": self.trace_id,
        }

    def session_row(self) -> dict[str, Any]:
        """The ``session.iterate.v1`` row (keys in the reference's order)."""
        attempts: list[dict[str, Any]] = [
            {
                "iteration": a.iteration,
                "verdict_kind": a.kind,
                "error": a.error,
                "span_id": a.span_id,
            }
            for a in self.history
        ]
        if self.verdict == "infra_error":
            attempts.append(
                {
                    "iteration": self.iterations + 1,
                    "verdict_kind": "infra_error",
                    "error": self.error,
                    "span_id": secrets.token_hex(8),
                }
            )
        row: dict[str, Any] = {
            "schema": SCHEMA,
            "session_id": self.trace_id,
            "timestamp": self.started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "daemon": "validatord",
            "kind": self.kind,
            "model": self.model,
            "provider": self.provider,
            "prompt": self.prompt[:PROMPT_CAP],
            "iterations": self.iterations,
            "max_iterations": self.max_iterations,
            "final_verdict": self.verdict,
            "attempts": attempts,
        }
        if self.verdict == "accepted":
            row["artifact"] = self.artifact
        row["grounded_in_roster"] = self.grounded_in_roster
        row["duration_ms"] = self.duration_ms
        return row


async def run_iterate(
    request: IterateRequest,
    *,
    chat: ChatCaller,
    validate: Validate,
    trace_id: str,
    default_model: str,
    grounding: Callable[[Mapping[str, Any] | None], bool | None] | None = None,
) -> IterateOutcome:
    """Run the loop for a checked :class:`IterateRequest`; never raises for model output.

    ``validate`` gets the artifact with the request's context injected under ``_context``;
    ``grounding`` computes ``grounded_in_roster`` from the final (or last extracted) object.
    """
    clock = time.perf_counter()
    max_iterations = request.max_iterations or DEFAULT_MAX_ITERATIONS
    temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
    model = request.model or default_model
    outcome = IterateOutcome(
        kind=request.kind,
        model=model,
        provider=request.provider,
        prompt=request.prompt,
        max_iterations=max_iterations,
        trace_id=trace_id,
        started=datetime.now(UTC),
    )
    user = request.prompt
    last_error = ""
    for iteration in range(1, max_iterations + 1):
        try:
            raw = await chat(
                system=request.system,
                user=user,
                model=compose_model(request.provider, model),
                temperature=temperature,
                max_tokens=max_tokens,
                trace_id=trace_id,
            )
        except ChatFailure as exc:
            outcome.verdict = "infra_error"
            outcome.infra_timeout = exc.timeout
            outcome.infra_status = exc.status
            outcome.error = f"chat call failed on iteration {iteration}: {exc}"
            break
        candidate = extract_json(raw)
        if candidate is None:
            last_error = "no JSON object found in the response"
            outcome.history.append(Attempt(iteration, raw, "no_json", last_error))
            user += NO_JSON_NUDGE
            continue
        outcome.last_extracted = candidate
        try:
            report = validate(inject_context(candidate, request.context))
        except ValidationError as exc:
            last_error = exc.to_json().decode()
            outcome.history.append(Attempt(iteration, raw, "validation_failed", last_error))
            user += VALIDATION_NUDGE.format(error=last_error)
            continue
        outcome.history.append(Attempt(iteration, raw, "accepted"))
        outcome.verdict = "accepted"
        outcome.artifact = candidate
        outcome.report = report
        break
    else:
        outcome.error = (
            f"no accepted artifact after {max_iterations} iterations; last error: {last_error}"
        )
    if grounding is not None:
        outcome.grounded_in_roster = grounding(
            outcome.artifact if outcome.artifact is not None else outcome.last_extracted
        )
    outcome.duration_ms = int((time.perf_counter() - clock) * 1000)
    return outcome
