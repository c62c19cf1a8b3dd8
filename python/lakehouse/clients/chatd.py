"""Client for chatd (``POST /chat``, ``GET /providers``), used by validatord, observerd's
``llm.chat`` workflow mode and matrixd's judge gate.

    client = ChatdClient(session, config.upstream("validatord", "chatd"))
    answer = await client.chat("qwen2.5:latest", [{"role": "user", "content": "hi"}])
    answer["content"], answer["finish_reason"], answer["usage"]["total_tokens"]
    text = await client.complete("ollama/qwen2.5:latest", "Rate 1-5: ...", max_tokens=10)

Failures raise :class:`~lakehouse.clients.base.UpstreamError` with chatd's status (400 bad
request, 404 provider not registered, 503 disabled, 502 upstream error, 504 provider
timeout) or ``status=None`` when chatd could not be reached or did not answer in time
(:func:`is_timeout` tells the two ``None`` cases apart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp

from .base import ServiceClient, UpstreamError

__all__ = ["ChatdClient", "is_timeout"]


def is_timeout(exc: UpstreamError) -> bool:
    """True when the call failed by a timeout (chatd's 504, or no answer in time)."""
    if exc.status == 504:
        return True
    return exc.status is None and isinstance(exc.__cause__, asyncio.TimeoutError | TimeoutError)


class ChatdClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 240.0
    ) -> None:
        # 240 s: above chatd's default 120 s provider timeout, so its 504 arrives first.
        super().__init__(session, base_url, "chatd", timeout)

    async def chat(
        self,
        model: str,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        format: str | dict[str, Any] | None = None,  # noqa: A002 - the wire name
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One chat call; the answer ``{model, provider, content, finish_reason, usage}``.

        Options left as None are not sent (chatd then omits them upstream).
        """
        body: dict[str, Any] = {"model": model, "messages": list(messages)}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if format is not None:
            body["format"] = format
        answer = await self.post("/chat", body, trace_id=trace_id, timeout=timeout)
        if not isinstance(answer, dict) or not isinstance(answer.get("content"), str):
            raise UpstreamError(self.service, 200, "answer without content", answer)
        return answer

    async def complete(
        self,
        model: str,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        format: str | dict[str, Any] | None = None,  # noqa: A002 - the wire name
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """The text of a one-turn chat (an optional system message, then ``prompt``)."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        answer = await self.chat(
            model,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            format=format,
            trace_id=trace_id,
            timeout=timeout,
        )
        return answer["content"]

    async def providers(self, *, trace_id: str | None = None) -> dict[str, Any]:
        """``GET /providers``: ``{providers: [names], details: [...]}``."""
        return await self.get("/providers", trace_id=trace_id)
