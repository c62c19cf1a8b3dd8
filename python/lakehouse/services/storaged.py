"""storaged (:3211): objects over HTTP, on a local directory (default) or S3 (contract §3).

Routes (keys may contain "/"; percent-encode anything else that is special in a URL):

    PUT    /storage/{key}     body = the object, streamed -> {key, size, sha256}
    GET    /storage/{key}     the object, streamed (X-Object-Sha256 when known)
    HEAD   /storage/{key}     Content-Length and X-Object-Sha256, no body
    DELETE /storage/{key}     -> {key, deleted: true}; 404 when absent
    GET    /storage?prefix=&after=&limit=
                              -> {items: [{key, size}], truncated, next_after}

A bad key is 400 (the contract's validateKey table). A PUT is capped per prefix (ADR-002:
``[storaged].max_put_bytes``, 256 MiB; ``max_put_bytes_vectors``, 4 GiB, for ``_vectors/``):
checked from Content-Length before anything is read, and again while streaming; either way
413 and nothing is stored. At most ``[storaged].put_concurrency`` PUTs run at once; one more
is refused at once with 503 and ``Retry-After: 5`` (a non-blocking semaphore, as the
reference). Bodies stream in both directions: memory stays bounded whatever the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from ..config import Config
from ..data.storage import (
    CHUNK,
    InvalidKey,
    KeyConflict,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    StorageError,
    open_store,
    put_limit,
    validate_key,
)
from ..openapi import Param, api_routes
from ..openapi import answers as A
from ..web import APP_CONFIG, ApiError, json_response, make_app

log = logging.getLogger("lakehouse.storaged")

STORE: web.AppKey[ObjectStore] = web.AppKey("store", ObjectStore)
PUT_SLOTS: web.AppKey[PutSlots] = web.AppKey("put_slots")  # type: ignore[type-arg]

#: a key route; "[\s\S]" and not "." so that a key with an encoded LF reaches validation (400)
KEY_ROUTE = r"/storage/{key:[\s\S]+}"

#: seconds a client is told to wait when every PUT slot is taken (the reference's value)
RETRY_AFTER = "5"


class PutSlots:
    """A non-blocking counting semaphore: a PUT either gets a slot now or a 503."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0

    def try_acquire(self) -> bool:
        # Single-threaded (the event loop), so no lock is needed.
        if self.used >= self.size:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1


def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    try:
        return validate_key(key)
    except InvalidKey as exc:
        raise ApiError.bad_request(f"invalid key: {exc}") from exc


@contextlib.contextmanager
def _storage_errors(key: str):  # type: ignore[no-untyped-def]
    """Map the store's exceptions onto HTTP errors."""
    try:
        yield
    except ObjectNotFound as exc:
        raise ApiError.not_found(str(exc)) from exc
    except ObjectTooLarge as exc:
        raise ApiError(413, str(exc)) from exc
    except KeyConflict as exc:
        raise ApiError.conflict(str(exc)) from exc
    except InvalidKey as exc:
        raise ApiError.bad_request(f"invalid key: {exc}") from exc
    except StorageError as exc:
        log.warning("storage backend error on %r: %s", key, exc)
        raise ApiError(502, f"storage backend error: {exc}") from exc


async def put_object(request: web.Request) -> web.Response:
    key = _key(request)
    config = request.app[APP_CONFIG]
    limit = put_limit(config.storaged, key)
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, f"object of {request.content_length} bytes is larger than the {limit}-byte cap"
        )
    slots = request.app[PUT_SLOTS]
    if not slots.try_acquire():
        raise ApiError(
            503,
            f"too many uploads in progress ({slots.size}); retry later",
            headers={"Retry-After": RETRY_AFTER},
        )
    store = request.app[STORE]
    try:
        with _storage_errors(key):
            writer = await asyncio.to_thread(store.open_writer, key, max_bytes=limit)
            try:
                buffer = bytearray()
                # Small network reads are gathered into ~1 MiB writes: one thread hop each.
                async for chunk in request.content.iter_chunked(CHUNK):
                    buffer += chunk
                    if len(buffer) >= CHUNK:
                        data, buffer = bytes(buffer), bytearray()
                        await asyncio.to_thread(writer.write, data)
                if buffer:
                    await asyncio.to_thread(writer.write, bytes(buffer))
                info = await asyncio.to_thread(writer.commit)
            except aiohttp.ClientPayloadError as exc:
                writer.abort()
                raise ApiError.bad_request(f"request body ended early: {exc}") from exc
            except BaseException:
                writer.abort()  # quick and synchronous: safe even while being cancelled
                raise
    finally:
        slots.release()
    return json_response(info.to_json())


