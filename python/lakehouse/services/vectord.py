"""vectord (:3215): named vector indexes over the native core, persisted (contract section 7).

Routes (docs/vectord.md has the shapes, defaults and decisions):
- ``POST   /vectors/index``                 create ``{name, dimension, distance?, m?,
  ef_search?, ef_construction?, rotate?, shards?, replicas?}`` -> 201 with the index info; 400 bad
  params, 409 taken. Shards or replicas above 1 (docs/scale-out.md): a sharded index whose
  replicas run on the Ray cluster of ``[vectord].ray_address`` (400 when none is set)
- ``GET    /vectors/index``                 ``{indexes: [info...]}``
- ``GET    /vectors/index/{name}``          info + core stats + persistence counters
- ``DELETE /vectors/index/{name}``          the index and its saved object
- ``POST   /vectors/index/{name}/add``      ``{items: [{id, vector, metadata?}]}`` ->
  ``{added, updated}``; all or nothing, errors name the failing item
- ``POST   /vectors/index/{name}/search``   ``{vector | vectors, k?, ef?, exclude_ids?}`` ->
  ``{results: [{id, distance, metadata?}]}`` (a list of lists for ``vectors``)
- ``POST   /vectors/index/{name}/delete``   ``{ids}`` -> ``{deleted}``
- ``GET    /vectors/index/{name}/items/{id}`` -> ``{id, vector, metadata?}``
- ``POST   /vectors/index/{src}/merge``     ``{dest, clear_source?}`` -> counts
- ``POST   /vectors/index/{name}/save``     returns once the index is durable

A mutation (create, add, delete, merge, drop) is answered once it is in the index's
write-ahead log (``[vectord].durability``: fsynced by default; concurrent writers share one
fsync, see :mod:`lakehouse.vectors.wal`); a failed log write is 503. Every mutation also schedules a
coalesced snapshot save to ``_vectors/<name>.lhv``, which truncates the log it covers. Native calls (searches, adds) run on two bounded thread pools, one for reads
and one for writes, so a long add never queues searches behind it; the core releases the GIL.
Single searches that arrive together share one trip to a read thread (:class:`SearchBatcher`).
Metadata is kept as the client's raw JSON bytes and written back into answers unparsed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np
import orjson
from aiohttp import web

from ..bodycheck import TYPED_LATER
from ..config import Config
from ..data.storage import open_store, put_limit
from ..openapi import answers as A
from ..openapi import api_routes
from ..scale.placement import validate_layout
from ..scale.service import (
    SHARD_BACKEND,
    ClusterUnreachable,
    ShardedIndexes,
    ShardingUnavailable,
    shard_errors_middleware,
)
from ..transport import ACCEPT_POST, F32, FrameError, decode_frame
from ..vectors.registry import (
    IndexExists,
    IndexNotFound,
    IndexParams,
    ItemNotFound,
    NamedIndex,
    SaveFailed,
    VectorRegistry,
    WalError,
    decode_vector,
    decode_vectors,
    is_empty_object,
)
from ..web import APP_CONFIG, ApiError, decode_json, json_response, make_app

__all__ = ["create_app", "VECTORD", "Vectord"]

log = logging.getLogger("lakehouse.vectord")
T = TypeVar("T")

#: bodies up to this size are decoded on the event loop; larger ones on a write thread
INLINE_DECODE_BYTES = 256 << 10
#: a single search over at most this many stored floats (count x dims) runs on the event
#: loop: an exact scan of 64k floats takes a few microseconds, less than a thread hop
INLINE_SEARCH_FLOATS = 1 << 16


@dataclass(slots=True)
class SearchJob:
    """One single-vector search waiting for a trip to a worker thread."""

    entry: NamedIndex
    query: np.ndarray
    k: int
    ef: int | None
    exclude: list[str] | None
    future: asyncio.Future[bytes]


class SearchBatcher:
    """Runs the single-vector searches that arrive together in one trip to a worker thread.

    On a small machine a hop to a thread and back costs about as much as a search itself,
    and every time a worker thread takes the GIL back it may wait behind the event loop.
    So searches queue here; at most ``max_inflight`` trips run at once (one per core), each
    takes up to ``max_batch`` queued searches (run by :func:`_run_trip`), and a finished
    trip resolves all its requests with one wake-up of the event loop. Alone, a search
    makes the trip by itself; under load, trips carry many searches. Each request gets its
    own answer or its own error.
    """

    def __init__(self, executor: ThreadPoolExecutor, max_inflight: int, max_batch: int = 32) -> None:
        self._executor = executor
        self._max_inflight = max(1, max_inflight)
        self._max_batch = max_batch
        self._pending: list[SearchJob] = []
        self._inflight = 0
        self._scheduled = False
        self.trips = 0
        self.jobs = 0
        #: searches answered by a shared native batch call
        self.grouped = 0

    def search(
        self, entry: NamedIndex, query: np.ndarray, k: int, ef: int | None, exclude: list[str] | None
    ) -> asyncio.Future[bytes]:
        """The JSON answer ``{"results": [...]}`` of one search, once its trip is back."""
        loop = asyncio.get_running_loop()
        job = SearchJob(entry, query, k, ef, exclude, loop.create_future())
        self._pending.append(job)
        if not self._scheduled and self._inflight < self._max_inflight:
            # Drain at the end of this loop turn: searches parsed in the same turn share a trip.
            self._scheduled = True
            loop.call_soon(self._drain)
        return job.future

    def _drain(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and self._inflight < self._max_inflight:
            trip = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._inflight += 1
            self.trips += 1
            self.jobs += len(trip)
            done = self._executor.submit(_run_trip, trip)
            done.add_done_callback(
                lambda f, trip=trip: loop.call_soon_threadsafe(self._finish, trip, f)
            )

    def _finish(self, trip: list[SearchJob], done: Any) -> None:
        self._inflight -= 1
        try:
            results, grouped = done.result()
            self.grouped += grouped
        except BaseException as exc:  # the pool is shutting down
            results = [exc] * len(trip)
        for job, result in zip(trip, results, strict=True):
            if job.future.done():
                continue  # the request went away
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)


def _run_trip(trip: list[SearchJob]) -> tuple[list[bytes | BaseException], int]:
    """On a worker thread: every search of a trip, each with its own answer or error; and
    how many were answered by a shared batch call."""
    out: list[bytes | BaseException | None] = [None] * len(trip)
    # Searches alike (index, k, ef, exclude_ids) run as one native batch call: the GIL is
    # released once for all of them instead of twice per search, and the core spreads them
    # over its threads. (The batch call returns no metadata: NamedIndex.search_batch looks
    # it up once per distinct hit, with the GIL held but without giving it up.)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, job in enumerate(trip):
        key = (id(job.entry), job.k, job.ef, tuple(job.exclude or ()))
        groups.setdefault(key, []).append(i)
    grouped = 0
    for members in groups.values():
        if len(members) > 1:
            first = trip[members[0]]
            try:
                shape = first.query.shape
                queries = np.empty((len(members), *shape), dtype=np.float32)
                for row, i in enumerate(members):
                    if trip[i].query.shape != shape:  # no broadcasting of a 1-element query
                        raise ValueError("queries of different lengths")
                    queries[row] = trip[i].query
                rows = first.entry.search_batch(queries, first.k, first.ef, first.exclude)
            except Exception:
                pass  # a bad query in the group: answer each on its own below
            else:
                for i, row in zip(members, rows, strict=True):
                    out[i] = _answer(row)
                grouped += len(members)
                continue
        for i in members:
            job = trip[i]
            try:
                out[i] = _answer(job.entry.search(job.query, job.k, job.ef, job.exclude))
            except Exception as exc:
                out[i] = exc
    return out, grouped  # type: ignore[return-value]


def _answer(hits: list[Any]) -> bytes:
    return orjson.dumps({"results": _hits_json(hits)}, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass
class Vectord:
    """The daemon's state: the registry and the pools native calls run on."""

    registry: VectorRegistry
    #: indexes with more than 1 shard or replica (lakehouse.scale)
    sharded: ShardedIndexes
    reads: ThreadPoolExecutor
    writes: ThreadPoolExecutor
    searches: SearchBatcher
    save_timeout: float

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.reads, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writes, fn, *args)


