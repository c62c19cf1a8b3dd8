"""The LLM dispatcher behind chatd: route a model name to a provider and call it.

:class:`Dispatcher` owns the registry and the app's ClientSession; ``services/chatd.py``
only decodes requests and maps :class:`ChatError` to HTTP statuses.
"""

from __future__ import annotations

import aiohttp

from .providers import flatten_messages
from .registry import PROVIDERS, Registry, build_registry, resolve_key, route
from .types import (
    ChatError,
    ChatRequest,
    ChatResult,
    Message,
    ModelNotFound,
    ProviderDisabled,
    ProviderNotFound,
    ProviderTimeout,
    UpstreamCall,
    UpstreamFailure,
    Usage,
)

__all__ = [
    "PROVIDERS",
    "ChatError",
    "ChatRequest",
    "ChatResult",
    "Dispatcher",
    "Message",
    "ModelNotFound",
    "ProviderDisabled",
    "ProviderNotFound",
    "ProviderTimeout",
    "Registry",
    "UpstreamCall",
    "UpstreamFailure",
    "Usage",
    "build_registry",
    "flatten_messages",
    "resolve_key",
    "route",
]


class Dispatcher:
    """Routes :class:`ChatRequest` s to the registered providers."""

    def __init__(self, registry: Registry, session: aiohttp.ClientSession) -> None:
        self.registry = registry
        self.session = session

    async def chat(self, request: ChatRequest, *, trace_id: str | None = None) -> ChatResult:
        """One chat call. ValueError for a bad request; :class:`ChatError` for the rest."""
        request.check()
        provider, upstream_model = self.registry.resolve(request.model)
        call = UpstreamCall(
            model=upstream_model,
            messages=[{"role": m.role, "content": m.content} for m in request.messages],
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            format=request.format or None,
            trace_id=trace_id,
        )
        return await provider.chat(self.session, call)
