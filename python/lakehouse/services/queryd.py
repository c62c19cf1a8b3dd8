"""queryd (:3214): read-only DuckDB SQL over the cataloged Parquet datasets (contract §6).

    POST /sql {"sql": "..."}
    -> {"columns": [{"name", "type"}], "rows": [[...], ...], "row_count": N, "elapsed_ms": t}

``type`` is DuckDB's type name (``BIGINT``, ``VARCHAR``, ``DECIMAL(18,3)``...). Every
dataset in catalogd is a view named after it. Anything that is not a read-only query over
them (DDL, DML, COPY, ATTACH, INSTALL/LOAD, SET/PRAGMA, file or URL table functions) is 400,
as is a SQL error, an empty ``sql`` or an unknown field (``{"q": ...}``). A query past
``[queryd].query_timeout`` seconds is interrupted: 408. More than ``[queryd].max_rows``
rows: 400 (add a LIMIT). See :mod:`lakehouse.data.query` for the two layers of enforcement.

Views follow catalogd: at start, every ``[queryd].refresh_every`` seconds, and at once when a
query names a table the engine doesn't know (then the query is retried once). Each refresh
drops views whose manifest disappeared before creating new ones, skips manifests whose
``updated_at`` is unchanged, and reports per-view errors without blocking the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..clients.base import UpstreamError
from ..clients.catalogd import CatalogdClient
from ..config import Config
from ..data.query import (
    QueryEngine,
    QueryFailed,
    QueryRefused,
    QueryTimeout,
    ResultTooLarge,
    SyncReport,
    encode_result,
)
from ..data.storage import open_store
from ..openapi import answers as A
from ..openapi import api_routes
from ..web import ApiError, internal_session, make_app, read_json

log = logging.getLogger("lakehouse.queryd")
T = TypeVar("T")


class SqlRequest(msgspec.Struct, forbid_unknown_fields=True):
    sql: str


class Views:
    """The engine's views kept in step with catalogd; refreshes never overlap."""

    def __init__(self, engine: QueryEngine, catalogd: CatalogdClient) -> None:
        self.engine = engine
        self.catalogd = catalogd
        self.lock = asyncio.Lock()
        self.last_refresh = -1.0  # monotonic start time of the last completed refresh

    async def refresh(self, *, since: float | None = None) -> SyncReport | None:
        """Sync views from catalogd. With ``since`` (a monotonic time), skip it when a refresh
        that started after ``since`` has already run: concurrent callers share one refresh."""
        async with self.lock:
            if since is not None and self.last_refresh >= since:
                return None
            started = time.monotonic()
            manifests = await self.catalogd.list()
            report = await asyncio.to_thread(self.engine.sync_views, manifests)
            self.last_refresh = started
        if report.created or report.dropped:
            log.info("queryd: views created %s, dropped %s", report.created, report.dropped)
        for name, error in report.errors.items():
            log.warning("queryd: view %r not available: %s", name, error)
        return report


ENGINE: web.AppKey[QueryEngine] = web.AppKey("engine", QueryEngine)
VIEWS: web.AppKey[Views] = web.AppKey("views", Views)


#: how long past the time limit a query that ignores its interrupt is waited for before
#: the client gets its 408 anyway (DuckDB checks for interrupts while executing, not always
#: while planning)
INTERRUPT_GRACE = 2.0


def in_daemon_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` on a daemon thread: unlike the default executor's, a call stuck in DuckDB
    never holds up the process's exit (a clean stop)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="queryd-query", daemon=True).start()
    return future


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def _run(engine: QueryEngine, sql: str) -> bytes:
    wait = engine.timeout + INTERRUPT_GRACE if engine.timeout and engine.timeout > 0 else None
    try:
        result = await asyncio.wait_for(asyncio.shield(in_daemon_thread(engine.execute, sql)), wait)
    except TimeoutError as exc:
        raise ApiError(408, f"query exceeded the {engine.timeout:g} s time limit") from exc
    except QueryTimeout as exc:
        raise ApiError(408, str(exc)) from exc
    except (QueryRefused, ResultTooLarge) as exc:
        raise ApiError.bad_request(str(exc)) from exc
    return encode_result(result)


async def sql(request: web.Request) -> web.Response:
    body = await read_json(request, SqlRequest)
    if not body.sql.strip():
        raise ApiError.bad_request("sql: empty")
    engine = request.app[ENGINE]
    started = time.monotonic()
    try:
        payload = await _run(engine, body.sql)
    except QueryFailed as exc:
        if not exc.catalog_miss:
            raise ApiError.bad_request(str(exc)) from exc
        # Maybe the dataset was registered since the last refresh: refresh, try once more.
        try:
            await request.app[VIEWS].refresh(since=started)
        except UpstreamError as up:
            log.warning("queryd: refresh after a catalog miss failed: %s", up)
            raise ApiError.bad_request(str(exc)) from exc
        try:
            payload = await _run(engine, body.sql)
        except QueryFailed as again:
            raise ApiError.bad_request(str(again)) from again
    return web.Response(body=payload, content_type="application/json")


def create_app(config: Config) -> web.Application:
    """queryd's application (routes in the module docstring)."""
    app = make_app("queryd", config)
    section = config.queryd

    async def resources(app: web.Application) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, config)
        engine = await asyncio.to_thread(
            QueryEngine,
            store,
            s3=config.s3,
            temp_dir=Path(config.data_dir) / "tmp" / "duckdb",
            timeout=section.query_timeout,
            max_rows=section.max_rows,
        )
        session = internal_session(config)
        views = Views(engine, CatalogdClient(session, config.upstream("queryd", "catalogd")))
        app[ENGINE] = engine
        app[VIEWS] = views

        async def refresher() -> None:
            while True:
                try:
                    await views.refresh()
                except UpstreamError as exc:
                    log.warning("queryd: view refresh failed: %s", exc)
                await asyncio.sleep(section.refresh_every)

        task = asyncio.create_task(refresher())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await session.close()
        try:
            await asyncio.wait_for(asyncio.shield(in_daemon_thread(engine.close)), 5.0)
        except TimeoutError:
            log.warning("queryd: a query did not stop on interrupt; exiting without waiting")
        await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(resources)
    api_routes(app).post("/sql", sql, summary="A read-only SQL query over the cataloged datasets", body=SqlRequest, ok=A.SqlAnswer, errors=(408,))
    return app