VECTORD: web.AppKey[Vectord] = web.AppKey("vectord", Vectord)


# -- request bodies ---------------------------------------------------------------------


class CreateRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    dimension: int
    distance: str = "cosine"
    m: int = 16
    ef_search: int = 64
    ef_construction: int = 200
    rotate: bool = True
    shards: int = 1
    replicas: int = 1


class AddItem(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    # Raw: decoded row by row into one float32 array (decode_vectors), never kept as lists.
    vector: Annotated[msgspec.Raw, TYPED_LATER]
    # Raw: stored as the client's JSON bytes. Absent or null keeps, {} clears.
    metadata: msgspec.Raw = msgspec.Raw()


class AddRequest(msgspec.Struct, forbid_unknown_fields=True):
    items: list[AddItem]


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    vector: list[float] | None = None
    vectors: list[list[float]] | None = None
    k: int = 10
    ef: int | None = None
    exclude_ids: list[str] | None = None


class DeleteItemsRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    dest: str
    clear_source: bool = False


# -- helpers ----------------------------------------------------------------------------


def _state(request: web.Request) -> Vectord:
    return request.app[VECTORD]


def _index(request: web.Request, name: str | None = None) -> NamedIndex:
    name = request.match_info["name"] if name is None else name
    state = request.app[VECTORD]
    try:
        return state.registry.get(name)
    except IndexNotFound as exc:
        if name in state.sharded:
            # The same routes and shapes (lakehouse.scale.ShardedIndex speaks NamedIndex's).
            return state.sharded.get(name)  # type: ignore[return-value]
        raise ApiError.not_found(str(exc)) from None


def _metadata_out(meta: Any) -> Any:
    # vectord stores metadata as raw JSON bytes: emit them as they came, unparsed.
    return orjson.Fragment(meta) if isinstance(meta, bytes) else meta


def _hits_json(hits: list[Any]) -> list[dict[str, Any]]:
    out = []
    for h in hits:
        # float32 so the distance prints as the reference's float32 does (0.1234567).
        row: dict[str, Any] = {"id": h.id, "distance": np.float32(h.distance)}
        if h.metadata is not None:  # the reference's `metadata,omitempty`
            row["metadata"] = _metadata_out(h.metadata)
        out.append(row)
    return out


def _metadata_in(raw: msgspec.Raw) -> dict[str, Any] | bytes | None:
    data = bytes(raw)
    if not data or data == b"null":
        return None  # keep what the item has
    if is_empty_object(data):
        return {}  # clear it
    return data


def parse_add(data: bytes, dims: int) -> tuple[list[str], np.ndarray, list[Any]]:
    """Decode and validate an add body: ``(ids, vectors, metadata)``; ApiError 400 naming the
    failing item. Runs on a write thread for large bodies (row by row, see decode_vectors)."""
    body = decode_json(data, AddRequest)
    ids = []
    for i, item in enumerate(body.items):
        if not item.id:
            raise ApiError.bad_request(f"item {i}: empty id")
        ids.append(item.id)
    try:
        vectors = decode_vectors([item.vector for item in body.items], dims)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    metadata = [_metadata_in(item.metadata) for item in body.items]
    return ids, vectors, metadata


# -- handlers ---------------------------------------------------------------------------


async def handle_create(request: web.Request) -> web.Response:
    body = decode_json(await request.read(), CreateRequest)
    params = IndexParams(
        body.name, body.dimension, body.distance, body.m, body.ef_search, body.ef_construction, body.rotate
    )
    if (body.shards, body.replicas) != (1, 1):
        return await _create_sharded(request, params, body.shards, body.replicas)
    if params.name in _state(request).sharded:
        raise ApiError.conflict(str(IndexExists(params.name)))
    try:
        # Off the loop: with a log, creating the index's first segment is an fsync.
        entry = await asyncio.to_thread(_state(request).registry.create, params)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    except IndexExists as exc:
        raise ApiError.conflict(str(exc)) from None
    except (OSError, SaveFailed) as exc:
        raise ApiError(503, f"creating index {params.name!r} failed: {exc}") from None
    return json_response(entry.params(), status=201)


async def _create_sharded(request: web.Request, params: IndexParams, shards: int, replicas: int) -> web.Response:
    state = _state(request)
    try:
        validate_layout(shards, replicas)
        entry = await asyncio.to_thread(
            state.sharded.create, params, shards, replicas, state.registry.__contains__
        )
    except ClusterUnreachable as exc:
        raise ApiError(503, str(exc)) from None
    except (ValueError, ShardingUnavailable) as exc:
        raise ApiError.bad_request(str(exc)) from None
    except IndexExists as exc:
        raise ApiError.conflict(str(exc)) from None
    return json_response(entry.params(), status=201)


async def handle_list(request: web.Request) -> web.Response:
    state = _state(request)
    entries = [*state.registry.indexes(), *state.sharded.indexes()]
    return json_response({"indexes": [e.params() for e in sorted(entries, key=lambda e: e.name)]})


async def handle_info(request: web.Request) -> web.Response:
    return json_response(_index(request).info())


async def handle_drop(request: web.Request) -> web.Response:
    state = _state(request)
    name = request.match_info["name"]
    try:
        # Blocking: waits for a save in flight, then removes the object.
        drop = state.sharded.drop if name in state.sharded else state.registry.drop
        await state.write(drop, name)
    except IndexNotFound as exc:
        raise ApiError.not_found(str(exc)) from None
    except SaveFailed as exc:
        raise ApiError(503, str(exc)) from None
    return json_response({"name": name, "deleted": True})


async def handle_add(request: web.Request) -> web.Response:
    state = _state(request)
    entry = _index(request)
    data = await request.read()
    if len(data) <= INLINE_DECODE_BYTES:
        ids, vectors, metadata = parse_add(data, entry.index.dims)
    else:
        ids, vectors, metadata = await state.write(parse_add, data, entry.index.dims)
    del data
    if not ids:
        return json_response({"added": 0, "updated": 0})
    try:
        (added, updated), lsn = await state.write(entry.add_logged, ids, vectors, metadata)
        # The answer waits for the log record, but no thread does (group commit).
        await entry.wait_logged_async(lsn)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    except WalError as exc:
        raise _not_durable(exc) from None
    return json_response({"added": added, "updated": updated})


def _remote(entry: Any) -> bool:
    """A sharded index: its calls go to other processes, never run on the event loop."""
    return getattr(entry, "remote", False)


def _not_durable(exc: WalError) -> ApiError:
    return ApiError(503, f"{exc}; the change is applied in memory but may not survive a crash")


class SearchHeader(msgspec.Struct, forbid_unknown_fields=True):
    """A binary search body's header (lakehouse.transport); the vector(s) follow it."""

    k: int = 10
    ef: int | None = None
    exclude_ids: list[str] | None = None


class SearchOne(msgspec.Struct, forbid_unknown_fields=True):
    """The common JSON search body, one query vector, read with the vector left as JSON text
    for :func:`decode_vector` (read natively, without a Python float per element). Any body
    this does not fit, or whose vector is not a plain array of numbers, is decoded as a
    :class:`SearchRequest`, whose errors name what is wrong."""

    vector: msgspec.Raw
    k: int = 10
    ef: int | None = None
    exclude_ids: list[str] | None = None


_search_one = msgspec.json.Decoder(SearchOne)


#: announced on search answers: the route also takes binary frames (lakehouse.transport)
_SEARCH_HEADERS = {"Accept-Post": ACCEPT_POST}


def _search_body(
    request: web.Request, data: bytes
) -> tuple[np.ndarray | None, np.ndarray | None, SearchHeader | SearchOne | SearchRequest]:
    """``(one query, batch, params)`` of a search body, JSON or a binary frame (400 if bad)."""
    if request.content_type == F32:
        try:
            header, arr = decode_frame(data)
            params = msgspec.convert(header, SearchHeader, strict=True)
        except FrameError as exc:
            raise ApiError.bad_request(str(exc)) from None
        except msgspec.ValidationError as exc:
            raise ApiError.bad_request(f"binary body: header: {exc}") from None
        return (arr, None, params) if arr.ndim == 1 else (None, arr, params)
    try:
        one = _search_one.decode(data)
        return decode_vector(one.vector), None, one
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, ValueError):
        pass  # not the common shape: the general decoder below says what is wrong
    body = decode_json(data, SearchRequest)
    query = None
    if body.vector is not None:
        with np.errstate(over="ignore"):  # 1e39 -> inf, which the core rejects
            query = np.asarray(body.vector, dtype=np.float32)
    # the batch stays lists here: each row is checked against the index's dimension below
    return query, body.vectors, body  # type: ignore[return-value]