async def _open_reader(request: web.Request):  # type: ignore[no-untyped-def]
    key = _key(request)
    with _storage_errors(key):
        return await asyncio.to_thread(request.app[STORE].open_reader, key)


def _object_headers(size: int, sha256: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    if sha256:
        headers["X-Object-Sha256"] = sha256
        headers["ETag"] = f'"{sha256}"'
    return headers


async def get_object(request: web.Request) -> web.StreamResponse:
    reader = await _open_reader(request)
    try:
        response = web.StreamResponse(headers=_object_headers(reader.size, reader.sha256))
        await response.prepare(request)
        while True:
            try:
                chunk = await asyncio.to_thread(reader.read, CHUNK)
            except StorageError as exc:
                # Headers are gone already: all we can do is cut the connection short.
                log.warning("storage backend error while streaming %r: %s", reader.key, exc)
                raise
            if not chunk:
                break
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        reader.close()


async def head_object(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    with _storage_errors(key):
        info = await asyncio.to_thread(request.app[STORE].head, key)
    if info is None:
        raise ApiError.not_found(f"no object under key {key!r}")
    response = web.StreamResponse(headers=_object_headers(info.size, info.sha256))
    await response.prepare(request)
    await response.write_eof()
    return response


async def delete_object(request: web.Request) -> web.Response:
    key = _key(request)
    with _storage_errors(key):
        deleted = await asyncio.to_thread(request.app[STORE].delete, key)
    if not deleted:
        raise ApiError.not_found(f"no object under key {key!r}")
    return json_response({"key": key, "deleted": True})


async def list_objects(request: web.Request) -> web.Response:
    query = request.query
    prefix = query.get("prefix", "")
    after = query.get("after", "")
    max_limit = request.app[APP_CONFIG].storaged.list_limit
    raw_limit = query.get("limit", "")
    try:
        limit = int(raw_limit) if raw_limit else max_limit
    except ValueError as exc:
        raise ApiError.bad_request(f"limit: expected an integer, got {raw_limit!r}") from exc
    if limit <= 0:
        raise ApiError.bad_request(f"limit: must be positive, got {limit}")
    limit = min(limit, max_limit)
    for name, value in (("prefix", prefix), ("after", after)):
        if any(ord(c) < 0x20 for c in value):
            raise ApiError.bad_request(f"{name}: contains a control character")
    with _storage_errors(prefix):
        page = await asyncio.to_thread(request.app[STORE].list, prefix, after, limit)
    return json_response(
        {
            "prefix": prefix,
            "after": after,
            "items": [{"key": i.key, "size": i.size} for i in page.items],
            "count": len(page.items),
            "truncated": page.truncated,
            "next_after": page.next_after,
        }
    )


def create_app(config: Config) -> web.Application:
    """storaged's application (routes in the module docstring)."""
    app = make_app("storaged", config)
    app[PUT_SLOTS] = PutSlots(config.storaged.put_concurrency)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, config)
        log.info("storaged: backend %r", store)
        app[STORE] = store
        yield
        await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(store_ctx)
    r = api_routes(app)
    octets = {"application/octet-stream": {"type": "string", "contentMediaType": "application/octet-stream"}}
    r.put(KEY_ROUTE, put_object, summary="Store an object (streamed)", raw_body=octets, ok=A.StoredObject, errors=(400, 409, 413, 502, 503))
    r.get(KEY_ROUTE, get_object, summary="An object's bytes (streamed)", ok=octets["application/octet-stream"], ok_media="application/octet-stream", errors=(400, 404, 502), allow_head=False)
    r.head(KEY_ROUTE, head_object, summary="An object's size and SHA-256, no body", errors=(400, 404, 502))
    r.delete(KEY_ROUTE, delete_object, summary="Delete an object", ok=A.ObjectDeleted, errors=(400, 404, 502))
    page = (Param("prefix"), Param("after"), Param("limit", "at most [storaged].list_limit", {"type": "integer"}))
    r.get("/storage", list_objects, summary="Keys in order, a page at a time", query=page, ok=A.ObjectList, errors=(400, 502), allow_head=False)
    r.get("/storage/", list_objects, summary="Keys in order, a page at a time", query=page, ok=A.ObjectList, errors=(400, 502), allow_head=False)
    return app
