"""The corpus builder (SPEC section 4; contract section 9.15): SQL rows -> embeddings -> an index.

``POST /matrix/corpus/build {name, sql, id_column, text_template | text_columns,
metadata_columns?, batch_size?, model?, distance?, replace?, wait?}``:

1. the SQL runs on queryd, page by page (``SELECT * FROM (<sql>) ORDER BY <id_column>
   LIMIT n OFFSET m``, so a corpus larger than queryd's row cap still builds);
2. each row becomes a text (the template with ``{column}`` placeholders, or the listed
   columns as ``column: value`` lines), an id (the id column as a string) and metadata
   (the listed columns, or the whole row): :mod:`.rows`, shared with the Ray build;
3. rows are embedded in batches of ``batch_size`` and go to vectord; the index is created
   with the first batch's dimension (or checked, when it exists). The engine: embedd, one
   batch after another (``[matrixd].ray_address`` empty, the default), or a Ray Data
   pipeline of embedder actors on a cluster (:mod:`lakehouse.scale.pipeline`; 503 before
   the job starts when the cluster cannot be used: :mod:`lakehouse.scale.ray_build`).
   Everything else (reading, batching, adding, the report) is the same code for both.

A batch whose embed or add fails is reported in ``failed_batches`` and the build goes on
(the reference's ErrPartialFailure): the job ends ``done``, ``partial`` (some batches failed)
or ``failed`` (nothing was added, or the SQL or the index could not be used). Rows without
an id or with an empty text are skipped and counted. Jobs run in the background; the POST
waits for the end unless ``wait`` is false, and ``GET /matrix/corpus/build/{job_id}``
reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..clients.base import UpstreamError
from ..config import EmbeddConfig
from ..web import ApiError
from .context import MatrixContext
from .rows import (
    Chunk,
    Embedded,
    EmbedFailed,
    RowShape,
    chunk_rows,
    render_template,
    template_fields,
)
from .types import CorpusBuildRequest

__all__ = ["CorpusJob", "CorpusJobs", "render_template", "template_fields"]

log = logging.getLogger("lakehouse.matrix.corpus")

MAX_BATCH_SIZE = 4096


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
    """The builder's jobs: running ones and the last ``kept`` finished ones.

    ``embedd``: the ``[embedd]`` section the embed actors run when builds go to Ray
    (``[matrixd].ray_address`` set); without it builds embed through embedd."""

    def __init__(self, ctx: MatrixContext, embedd: EmbeddConfig | None = None) -> None:
        self.ctx = ctx
        self.embedd = embedd or EmbeddConfig()
        self.jobs: OrderedDict[str, CorpusJob] = OrderedDict()

    @property
    def engine(self) -> str:
        """Where builds embed: "ray" when ``[matrixd].ray_address`` is set, else "matrixd"."""
        return "ray" if self.ctx.settings.ray_address else "matrixd"

    def get(self, job_id: str) -> CorpusJob:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise ApiError.not_found(f"no corpus build job {job_id!r}") from None

    def list(self) -> list[dict[str, Any]]:
        return [j.to_json() for j in reversed(self.jobs.values())]

    def _validate(self, req: CorpusBuildRequest) -> tuple[RowShape, int]:
        if not req.name.strip():
            raise ApiError.bad_request("name must not be empty")
        if not req.sql.strip().rstrip(";").strip():
            raise ApiError.bad_request("sql must not be empty")
        try:
            shape = RowShape.of(
                req.id_column,
                text_template=req.text_template,
                text_columns=req.text_columns,
                metadata_columns=req.metadata_columns,
            )
        except ValueError as exc:
            raise ApiError.bad_request(str(exc)) from None
        if req.distance not in ("cosine", "euclidean", "dot"):
            raise ApiError.bad_request("distance must be 'cosine', 'euclidean' or 'dot'")
        batch = req.batch_size or self.ctx.settings.corpus_batch_size
        if not 1 <= batch <= MAX_BATCH_SIZE:
            raise ApiError.bad_request(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {req.batch_size}")
        for job in self.jobs.values():
            if job.name == req.name and job.status == "running":
                raise ApiError.conflict(f"a build of corpus {req.name!r} is already running ({job.job_id})")
        return shape, batch

    async def start(self, req: CorpusBuildRequest, trace_id: str | None) -> CorpusJob:
        shape, batch = self._validate(req)
        if self.engine == "ray":
            # Before the job exists: a cluster that cannot run it is the answer (503), and
            # nothing is created or dropped.
            await self._ray_ready()
            for job in self.jobs.values():  # the same check again: the await let others in
                if job.name == req.name and job.status == "running":
                    raise ApiError.conflict(f"a build of corpus {req.name!r} is already running ({job.job_id})")
        job = CorpusJob(job_id=uuid.uuid4().hex[:16], name=req.name)
        self.jobs[job.job_id] = job
        self._trim()
        job.task = asyncio.create_task(self._run(job, req, shape, batch, trace_id))
        return job

    async def _ray_ready(self) -> None:
        from ..scale.ray_build import RayBuildUnavailable, prepare

        try:
            await asyncio.to_thread(prepare, self.ctx.settings.ray_address)
        except RayBuildUnavailable as exc:
            raise ApiError(503, f"corpus builds run on Ray here, and {exc}") from None

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
        self, job: CorpusJob, req: CorpusBuildRequest, shape: RowShape, batch: int, trace_id: str | None
    ) -> None:
        try:
            await self._build(job, req, shape, batch, trace_id)
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

    async def _columns(self, req: CorpusBuildRequest, shape: RowShape, trace_id: str | None) -> None:
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
        missing = [c for c in shape.columns() if c not in names]
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

    async def _chunks(
        self, job: CorpusJob, req: CorpusBuildRequest, shape: RowShape, batch: int, trace_id: str | None
    ) -> AsyncIterator[Chunk]:
        """The source rows as numbered batches (:func:`~lakehouse.matrix.rows.chunk_rows`),
        counting rows read and skipped and batches made."""
        checked = False
        async for names, rows in self._pages(req, trace_id):
            if not checked:
                missing = [c for c in shape.columns() if c not in names]
                if missing:
                    raise _Fatal(
                        400, f"columns not in the query's result: {', '.join(missing)} (it has: {', '.join(names)})"
                    )
                checked = True
            made, n, skipped = chunk_rows(rows, shape, batch, first_row=job.rows_read, first_number=job.batches)
            job.rows_read += n
            job.rows_skipped += skipped
            for chunk in made:
                job.batches += 1
                yield chunk

    async def _embed_here(
        self, chunks: AsyncIterator[Chunk], model: str, trace_id: str | None
    ) -> AsyncIterator[tuple[Chunk, Embedded | EmbedFailed]]:
        """The in-process engine: each batch through embedd, one after the other."""
        async for chunk in chunks:
            try:
                name, _, vectors = await self.ctx.embedd.embed(chunk.texts, model or None, trace_id=trace_id)
            except UpstreamError as exc:
                yield chunk, EmbedFailed(str(exc))
                continue
            yield chunk, Embedded(name, vectors)

    async def _embed_on_ray(
        self, chunks: AsyncIterator[Chunk], model: str
    ) -> AsyncIterator[tuple[Chunk, Embedded | EmbedFailed]]:
        """The Ray engine: batches embedded in parallel on the cluster (scale/pipeline.py)."""
        from ..scale.pipeline import PipelineFailed, embed_chunks

        stream = embed_chunks(chunks, self.embedd, model, concurrency=self.ctx.settings.corpus_ray_actors)
        async with contextlib.aclosing(stream):
            try:
                async for pair in stream:
                    yield pair
            except PipelineFailed as exc:
                raise _Fatal(503, str(exc)) from None

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
        self, job: CorpusJob, req: CorpusBuildRequest, shape: RowShape, batch: int, trace_id: str | None
    ) -> None:
        ctx = self.ctx
        await self._columns(req, shape, trace_id)
        if req.replace:
            try:
                await ctx.vectord.drop(req.name, missing_ok=True, trace_id=trace_id)
            except UpstreamError as exc:
                raise _Fatal(502, f"vectord: cannot drop index {req.name!r}: {exc.message}") from None
        chunks = self._chunks(job, req, shape, batch, trace_id)
        if self.engine == "ray":
            stream = self._embed_on_ray(chunks, req.model)
        else:
            stream = self._embed_here(chunks, req.model, trace_id)
        index_ready = False
        async with contextlib.aclosing(stream):
            async for chunk, outcome in stream:
                if isinstance(outcome, EmbedFailed):
                    job.failed_batches.append({**chunk.report(), "stage": "embed", "error": outcome.error})
                    continue
                job.rows_embedded += len(chunk.ids)
                job.model = outcome.model
                if not index_ready:
                    job.dimension = int(outcome.vectors.shape[1])
                    await self._ensure_index(job, req, job.dimension, trace_id)
                    index_ready = True
                try:
                    added, updated = await ctx.vectord.add(
                        req.name, chunk.ids, outcome.vectors, chunk.metadata, trace_id=trace_id
                    )
                except UpstreamError as exc:
                    job.failed_batches.append({**chunk.report(), "stage": "add", "error": str(exc)})
                    continue
                job.added += added
                job.updated += updated