async def handle_search(request: web.Request) -> web.Response:
    state = _state(request)
    query, batch, params = _search_body(request, await request.read())
    entry = _index(request)
    if (query is None) == (batch is None):
        raise ApiError.bad_request("give exactly one of 'vector' (one query) or 'vectors' (a batch)")
    k, ef, exclude = params.k, params.ef, params.exclude_ids
    try:
        if query is not None:
            if entry.count * entry.index.dims <= INLINE_SEARCH_FLOATS and not _remote(entry):
                # Cheaper than the hop to a thread and back.
                answer = _answer(entry.search(query, k, ef, exclude))
            else:
                answer = await state.searches.search(entry, query, k, ef, exclude)
            return web.Response(body=answer, content_type="application/json", headers=_SEARCH_HEADERS)
        dims = entry.index.dims
        if isinstance(batch, np.ndarray):
            if batch.shape[1] != dims:
                raise ValueError(f"vectors have {batch.shape[1]} dimensions, index {entry.name!r} has {dims}")
            queries = batch
        else:
            for i, row in enumerate(batch or []):
                if len(row) != dims:
                    raise ValueError(f"vectors[{i}] has {len(row)} dimensions, index {entry.name!r} has {dims}")
            with np.errstate(over="ignore"):
                queries = np.asarray(batch, dtype=np.float32).reshape(-1, dims)
        rows = await state.read(entry.search_batch, queries, k, ef, exclude)
        return json_response({"results": [_hits_json(r) for r in rows]}, headers=_SEARCH_HEADERS)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None


