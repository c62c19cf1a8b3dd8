"""pathwayd (:3217): Mem0-style versioned memory traces (contract section 10, docs/memory.md).

Routes: ``POST /pathway/add | add_idempotent | update | revise | retire | search``,
``GET /pathway/get/{uid} | history/{uid} | stats``. The logic and the JSONL event log live in
:mod:`lakehouse.memory.pathway`; handlers decode, call the store in a worker thread (it writes the
log), and answer. Invalid input is 400, an unknown uid 404, updating a retired trace 409, a
cycle in a predecessor chain 409, a failed log write 503 (the change is not applied).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..config import Config
from ..memory.pathway import (
    DEFAULT_SEARCH_LIMIT,
    HistoryCycleError,
    PathwayStore,
    PersistError,
    TraceConflict,
    TraceNotFound,
)
from ..openapi import answers as A
from ..openapi import api_routes
from ..web import APP_CONFIG, ApiError, json_response, make_app, read_json

__all__ = ["create_app", "STORE"]

STORE: web.AppKey[PathwayStore] = web.AppKey("pathway_store", PathwayStore)

R = TypeVar("R")


class AddRequest(msgspec.Struct, forbid_unknown_fields=True):
    content: msgspec.Raw
    tags: list[str] | None = None


class AddIdempotentRequest(msgspec.Struct, forbid_unknown_fields=True):
    uid: str
    content: msgspec.Raw
    tags: list[str] | None = None


class UpdateRequest(msgspec.Struct, forbid_unknown_fields=True):
    uid: str
    content: msgspec.Raw
    #: None keeps the trace's tags; a list replaces them ([] clears)
    tags: list[str] | None = None


class ReviseRequest(msgspec.Struct, forbid_unknown_fields=True):
    predecessor_uid: str
    content: msgspec.Raw
    tags: list[str] | None = None


class RetireRequest(msgspec.Struct, forbid_unknown_fields=True):
    uid: str


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    #: whitespace-separated terms, all required (case-insensitive); none = any
    query: str | None = None
    #: every tag required
    tags: list[str] | None = None
    limit: int = DEFAULT_SEARCH_LIMIT


async def _call(fn: Callable[..., R], *args: Any) -> R:
    """Run a store call in a worker thread and map its errors onto HTTP statuses."""
    try:
        return await asyncio.to_thread(functools.partial(fn, *args))
    except TraceNotFound as exc:
        raise ApiError.not_found(exc.message) from exc
    except (TraceConflict, HistoryCycleError) as exc:
        raise ApiError.conflict(str(exc)) from exc
    except PersistError as exc:
        raise ApiError(503, f"pathway: {exc.strerror}; the change was not applied") from exc
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc


async def handle_add(request: web.Request) -> web.Response:
    body = await read_json(request, AddRequest)
    trace = await _call(request.app[STORE].add, bytes(body.content), body.tags)
    return json_response(trace.to_json())


async def handle_add_idempotent(request: web.Request) -> web.Response:
    body = await read_json(request, AddIdempotentRequest)
    store = request.app[STORE]
    trace, _ = await _call(store.add_idempotent, body.uid, bytes(body.content), body.tags)
    return json_response(trace.to_json())


async def handle_update(request: web.Request) -> web.Response:
    body = await read_json(request, UpdateRequest)
    store = request.app[STORE]
    trace = await _call(store.update, body.uid, bytes(body.content), body.tags)
    return json_response(trace.to_json())


async def handle_revise(request: web.Request) -> web.Response:
    body = await read_json(request, ReviseRequest)
    store = request.app[STORE]
    trace = await _call(
        store.revise, body.predecessor_uid, bytes(body.content), body.tags
    )
    return json_response(trace.to_json())


async def handle_retire(request: web.Request) -> web.Response:
    body = await read_json(request, RetireRequest)
    trace = await _call(request.app[STORE].retire, body.uid)
    return json_response(trace.to_json())


async def handle_get(request: web.Request) -> web.Response:
    trace = await _call(request.app[STORE].get, request.match_info["uid"])
    return json_response(trace.to_json())


async def handle_history(request: web.Request) -> web.Response:
    history = await _call(request.app[STORE].history, request.match_info["uid"])
    return json_response(history.to_json())


async def handle_search(request: web.Request) -> web.Response:
    body = await read_json(request, SearchRequest)
    result = await _call(request.app[STORE].search, body.query, body.tags, body.limit)
    return json_response(result.to_json())


async def handle_stats(request: web.Request) -> web.Response:
    return json_response(await _call(request.app[STORE].stats))


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    path = config.path(config.pathwayd.persist_path)
    store = PathwayStore(path, fsync=config.pathwayd.fsync)
    await asyncio.to_thread(store.load)
    app[STORE] = store
    try:
        yield
    finally:
        store.close()


def create_app(config: Config) -> web.Application:
    app = make_app("pathwayd", config)
    app.cleanup_ctx.append(_store_ctx)
    r = api_routes(app)
    writes = (404, 409, 503)
    r.post("/pathway/add", handle_add, summary="A new trace", body=AddRequest, ok=A.Trace, errors=writes)
    r.post("/pathway/add_idempotent", handle_add_idempotent, summary="A trace under a given uid, once", body=AddIdempotentRequest, ok=A.Trace, errors=writes)
    r.post("/pathway/update", handle_update, summary="Change a trace in place", body=UpdateRequest, ok=A.Trace, errors=writes)
    r.post("/pathway/revise", handle_revise, summary="A new version succeeding a trace", body=ReviseRequest, ok=A.Trace, errors=writes)
    r.post("/pathway/retire", handle_retire, summary="Retire a trace", body=RetireRequest, ok=A.Trace, errors=writes)
    r.get("/pathway/get/{uid}", handle_get, summary="One trace", ok=A.Trace, errors=(400, 404))
    r.get("/pathway/history/{uid}", handle_history, summary="A trace's predecessor chain, newest first", ok=A.History, errors=(400, 404, 409))
    r.post("/pathway/search", handle_search, summary="Active traces matching terms and tags", body=SearchRequest, ok=A.TraceSearch)
    r.get("/pathway/stats", handle_stats, summary="Trace counts and what the last load replayed", ok=A.PathwayStats)
    return app
