"""ingestd (:3213): CSV -> Parquet -> object store -> catalogd (contract §5).

    POST /ingest?name=<dataset>
        body: multipart/form-data with the CSV in the field ``file``, or the raw CSV
        (Content-Type text/csv, application/csv, text/plain or application/octet-stream)
    -> {dataset_id, name, key, row_count, schema_fingerprint, columns: [{name, type}],
        existing, size}

The upload is spooled to ``<data_dir>/tmp/ingest/`` while it arrives (capped by
``[ingestd].max_csv_bytes``: 413), then read twice with pyarrow's streaming CSV reader: pass
1 infers the schema (ADR-010: string on ambiguity) and finds malformed rows, pass 2 writes
Snappy Parquet (:mod:`lakehouse.data.ingest`). Memory stays bounded whatever the size; progress
is logged every few seconds for long ingests.

The Parquet object goes to ``datasets/<name>/<fingerprint>.parquet`` through the object
store (in-process, the same backend storaged serves), then the dataset is registered with
catalogd over HTTP. The key is content-addressed by schema, so re-ingesting the same CSV is
idempotent (same key, same ``dataset_id``, ``existing: true``; an identical object is not
even rewritten), and a CSV whose schema drifted can never overwrite live data: catalogd's
409 is passed to the caller and the new object is removed again. A malformed CSV is 400
naming the line, and nothing is written or registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..clients.base import UpstreamError
from ..clients.catalogd import CatalogdClient
from ..config import Config
from ..data.catalog import validate_dataset_name
from ..data.ingest import CsvError, IngestResult, csv_to_parquet, dataset_key
from ..data.storage import CHUNK, ObjectStore, StorageError, open_store
from ..openapi import Param, api_routes
from ..openapi import answers as A
from ..web import APP_CONFIG, ApiError, internal_session, json_response, make_app, trace_id

log = logging.getLogger("lakehouse.ingestd")

STORE: web.AppKey[ObjectStore] = web.AppKey("store", ObjectStore)
CATALOGD: web.AppKey[CatalogdClient] = web.AppKey("catalogd", CatalogdClient)
SPOOL_DIR: web.AppKey[Path] = web.AppKey("spool_dir", Path)

#: the multipart field that carries the CSV
FILE_FIELD = "file"
RAW_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")
#: seconds between progress lines of a long ingest
PROGRESS_EVERY = 5.0


async def _spool(request: web.Request, limit: int, dest: Path) -> int:
    """Write the CSV of the request to ``dest``; returns its size (ApiError on bad input)."""
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    raise ApiError.bad_request(
                        f"multipart body has no {FILE_FIELD!r} field (send the CSV as {FILE_FIELD!r})"
                    )
                if isinstance(part, aiohttp.BodyPartReader) and part.name == FILE_FIELD:
                    return await _copy(_part_chunks(part), limit, dest)
                # another field: skip its content
                if isinstance(part, aiohttp.BodyPartReader):
                    await part.release()
        except (
            ValueError,
            AssertionError,
            KeyError,
            aiohttp.ClientPayloadError,
            HttpProcessingError,  # a part's headers that do not parse (a control character)
        ) as exc:
            raise ApiError.bad_request(f"malformed multipart body: {exc}") from exc
    if ctype in RAW_TYPES:
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"CSV of {request.content_length} bytes is over the {limit}-byte cap")
        try:
            return await _copy(request.content.iter_chunked(CHUNK), limit, dest)
        except aiohttp.ClientPayloadError as exc:
            raise ApiError.bad_request(f"request body ended early: {exc}") from exc
    raise ApiError(
        415, f"unsupported Content-Type {ctype!r}: send multipart/form-data or text/csv"
    )


async def _part_chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _copy(chunks: AsyncIterator[bytes], limit: int, dest: Path) -> int:
    size = 0
    buffer = bytearray()
    with open(dest, "wb") as fh:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"CSV is larger than the {limit}-byte cap")
            buffer += chunk
            if len(buffer) >= CHUNK:
                await asyncio.to_thread(fh.write, bytes(buffer))
                buffer = bytearray()
        if buffer:
            await asyncio.to_thread(fh.write, bytes(buffer))
    return size


class _ProgressLog:
    """Logs a line at most every PROGRESS_EVERY seconds (called from the worker thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.monotonic()
        self.last = self.start

    def __call__(self, phase: str, rows: int, size: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            step = "1/2 inferring the schema" if phase == "infer" else "2/2 writing Parquet"
            log.info(
                "ingest %r: %s, %d rows so far (%.1f MB CSV, %.0f s)",
                self.name,
                step,
                rows,
                size / 1e6,
                now - self.start,
            )


def _upload(store: ObjectStore, key: str, parquet: Path, result: IngestResult) -> bool:
    """Store the Parquet file under ``key``; False when an identical object was there."""
    existing = store.head(key)
    if existing is not None and existing.sha256 == result.parquet_sha256:
        return False
    with open(parquet, "rb") as fh:
        store.put_file(key, fh)
    return existing is None


async def ingest(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise ApiError.bad_request('missing query parameter "name" (POST /ingest?name=<dataset>)')
    try:
        validate_dataset_name(name)
    except ValueError as exc:
        raise ApiError.bad_request(f'"name": {exc}') from exc
    config = request.app[APP_CONFIG]
    store = request.app[STORE]
    catalogd = request.app[CATALOGD]
    tid = trace_id(request)
    started = time.monotonic()
    spool = request.app[SPOOL_DIR]
    fd, csv_tmp = tempfile.mkstemp(prefix="upload-", suffix=".csv", dir=spool)
    os.close(fd)
    parquet_tmp = Path(csv_tmp).with_suffix(".parquet")
    try:
        size = await _spool(request, config.ingestd.max_csv_bytes, Path(csv_tmp))
        log.info("ingest %r: received %d bytes", name, size)
        try:
            result = await asyncio.to_thread(
                csv_to_parquet, csv_tmp, parquet_tmp, _ProgressLog(name)
            )
        except CsvError as exc:
            raise ApiError.bad_request(str(exc)) from exc
        key = dataset_key(name, result.schema_fingerprint)
        # A drifted schema is refused before anything is written (catalogd re-checks).
        try:
            current = await catalogd.manifest(name, trace_id=tid)
        except UpstreamError as exc:
            raise ApiError.upstream(f"catalogd: {exc.message}") from exc
        if current is not None and current["schema_fingerprint"] != result.schema_fingerprint:
            raise ApiError.conflict(schema_conflict(name, current, result.columns_json()))
        try:
            created = await asyncio.to_thread(_upload, store, key, parquet_tmp, result)
        except StorageError as exc:
            raise ApiError(502, f"storage backend error: {exc}") from exc
        try:
            manifest = await catalogd.register(
                name,
                result.schema_fingerprint,
                key=key,
                row_count=result.row_count,
                size=result.parquet_size,
                columns=result.columns_json(),
                trace_id=tid,
            )
        except UpstreamError as exc:
            if created:  # don't leave an object no manifest points to
                with contextlib.suppress(StorageError):
                    await asyncio.to_thread(store.delete, key)
            if exc.status == 409:
                raise ApiError.conflict(exc.message) from exc
            if exc.status is not None and 400 <= exc.status < 500:
                raise ApiError.bad_request(f"catalogd: {exc.message}") from exc
            raise ApiError.upstream(f"catalogd: {exc.message}") from exc
    finally:
        for leftover in (csv_tmp, parquet_tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    elapsed = time.monotonic() - started
    log.info(
        "ingest %r: %d rows, %d columns -> %s (%s) in %.1f s",
        name,
        result.row_count,
        len(result.columns),
        key,
        "existing" if manifest.get("existing") else "new",
        elapsed,
    )
    answer: dict[str, Any] = {
        "dataset_id": manifest["dataset_id"],
        "name": name,
        "key": key,
        "row_count": result.row_count,
        "schema_fingerprint": result.schema_fingerprint,
        "columns": result.columns_json(),
        "existing": bool(manifest.get("existing")),
        "size": result.parquet_size,
    }
    return json_response(answer)


def _column_words(columns: Any) -> str:
    if not isinstance(columns, list) or not columns:
        return "(not recorded)"
    return ", ".join(f"{c.get('name')} {c.get('type')}" for c in columns if isinstance(c, dict))


def schema_conflict(name: str, current: dict[str, Any], columns: list[dict[str, str]]) -> str:
    """The 409 for a CSV whose schema differs from the registered dataset's, in plain words:
    both column lists as ``name type, ...`` and what differs."""
    old = {c.get("name"): c.get("type") for c in current.get("columns") or [] if isinstance(c, dict)}
    new = {c["name"]: c["type"] for c in columns}
    changes = [f"{n} is {old[n]}, now {t}" for n, t in new.items() if n in old and old[n] != t]
    changes += [f"{n} is new" for n in new if old and n not in old]
    changes += [f"{n} is missing" for n in old if n not in new]
    differs = f" ({'; '.join(changes)})" if changes else ""
    return (
        f"dataset {name!r} is registered with other columns{differs}: registered "
        f"{_column_words(current.get('columns'))}; this CSV has {_column_words(columns)}. "
        "Ingest it under another name, or delete the dataset first"
    )


def create_app(config: Config) -> web.Application:
    """ingestd's application (routes in the module docstring)."""
    app = make_app("ingestd", config)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, config)
        spool = Path(config.data_dir) / "tmp" / "ingest"
        spool.mkdir(parents=True, exist_ok=True)
        session = internal_session(config)
        app[STORE] = store
        app[SPOOL_DIR] = spool
        app[CATALOGD] = CatalogdClient(session, config.upstream("ingestd", "catalogd"))
        yield
        await session.close()
        await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(resources)
    csv = {"type": "string", "description": "the CSV"}
    multipart = {"type": "object", "required": [FILE_FIELD], "properties": {FILE_FIELD: {"type": "string", "contentMediaType": "text/csv"}}}
    api_routes(app).post(
        "/ingest", ingest, summary="CSV to Parquet, stored and cataloged",
        raw_body={"multipart/form-data": multipart, **{t: csv for t in RAW_TYPES}},
        query=(Param("name", "the dataset's name", required=True),),
        ok=A.Ingested, errors=(409, 415, 502),
    )  # fmt: skip
    return app