async def handle_delete_items(request: web.Request) -> web.Response:
    state = _state(request)
    body = decode_json(await request.read(), DeleteItemsRequest)
    entry = _index(request)
    try:
        deleted, lsn = await state.write(entry.delete_logged, body.ids)
        await entry.wait_logged_async(lsn)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    except WalError as exc:
        raise _not_durable(exc) from None
    return json_response({"deleted": deleted})


async def handle_get_item(request: web.Request) -> web.Response:
    entry = _index(request)
    item = request.match_info["id"]
    try:
        vector, metadata = await asyncio.to_thread(entry.get, item) if _remote(entry) else entry.get(item)
    except ItemNotFound as exc:
        raise ApiError.not_found(str(exc)) from None
    out: dict[str, Any] = {"id": item, "vector": vector}
    if metadata is not None:
        out["metadata"] = _metadata_out(metadata)
    return json_response(out)


async def handle_merge(request: web.Request) -> web.Response:
    state = _state(request)
    body = decode_json(await request.read(), MergeRequest)
    source = request.match_info["name"]
    try:
        if source == body.dest:
            raise ValueError(f"cannot merge index {source!r} into itself")
        if _remote(_index(request)) or _remote(_index(request, body.dest)):
            raise ValueError("merge does not support sharded indexes (docs/scale-out.md)")
        result = await state.write(state.registry.merge, source, body.dest, body.clear_source)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    except IndexNotFound as exc:  # dropped while the merge ran
        raise ApiError.not_found(str(exc)) from None
    except WalError as exc:
        raise _not_durable(exc) from None
    return json_response(result.to_json())


