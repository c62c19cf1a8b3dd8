"""chatd (:3220): the LLM dispatcher, contract section 12.

Routes:
- ``POST /chat {model, messages: [{role, content}], max_tokens?, temperature?, format?}``
  -> ``{model, provider, content, finish_reason, usage}``. The model name picks the provider
  (:mod:`lakehouse.chat.registry`). 400 for a bad body; 404 when the provider is not
  registered; 503 when it is disabled; 502 for an upstream error (its body quoted in the
  message); 504 when the provider does not answer within ``[chatd].timeout_secs``.
- ``GET /providers`` and ``GET /chat/providers`` (the gateway's ``/v1/chat/providers``)
  -> ``{providers: [names], details: [...]}``.

The logic lives in :mod:`lakehouse.chat`; docs/llm.md has the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from ..chat import ChatError, ChatRequest, Dispatcher, build_registry
from ..config import Config
from ..openapi import answers as A
from ..openapi import api_routes
from ..web import APP_CONFIG, ApiError, json_response, make_app, read_json, trace_id

__all__ = ["DISPATCHER", "create_app"]

DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("chat_dispatcher", Dispatcher)


async def handle_chat(request: web.Request) -> web.Response:
    body = await read_json(request, ChatRequest)
    try:
        result = await request.app[DISPATCHER].chat(body, trace_id=trace_id(request))
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    except ChatError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    return json_response(result.to_json())


async def handle_providers(request: web.Request) -> web.Response:
    return json_response(request.app[DISPATCHER].registry.describe())


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    section = config.chatd
    key_dir = config.path(section.key_dir)
    # key files are read once, at start (restart chatd to pick up a rotated key)
    registry = await asyncio.to_thread(build_registry, section, key_dir=key_dir)
    # per-call timeouts are set by each provider from [chatd].timeout_secs
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
    app[DISPATCHER] = Dispatcher(registry, session)
    try:
        yield
    finally:
        await session.close()


def create_app(config: Config) -> web.Application:
    """The chatd application for ``config`` (its ``[chatd]`` section)."""
    app = make_app("chatd", config)
    app.cleanup_ctx.append(_dispatcher_ctx)
    r = api_routes(app)
    r.post("/chat", handle_chat, summary="One chat completion; the model name picks the provider", body=ChatRequest, ok=A.ChatAnswer, errors=(404, 502, 503, 504))
    r.get("/providers", handle_providers, summary="The registered providers", ok=A.Providers)
    r.get("/chat/providers", handle_providers, summary="The registered providers (the gateway's /v1/chat/providers)", ok=A.Providers)
    return app
