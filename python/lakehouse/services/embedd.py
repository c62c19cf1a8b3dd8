"""embedd (:3216): text -> vectors, contract section 8.

Routes:
- ``POST /embed {texts: [str, ...], model?: str}`` -> ``{model, dimension, vectors}``.
  400 for an empty list, an empty text, a non-string, more than ``[embedd].max_texts``
  texts, malformed JSON or an unknown field; 502 when the provider fails or does not finish
  within ``[embedd].timeout`` seconds (one limit for the whole batch).
  With ``Accept: application/x-lakehouse-f32`` (matrixd sends it) the answer is a binary
  frame of float32 instead (:mod:`lakehouse.transport`); JSON otherwise.
- ``GET /embed/stats`` -> ``{hits, misses, hit_rate, size, capacity, provider, default_model}``.

The provider (``hash`` built in, or ``ollama``) sits behind a per-text LRU cache; the logic
lives in :mod:`lakehouse.embed`, this file only wires it to HTTP. docs/embed.md has the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import msgspec
from aiohttp import web

from ..config import Config
from ..embed import Embedder, EmbedTimeout, InvalidTexts, ProviderError, build_embedder
from ..openapi import answers as A
from ..openapi import api_routes
from ..transport import F32, accepts_f32, encode_frame
from ..web import APP_CONFIG, ApiError, json_response, make_app, read_json

__all__ = ["create_app", "EMBEDDER"]

EMBEDDER: web.AppKey[Embedder] = web.AppKey("embedder", Embedder)


class EmbedRequest(msgspec.Struct, forbid_unknown_fields=True):
    texts: list[str]
    model: str | None = None


async def handle_embed(request: web.Request) -> web.Response:
    body = await read_json(request, EmbedRequest)
    embedder = request.app[EMBEDDER]
    try:
        result = await embedder.embed(body.texts, body.model)
    except InvalidTexts as exc:
        raise ApiError.bad_request(str(exc)) from exc
    except EmbedTimeout as exc:
        raise ApiError(502, str(exc), code="upstream_timeout") from exc
    except ProviderError as exc:
        raise ApiError.upstream(str(exc)) from exc
    if accepts_f32(request.headers.get("Accept")):
        # our own callers (matrixd): the vectors as float32, not JSON text (lakehouse.transport)
        frame = encode_frame({"model": result.model, "dimension": result.dimension}, result.vectors)
        return web.Response(body=frame, content_type=F32)
    return json_response(
        {"model": result.model, "dimension": result.dimension, "vectors": result.vectors}
    )


async def handle_stats(request: web.Request) -> web.Response:
    embedder = request.app[EMBEDDER]
    return json_response(
        {
            **embedder.cache.stats(),
            "provider": embedder.provider.name,
            "default_model": embedder.default_model,
        }
    )


async def _embedder_ctx(app: web.Application) -> AsyncIterator[None]:
    section = app[APP_CONFIG].embedd
    session = None
    if section.provider == "ollama":
        # No per-call timeout here: the embedder bounds the whole batch instead.
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
    app[EMBEDDER] = build_embedder(section, session)
    try:
        yield
    finally:
        close = getattr(app[EMBEDDER].provider, "close", None)
        if close is not None:
            close()
        if session is not None:
            await session.close()


def create_app(config: Config) -> web.Application:
    """The embedd application for ``config`` (its ``[embedd]`` section)."""
    app = make_app("embedd", config)
    app.cleanup_ctx.append(_embedder_ctx)
    r = api_routes(app)
    r.post("/embed", handle_embed, summary="Texts to vectors", body=EmbedRequest, ok=A.Embedded, errors=(502,))
    r.get("/embed/stats", handle_stats, summary="Cache counters and the provider", ok=A.EmbedStats)
    return app
