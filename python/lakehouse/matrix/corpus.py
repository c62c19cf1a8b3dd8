"""The corpus builder (SPEC section 4; contract section 9.15): SQL rows -> embeddings -> an index.

``POST /matrix/corpus/build {name, sql, id_column, text_template | text_columns,
metadata_columns?, batch_size?, model?, distance?, replace?, wait?}``:

1. the SQL runs on queryd, page by page (``SELECT * FROM (<sql>) ORDER BY <id_column>
   LIMIT n OFFSET m``, so a corpus larger than queryd's row cap still builds);
2. each row becomes a text (the template with ``{column}`` placeholders, or the listed
   columns as ``column: value`` lines), an id (the id column as a string) and metadata
   (the listed columns, or the whole row);
3. rows go to embedd and then to vectord in batches of ``batch_size``; the index is created
   with the first batch's dimension (or checked, when it exists).

A batch whose embed or add fails is reported in ``failed_batches`` and the build goes on
(the reference's ErrPartialFailure): the job ends ``done``, ``partial`` (some batches failed)
or ``failed`` (nothing was added, or the SQL or the index could not be used). Rows without
an id or with an empty text are skipped and counted. Jobs run in the background; the POST
waits for the end unless ``wait`` is false, and ``GET /matrix/corpus/build/{job_id}``
reports progress.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..clients.base import UpstreamError
from ..web import ApiError
from .context import MatrixContext
from .types import CorpusBuildRequest

__all__ = ["CorpusJob", "CorpusJobs", "render_template", "template_fields"]

log = logging.getLogger("lakehouse.matrix.corpus")

MAX_BATCH_SIZE = 4096
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def template_fields(template: str) -> list[str]:
    """The column names a template uses; ValueError for a malformed template.

    Only plain names are allowed in braces (no attribute access, indexing or format
    specs: a template is data from a client, not code)."""
    names: list[str] = []
    for m in _FIELD.finditer(template):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        if token in ("{", "}"):
            raise ValueError(f"text_template: unmatched {token!r} at {m.start()} (write {token * 2})")
        name = m.group(1).strip()
        if not _NAME.match(name):
            raise ValueError(f"text_template: {{{m.group(1)}}} is not a column name")
        if name not in names:
            names.append(name)
    return names


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def render_template(template: str, row: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return _text(row.get(m.group(1).strip()))

    return _FIELD.sub(sub, template)


def _columns_text(columns: list[str], row: dict[str, Any]) -> str:
    lines = []
    for c in columns:
        value = _text(row.get(c)).strip()
        if value:
            lines.append(f"{c}: {value}")
    return "\n".join(lines)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class CorpusJob:
    job_id: str
    name: str
    status: str = "running"  # running | done | partial | failed
    rows_read: int = 0
    rows_skipped: int = 0
    rows_embedded: int = 0
    added: int = 0
    updated: int = 0
    batches: int = 0
    failed_batches: list[dict[str, Any]] = field(default_factory=list)
    dimension: int | None = None
    model: str | None = None
    error: str | None = None
    #: HTTP status the waiting POST answers when the job failed outright
    error_status: int = 502
    started: float = field(default_factory=time.time)
    finished: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "job_id": self.job_id,
            "name": self.name,
            "status": self.status,
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "rows_embedded": self.rows_embedded,
            "added": self.added,
            "updated": self.updated,
            "batches": self.batches,
            "failed_batches": list(self.failed_batches),
            "dimension": self.dimension,
            "model": self.model,
            "error": self.error,
            "elapsed_ms": round((end - self.started) * 1000, 1),
        }


class _Fatal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CorpusJobs:
    """The builder's jobs: running ones and the last ``kept`` finished ones."""

    def __init__(self, ctx: MatrixContext) -> None:
        self.ctx = ctx
        self.jobs: OrderedDict[str, CorpusJob] = OrderedDict()

    def get(self, job_id: str) -> CorpusJob:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise ApiError.not_found(f"no corpus build job {job_id!r}") from None

    def list(self) -> list[dict[str, Any]]:
        return [j.to_json() for j in reversed(self.jobs.values())]

    def _validate(self, req: CorpusBuildRequest) -> tuple[list[str], int]:
        if not req.name.strip():
            raise ApiError.bad_request("name must not be empty")
        if not req.sql.strip().rstrip(";").strip():
            raise ApiError.bad_request("sql must not be empty")
        if not req.id_column:
            raise ApiError.bad_request("id_column must not be empty")
        if bool(req.text_template) == bool(req.text_columns):
            raise ApiError.bad_request("give exactly one of text_template and text_columns")
        try:
            fields = template_fields(req.text_template) if req.text_template else list(req.text_columns)
        except ValueError as exc:
            raise ApiError.bad_request(str(exc)) from None
        if req.text_template and not fields:
            raise ApiError.bad_request("text_template uses no column: every row would embed the same text")
        if req.distance not in ("cosine", "euclidean", "dot"):
            raise ApiError.bad_request("distance must be 'cosine', 'euclidean' or 'dot'")
        batch = req.batch_size or self.ctx.settings.corpus_batch_size
        if not 1 <= batch <= MAX_BATCH_SIZE:
            raise ApiError.bad_request(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {req.batch_size}")
        for job in self.jobs.values():
            if job.name == req.name and job.status == "running":
                raise ApiError.conflict(f"a build of corpus {req.name!r} is already running ({job.job_id})")
        return fields, batch

    async def start(self, req: CorpusBuildRequest, trace_id: str | None) -> CorpusJob:
        fields, batch = self._validate(req)
        job = CorpusJob(job_id=uuid.uuid4().hex[:16], name=req.name)
        self.jobs[job.job_id] = job
        self._trim()
        job.task = asyncio.create_task(self._run(job, req, fields, batch, trace_id))
        return job

    def _trim(self) -> None:
        finished = [j for j in self.jobs.values() if j.status != "running"]
        for job in finished[: max(0, len(finished) - self.ctx.settings.corpus_jobs_kept)]:
            self.jobs.pop(job.job_id, None)

    async def close(self) -> None:
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the build ------------------------------------------------------------------------

    async def _run(
        self, job: CorpusJob, req: CorpusBuildRequest, fields: list[str], batch: int, trace_id: str | None
    ) -> None:
        try:
            await self._build(job, req, fields, batch, trace_id)
            if job.failed_batches:
                job.status = "failed" if job.added + job.updated == 0 else "partial"
                if job.status == "failed":
                    job.error = f"every batch failed; first: {job.failed_batches[0]['error']}"
            else:
                job.status = "done"
        except _Fatal as exc:
            job.status, job.error, job.error_status = "failed", exc.message, exc.status
        except asyncio.CancelledError:
            job.status, job.error = "failed", "cancelled (matrixd stopped)"
            raise
        except Exception as exc:  # a bug: keep the job readable, log the traceback
            log.exception("corpus build %s failed", job.job_id)
            job.status, job.error, job.error_status = "failed", f"internal error: {exc}", 500
        finally:
            job.finished = time.time()
            self._trim()

    async def _columns(self, req: CorpusBuildRequest, fields: list[str], trace_id: str | None) -> None:
        """Check the named columns against the query's result columns (``LIMIT 0``) before
        anything changes: a bad ``id_column`` is named with the columns there are, instead of
        queryd's error about the paging SQL this module wraps around the caller's."""
        sql = req.sql.strip().rstrip(";").strip()
        try:
            answer = await self.ctx.queryd.sql(
                f"SELECT * FROM ({sql}) AS lakehouse_corpus_source LIMIT 0", trace_id=trace_id
            )
        except UpstreamError as exc:
            if exc.status in (400, 408):
                raise _Fatal(400, f"sql refused by queryd: {exc.message}") from None
            raise _Fatal(502, f"queryd: {exc}") from None
        names = [c["name"] for c in answer["columns"]]
        has = ", ".join(names) or "no columns"
        if req.id_column not in names:
            raise _Fatal(400, f"id_column {req.id_column!r} is not a column of the query's result (it has: {has})")
        wanted = [*fields, *(req.metadata_columns or [])]
        missing = [c for c in dict.fromkeys(wanted) if c not in names]
        if missing:
            raise _Fatal(400, f"columns not in the query's result: {', '.join(missing)} (it has: {has})")

    async def _pages(self, req: CorpusBuildRequest, trace_id: str | None):
        sql = req.sql.strip().rstrip(";").strip()
        page_rows = self.ctx.settings.corpus_page_rows
        offset = 0
        while True:
            paged = (
                f"SELECT * FROM ({sql}) AS lakehouse_corpus_source "
                f"ORDER BY {_quote_ident(req.id_column)} LIMIT {page_rows} OFFSET {offset}"
            )
            try:
                answer = await self.ctx.queryd.sql(paged, trace_id=trace_id)
            except UpstreamError as exc:
                if exc.status in (400, 408):
                    raise _Fatal(400, f"sql refused by queryd: {exc.message}") from None
                raise _Fatal(502, f"queryd: {exc}") from None
            names = [c["name"] for c in answer["columns"]]
            rows = [dict(zip(names, r, strict=True)) for r in answer["rows"]]
            yield names, rows
            if len(rows) < page_rows:
                return
            offset += page_rows

    async def _ensure_index(self, job: CorpusJob, req: CorpusBuildRequest, dimension: int, trace_id: str | None) -> None:
        vectord = self.ctx.vectord
        try:
            info = await vectord.create(req.name, dimension, distance=req.distance, exist_ok=True, trace_id=trace_id)
        except UpstreamError as exc:
            status = 400 if exc.status == 400 else 502
            raise _Fatal(status, f"vectord: cannot create index {req.name!r}: {exc.message}") from None
        if int(info.get("dimension", dimension)) != dimension:
            raise _Fatal(
                409,
                f"index {req.name!r} exists with dimension {info.get('dimension')}, the embeddings "
                f"have {dimension} (use replace: true to rebuild it)",
            )

    async def _build(
        self, job: CorpusJob, req: CorpusBuildRequest, fields: list[str], batch: int, trace_id: str | None
    ) -> None:
        ctx = self.ctx
        await self._columns(req, fields, trace_id)
        if req.replace:
            try:
                await ctx.vectord.drop(req.name, missing_ok=True, trace_id=trace_id)
            except UpstreamError as exc:
                raise _Fatal(502, f"vectord: cannot drop index {req.name!r}: {exc.message}") from None
        checked = False
        index_ready = False
        async for names, rows in self._pages(req, trace_id):
            if not checked:
                wanted = [req.id_column, *fields, *(req.metadata_columns or [])]
                missing = [c for c in dict.fromkeys(wanted) if c not in names]
                if missing:
                    raise _Fatal(
                        400, f"columns not in the query's result: {', '.join(missing)} (it has: {', '.join(names)})"
                    )
                checked = True
            job.rows_read += len(rows)
            items: list[tuple[str, str, dict[str, Any]]] = []
            for row in rows:
                rid = row.get(req.id_column)
                text = render_template(req.text_template, row) if req.text_template else _columns_text(fields, row)
                if rid is None or _text(rid) == "" or not text.strip():
                    job.rows_skipped += 1
                    continue
                meta = row if req.metadata_columns is None else {c: row.get(c) for c in req.metadata_columns}
                items.append((_text(rid), text, meta))
            for lo in range(0, len(items), batch):
                chunk = items[lo : lo + batch]
                number = job.batches
                job.batches += 1
                report = {"batch": number, "first_row": job.rows_read - len(rows) + lo, "rows": len(chunk)}
                try:
                    model, _, vectors = await ctx.embedd.embed([t for _, t, _ in chunk], req.model or None, trace_id=trace_id)
                except UpstreamError as exc:
                    job.failed_batches.append({**report, "stage": "embed", "error": str(exc)})
                    continue
                job.rows_embedded += len(chunk)
                job.model = model
                if not index_ready:
                    job.dimension = int(vectors.shape[1])
                    await self._ensure_index(job, req, job.dimension, trace_id)
                    index_ready = True
                try:
                    added, updated = await ctx.vectord.add(
                        req.name, [i for i, _, _ in chunk], vectors, [m for _, _, m in chunk], trace_id=trace_id
                    )
                except UpstreamError as exc:
                    job.failed_batches.append({**report, "stage": "add", "error": str(exc)})
                    continue
                job.added += added
                job.updated += updated
