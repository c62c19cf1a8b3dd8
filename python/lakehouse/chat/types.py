"""chatd's request and answer shapes, and its four errors (contract section 12).

Request ``{model, messages: [{role, content}], max_tokens?, temperature?, format?}``;
answer ``{model, provider, content, finish_reason, usage: {prompt_tokens,
completion_tokens, total_tokens}}``. Each error carries the HTTP status chatd answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import orjson

__all__ = [
    "ChatError",
    "ChatRequest",
    "ChatResult",
    "MAX_TOKENS_LIMIT",
    "Message",
    "ProviderDisabled",
    "ProviderNotFound",
    "ProviderTimeout",
    "UpstreamCall",
    "UpstreamFailure",
    "Usage",
]


#: the largest max_tokens accepted (providers take a 32-bit int; Python ints are unbounded)
MAX_TOKENS_LIMIT = 2**31 - 1


class Message(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /chat``. ``temperature`` unset is omitted upstream (Anthropic 4.7 rejects it)."""

    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    #: "json" (JSON mode) or a JSON-schema object (structured output); "" = none
    format: str | dict[str, Any] | None = None

    def check(self) -> None:
        """Reject values the types allow but a provider cannot use (ValueError)."""
        if not self.model.strip():
            raise ValueError("model: must be a non-empty string")
        if not self.messages:
            raise ValueError("messages: must be a non-empty list")
        if self.max_tokens is not None and not 0 < self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ValueError(f"max_tokens: must be 1..{MAX_TOKENS_LIMIT}, got {self.max_tokens}")
        if self.temperature is not None and (
            not math.isfinite(self.temperature) or self.temperature < 0
        ):
            raise ValueError(f"temperature: must be a finite number >= 0, got {self.temperature}")
        if isinstance(self.format, str) and self.format not in ("", "json"):
            raise ValueError(f'format: must be "json" or a JSON-schema object, got {self.format!r}')
        if isinstance(self.format, dict):
            try:
                orjson.dumps(self.format)  # it goes upstream as JSON: 2**70 would not encode
            except TypeError as exc:
                raise ValueError(f"format: not encodable as JSON: {exc}") from None


@dataclass(frozen=True)
class UpstreamCall:
    """One call as a provider adapter receives it (the model name already routed)."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    format: str | dict[str, Any] | None = None
    trace_id: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatResult:
    model: str
    provider: str
    content: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "content": self.content,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
            },
        }


class ChatError(Exception):
    """A chat failure with the HTTP status chatd answers for it."""

    status = 500
    #: the reference's error text (types.go); the message adds the details after a colon
    prefix = "chat error"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.prefix}: {detail}")
        self.detail = detail


class ProviderNotFound(ChatError):
    status = 404
    prefix = "provider not found for model"


class ModelNotFound(ChatError):
    """The provider answered 404 for the model: the caller named a model it does not have."""

    status = 404
    prefix = "model not found"


class ProviderDisabled(ChatError):
    status = 503
    prefix = "provider disabled (no auth key)"


class UpstreamFailure(ChatError):
    status = 502
    prefix = "provider upstream error"


class ProviderTimeout(ChatError):
    status = 504
    prefix = "provider timeout"