async def handle_save(request: web.Request) -> web.Response:
    state = _state(request)
    entry = _index(request)
    # On the write pool would queue behind adds; flush only waits (GIL released).
    try:
        await asyncio.to_thread(entry.flush, state.save_timeout)
    except SaveFailed as exc:
        raise ApiError(504 if exc.timed_out else 503, str(exc)) from None
    return json_response(
        {"name": entry.name, "saved": True, "count": entry.count, **entry.persistence()}
    )


# -- the app ----------------------------------------------------------------------------


def _search_threads(configured: int) -> int:
    return configured or max(4, 2 * (os.cpu_count() or 1))


async def _vectord_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    section = config.vectord
    store = await asyncio.to_thread(open_store, config)
    registry = VectorRegistry(
        store,
        save_min_interval=section.save_min_interval,
        max_object_bytes=put_limit(config.storaged, "_vectors/"),
        wal_dir=config.path(section.wal_dir),
        durability=section.durability,
    )
    try:
        loaded = await asyncio.to_thread(registry.load_all)
    except BaseException:
        await asyncio.to_thread(store.close)
        raise
    if loaded:
        log.info("vectord: loaded %d index(es): %s", len(loaded), ", ".join(loaded))
    sharded = ShardedIndexes(config, store, app.get(SHARD_BACKEND))
    try:
        if names := await asyncio.to_thread(sharded.load_all):
            log.info("vectord: reattached %d sharded index(es): %s", len(names), ", ".join(names))
    except BaseException:
        await asyncio.to_thread(registry.close)
        await asyncio.to_thread(store.close)
        raise
    reads = ThreadPoolExecutor(_search_threads(section.search_threads), "vectord-read")
    state = Vectord(
        registry=registry,
        sharded=sharded,
        reads=reads,
        writes=ThreadPoolExecutor(section.write_threads, "vectord-write"),
        searches=SearchBatcher(reads, max_inflight=min(reads._max_workers, os.cpu_count() or 1)),
        save_timeout=section.save_timeout,
    )
    app[VECTORD] = state
    try:
        yield
    finally:
        # A clean shutdown saves everything acknowledged so far.
        await asyncio.to_thread(registry.close)
        await asyncio.to_thread(sharded.close)
        state.reads.shutdown(wait=True)
        state.writes.shutdown(wait=True)
        await asyncio.to_thread(store.close)


