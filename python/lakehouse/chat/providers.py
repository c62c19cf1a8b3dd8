"""Provider adapters: local Ollama, Ollama Cloud, and one OpenAI-compatible adapter.

* :class:`OllamaProvider` -> ``POST /api/chat`` with ``stream: false, think: false``;
  ``temperature`` and ``max_tokens`` go in ``options`` (``num_predict``) only when set.
* :class:`OllamaCloudProvider` -> ``POST /api/generate`` with a bearer key; the messages
  are flattened into ``system`` and ``prompt`` (see :func:`flatten_messages`).
* :class:`OpenAICompatProvider` -> ``POST <base>/chat/completions`` with a bearer key
  (OpenRouter, OpenCode Zen, Kimi For Coding); ``format: "json"`` becomes
  ``response_format: {"type": "json_object"}``, a schema becomes ``json_schema``.

Every adapter maps: an upstream 404 (the model is unknown there) -> :class:`ModelNotFound`
(404 naming the model), another upstream HTTP error or an unreachable host ->
:class:`UpstreamFailure` (502, the upstream body in the message), a timeout -> :class:`ProviderTimeout` (504), an
answer without content (no choices, no message) -> :class:`UpstreamFailure`. The caller's
``X-Lakehouse-Trace-Id`` goes upstream with every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ..web import TRACE_HEADER
from .types import ChatResult, ModelNotFound, ProviderTimeout, UpstreamCall, UpstreamFailure, Usage

__all__ = [
    "OllamaCloudProvider",
    "OllamaProvider",
    "OpenAICompatProvider",
    "Provider",
    "flatten_messages",
]

#: how much of an upstream error body a message quotes
_BODY_QUOTE = 1000


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass(frozen=True)
class Provider:
    """A registered provider: where it is, how to authenticate, how long to wait."""

    name: str
    base_url: str
    api_key: str = ""
    timeout: float = 120.0

    kind = "provider"

    def headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if call.trace_id:
            headers[TRACE_HEADER] = call.trace_id
        return headers

    async def chat(self, session: aiohttp.ClientSession, call: UpstreamCall) -> ChatResult:
        raise NotImplementedError

    async def post(
        self, session: aiohttp.ClientSession, path: str, body: dict[str, Any], call: UpstreamCall
    ) -> dict[str, Any]:
        """POST ``body`` and return the decoded JSON object, mapping every failure."""
        url = self.base_url.rstrip("/") + path
        try:
            async with session.post(
                url,
                data=orjson.dumps(body),
                headers=self.headers(call),
                timeout=aiohttp.ClientTimeout(total=self.timeout) if self.timeout > 0 else None,
            ) as resp:
                payload = await resp.read()
                status = resp.status
        except TimeoutError as exc:
            raise ProviderTimeout(f"{self.name} did not answer within {self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(f"{self.name} unreachable at {self.base_url}: {exc}") from exc
        text = payload.decode("utf-8", "replace")
        if status >= 400:
            quoted = text.strip()[:_BODY_QUOTE] or "(empty body)"
            if status == 404:
                # Ollama and the OpenAI-compatible APIs answer 404 for a model they lack
                raise ModelNotFound(f"{body.get('model')!r} at {self.name} ({self.name} answered: {quoted})")
            raise UpstreamFailure(f"{self.name} answered HTTP {status}: {quoted}")
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamFailure(
                f"{self.name} answered non-JSON: {text.strip()[:_BODY_QUOTE]}"
            ) from None
        if not isinstance(decoded, dict):
            raise UpstreamFailure(f"{self.name} answered a JSON {type(decoded).__name__}, not an object")
        return decoded


def _ollama_options(call: UpstreamCall) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if call.temperature is not None:
        options["temperature"] = call.temperature
    if call.max_tokens is not None:
        options["num_predict"] = call.max_tokens
    return options


def _ollama_finish(answer: dict[str, Any]) -> str:
    reason = answer.get("done_reason")
    if isinstance(reason, str) and reason:
        return reason
    return "stop" if answer.get("done") else ""


@dataclass(frozen=True)
class OllamaProvider(Provider):
    """Local Ollama: ``/api/chat``, thinking off (the reference's default)."""

    kind = "ollama"

    async def chat(self, session: aiohttp.ClientSession, call: UpstreamCall) -> ChatResult:
        body: dict[str, Any] = {
            "model": call.model,
            "messages": call.messages,
            "stream": False,
            "think": False,
        }
        options = _ollama_options(call)
        if options:
            body["options"] = options
        if call.format:
            body["format"] = call.format
        answer = await self.post(session, "/api/chat", body, call)
        message = answer.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise UpstreamFailure(f"{self.name} answered without message.content")
        return ChatResult(
            model=str(answer.get("model") or call.model),
            provider=self.name,
            content=message["content"],
            finish_reason=_ollama_finish(answer),
            usage=Usage(_int(answer.get("prompt_eval_count")), _int(answer.get("eval_count"))),
        )


def flatten_messages(messages: list[dict[str, str]]) -> tuple[str, str]:
    """``(system, prompt)`` for a completion-style API (Ollama's ``/api/generate``).

    System messages are joined into ``system``. A single user message is the prompt as is;
    a longer conversation becomes ``User: ...`` / ``Assistant: ...`` paragraphs ending with
    ``Assistant:`` so the model answers the last turn.
    """
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return system, turns[0]["content"]
    label = {"user": "User", "assistant": "Assistant"}
    lines = [f"{label[m['role']]}: {m['content']}" for m in turns]
    lines.append("Assistant:")
    return system, "\n\n".join(lines)


@dataclass(frozen=True)
class OllamaCloudProvider(Provider):
    """Ollama Cloud: ``/api/generate`` with ``Authorization: Bearer <key>``."""

    kind = "ollama_cloud"

    async def chat(self, session: aiohttp.ClientSession, call: UpstreamCall) -> ChatResult:
        system, prompt = flatten_messages(call.messages)
        body: dict[str, Any] = {"model": call.model, "prompt": prompt, "stream": False}
        if system:
            body["system"] = system
        options = _ollama_options(call)
        if options:
            body["options"] = options
        if call.format:
            body["format"] = call.format
        answer = await self.post(session, "/api/generate", body, call)
        content = answer.get("response")
        if not isinstance(content, str):
            raise UpstreamFailure(f"{self.name} answered without response")
        return ChatResult(
            model=str(answer.get("model") or call.model),
            provider=self.name,
            content=content,
            finish_reason=_ollama_finish(answer),
            usage=Usage(_int(answer.get("prompt_eval_count")), _int(answer.get("eval_count"))),
        )


def _content_text(content: Any) -> str:
    """OpenAI content: a string, null, or a list of parts (``{"type": "text", "text"}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


@dataclass(frozen=True)
class OpenAICompatProvider(Provider):
    """OpenAI Chat Completions: OpenRouter, OpenCode Zen + Go, Kimi For Coding."""

    kind = "openai"

    async def chat(self, session: aiohttp.ClientSession, call: UpstreamCall) -> ChatResult:
        body: dict[str, Any] = {"model": call.model, "messages": call.messages, "stream": False}
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(call.format, dict):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": call.format},
            }
        answer = await self.post(session, "/chat/completions", body, call)
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamFailure(f"{self.name} answered with no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise UpstreamFailure(f"{self.name} answered a choice without a message")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        return ChatResult(
            model=str(answer.get("model") or call.model),
            provider=self.name,
            content=_content_text(message.get("content")),
            finish_reason=str(choice.get("finish_reason") or ""),
            usage=Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))),
        )
