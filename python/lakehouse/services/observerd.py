"""observerd (:3219): the op witness, the inbox and the DAG workflow runner (contract section 11).

Routes (docs/memory.md has the shapes):

* ``POST /observer/event``: record one ObservedOp (``endpoint`` required);
* ``GET /observer/stats``: total, successes, failures, by_source, recent_scenario_ops;
* ``GET /observer/health``: liveness plus the ring size;
* ``POST /observer/inbox`` / ``GET /observer/inbox``: record a message / list them by priority;
* ``POST /observer/workflow/run``: validate, run, answer the RunResult, then record one op per
  node.

The ring, the stats, the inbox rules and the JSONL op log are in :mod:`lakehouse.memory.observer`;
the runner and its modes in :mod:`lakehouse.memory.workflow`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from ..clients.chatd import ChatdClient
from ..clients.matrixd import MatrixdClient
from ..config import Config
from ..distill.modes import register_distill_modes
from ..memory.observer import InboxRequest, InboxTooLarge, ObservedOp, Observer
from ..memory.workflow import (
    ModeRegistry,
    ModeServices,
    Workflow,
    WorkflowError,
    builtin_registry,
    ops_for_run,
    plan,
    run,
)
from ..openapi import Param, api_routes
from ..openapi import answers as A
from ..web import APP_CONFIG, ApiError, internal_session, make_app, read_json, trace_id

__all__ = ["create_app", "OBSERVER", "MODES", "SERVICES"]


def json_response(data: Any) -> web.Response:
    """Like :func:`lakehouse.web.json_response`, encoded by msgspec: op metadata and workflow
    outputs hold whatever JSON a client sent, and only msgspec encodes every integer that its
    decoder accepts (orjson stops at 64 bits)."""
    return web.Response(body=msgspec.json.encode(data), content_type="application/json")

OBSERVER: web.AppKey[Observer] = web.AppKey("observer", Observer)
MODES: web.AppKey[ModeRegistry] = web.AppKey("workflow_modes", ModeRegistry)
SERVICES: web.AppKey[ModeServices] = web.AppKey("workflow_services", ModeServices)


async def handle_event(request: web.Request) -> web.Response:
    op = await read_json(request, ObservedOp)
    try:
        stored = await asyncio.to_thread(request.app[OBSERVER].record, op)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    return json_response(stored.to_json())


async def handle_stats(request: web.Request) -> web.Response:
    # in a thread: the observer's lock may be held by a log write (an fsync, say)
    return json_response(await asyncio.to_thread(request.app[OBSERVER].stats))


async def handle_health(request: web.Request) -> web.Response:
    observer = request.app[OBSERVER]
    return json_response(
        {
            "status": "ok",
            "service": "observerd",
            "ring_size": len(observer),
            "ring_capacity": observer.capacity,
        }
    )


async def handle_inbox_post(request: web.Request) -> web.Response:
    req = await read_json(request, InboxRequest)
    try:
        msg = await asyncio.to_thread(request.app[OBSERVER].record_inbox, req, trace_id(request))
    except InboxTooLarge as exc:
        raise ApiError(413, str(exc)) from exc
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    return json_response(msg.to_json())


async def handle_inbox_list(request: web.Request) -> web.Response:
    q = request.query
    unknown = set(q) - {"priority", "type", "limit"}
    if unknown:
        raise ApiError.bad_request(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    limit: int | None = None
    if "limit" in q:
        try:
            limit = int(q["limit"])
        except ValueError as exc:
            raise ApiError.bad_request("limit: expected an integer") from exc
    try:
        msgs = await asyncio.to_thread(
            request.app[OBSERVER].inbox, q.get("priority"), q.get("type"), limit
        )
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    return json_response({"messages": [m.to_json() for m in msgs], "count": len(msgs)})


async def handle_workflow_run(request: web.Request) -> web.Response:
    workflow = await read_json(request, Workflow)
    try:
        p = plan(workflow, request.app[MODES])
    except WorkflowError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    config = request.app[APP_CONFIG]
    tid = trace_id(request)
    result = await run(
        p,
        request.app[MODES],
        request.app[SERVICES],
        trace_id=tid,
        node_timeout=config.observerd.workflow_node_timeout or None,
    )
    # ADR-005 5.3: one op per node, recorded after the run returned.
    await asyncio.to_thread(request.app[OBSERVER].record_many, ops_for_run(result, tid))
    return json_response(result.to_json())


async def _observer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    observer = Observer(config.path(config.observerd.persist_path), fsync=config.observerd.fsync)
    await asyncio.to_thread(observer.load)
    app[OBSERVER] = observer
    try:
        yield
    finally:
        observer.close()


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    session = internal_session(config, timeout=aiohttp.ClientTimeout(total=None))
    node_timeout = config.observerd.workflow_node_timeout or None
    # Workflow node timeouts bound these calls; the clients add no shorter limit of their own.
    app[SERVICES] = ModeServices(
        matrixd=MatrixdClient(session, config.upstream("observerd", "matrixd"), timeout=node_timeout),
        chatd=ChatdClient(session, config.upstream("observerd", "chatd"), timeout=node_timeout),
        default_model=config.models.local_fast,
        weak_models=list(config.models.weak_models),
        data_dir=config.data_dir,
    )
    app[MODES] = register_distill_modes(builtin_registry())
    try:
        yield
    finally:
        await session.close()


def create_app(config: Config) -> web.Application:
    app = make_app("observerd", config)
    app.cleanup_ctx.append(_observer_ctx)
    app.cleanup_ctx.append(_services_ctx)
    r = api_routes(app)
    r.post("/observer/event", handle_event, summary="Record one observed operation", body=ObservedOp, ok=A.Op)
    r.get("/observer/stats", handle_stats, summary="Counts over the ring of recent operations", ok=A.ObserverStats)
    r.get("/observer/health", handle_health, summary="Liveness and the ring's size", ok=A.ObserverHealth)
    r.post("/observer/inbox", handle_inbox_post, summary="Record an inbox message", body=InboxRequest, ok=A.InboxMessage)
    inbox_query = (Param("priority"), Param("type"), Param("limit", schema={"type": "integer"}))
    r.get("/observer/inbox", handle_inbox_list, summary="Inbox messages by priority", query=inbox_query, ok=A.Inbox, errors=(400,))
    r.post("/observer/workflow/run", handle_workflow_run, summary="Validate and run a DAG workflow", body=Workflow, ok=A.WorkflowRun)
    return app