def create_app(config: Config) -> web.Application:
    """The vectord application for ``config`` (its ``[vectord]`` section; objects go through
    the store ``[storaged]`` describes)."""
    app = make_app("vectord", config, middlewares=[shard_errors_middleware])
    app.cleanup_ctx.append(_vectord_ctx)
    r = api_routes(app)
    # aiohttp tries dynamic routes in registration order: the hot ones first.
    r.post("/vectors/index/{name}/search", handle_search, summary="Nearest neighbours of one vector or a batch", body=SearchRequest, ok=A.VectorSearch, errors=(404,))
    r.post("/vectors/index/{name}/add", handle_add, summary="Add or update items (all or nothing)", body=AddRequest, ok=A.Added, errors=(404,))
    r.get("/vectors/index/{name}/items/{id:.+}", handle_get_item, summary="One item's vector and metadata", ok=A.Item, errors=(404,))
    r.post("/vectors/index/{name}/delete", handle_delete_items, summary="Delete items by id", body=DeleteItemsRequest, ok=A.ItemsDeleted, errors=(404,))
    r.post("/vectors/index/{name}/merge", handle_merge, summary="Copy every item into another index", body=MergeRequest, ok=A.Merged, errors=(404,))
    r.post("/vectors/index/{name}/save", handle_save, summary="Return once the index is durable", ok=A.Saved, errors=(404, 503, 504))
    r.get("/vectors/index/{name}", handle_info, summary="Parameters, core stats and persistence counters", ok=A.IndexInfo, errors=(404,))
    r.delete("/vectors/index/{name}", handle_drop, summary="Drop the index and its saved object", ok=A.IndexDropped, errors=(404, 503))
    r.post("/vectors/index", handle_create, summary="Create an index", body=CreateRequest, ok=A.IndexParams, status=201, errors=(409, 503))
    r.get("/vectors/index", handle_list, summary="Every index's parameters", ok=A.IndexList)
    return app
