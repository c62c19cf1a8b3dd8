"""Corpus builds and re-embedding as Ray Data pipelines (the ``ray`` extra).

The pipeline embeds batches of texts on a pool of embedder actors spread over the cluster
(each builds the embedder an ``[embedd]`` section describes once, with its model:
:func:`lakehouse.embed.build_embedder`, the code embedd itself runs), in parallel, and gives
the vectors back to the driver in the order the batches went in. The driver reads the source
rows and turns them into batches with :mod:`lakehouse.matrix.rows` (the code the in-process
build uses: same ids, texts and metadata), then adds each embedded batch to its index.

Two drivers use it:

- matrixd's ``/matrix/corpus/build`` when ``[matrixd].ray_address`` is set (and so
  ``lakehouse corpus build``): rows paged from queryd, batches added to vectord
  (:mod:`lakehouse.matrix.corpus`, through :func:`embed_chunks`);
- :func:`build_corpus` from Python, into any object with ``add(ids, vectors, metadata)``
  (a :class:`~lakehouse.scale.ShardedIndex`, a :class:`~lakehouse.vectors.index.VectorIndex`)::

      stats = build_corpus(index, rows, provider="hash", dimension=384,
                           id_column="id", text_template="{text}", metadata_columns=["role"])

Re-embedding a corpus with another model is the same build with another ``model`` (or
``[embedd]`` section) into a new index (``replace`` through matrixd).

How the batches flow: the driver puts each batch's texts on a Ray queue; one read task of a
Ray Data dataset takes them off in order and yields one block per batch; ``map_batches``
sends each block to an embedder actor of an autoscaling pool (1 to ``concurrency``
actors, one CPU each); the driver iterates the results. At most ``window`` batches are in
flight, so memory stays bounded however large the source. An embed error (the provider's own
message: an unreachable Ollama, a text over the limit, a timeout) is that batch's result
(:class:`~lakehouse.matrix.rows.EmbedFailed`), not the end of the pipeline; a failure of
Ray itself (a lost node, an actor that died) ends it with :class:`PipelineFailed`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from ..config import EmbeddConfig
from ..matrix.rows import Chunk, Embedded, EmbedFailed, RowShape, chunk_rows
from ..progress import Progress

try:
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata
    from ray.util.queue import Queue
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("Ray Data pipelines need the ray extra: pip install 'lakehouse[ray]'") from exc

__all__ = ["PipelineFailed", "build_corpus", "cluster_cpus", "embed_chunks"]

PROVIDERS = ("hash", "sentence-transformers", "ollama")


class PipelineFailed(RuntimeError):
    """Ray itself failed during a build (not an embed error: those fail one batch)."""


def cluster_cpus() -> int:
    """The CPUs of the cluster this process is connected to (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class _QueueSource(Datasource):
    """The input: batches the driver puts on a Ray queue, read by a single read task in the
    order they were put (one block per batch); None ends it."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[ReadTask]:
        queue = self._queue

        def read() -> Iterator[pa.Table]:
            while True:
                got = queue.get(block=True)
                if got is None:
                    return
                number, texts = got
                yield pa.table({"number": pa.array([number], pa.int64()), "texts": pa.array([texts], pa.list_(pa.string()))})

        meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
        return [ReadTask(read, meta)]


class _EmbedActor:
    """The map_batches callable: one per actor of the pool. It builds the embedder once
    (a model loads once per actor) and runs it on its own event loop."""

    def __init__(self, section: EmbeddConfig, model: str) -> None:
        from ..embed import build_embedder

        self._model = model or None
        self._loop = asyncio.new_event_loop()
        self._session = None
        if section.provider == "ollama":
            self._session = self._loop.run_until_complete(self._open_session())
        self._embedder = build_embedder(section, self._session)

    @staticmethod
    async def _open_session() -> Any:
        import aiohttp

        # The embedder bounds each batch ([embedd].timeout); no session-wide limit.
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    def _embed(self, texts: list[str]) -> tuple[str, np.ndarray | None, str]:
        try:
            result = self._loop.run_until_complete(self._embedder.embed(texts, self._model))
        except Exception as exc:  # the provider's (or the texts') own message fails this batch
            return "", None, str(exc) or type(exc).__name__
        return result.model, np.ascontiguousarray(result.vectors, dtype=np.float32), ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        numbers, models, dims, blobs, errors = [], [], [], [], []
        for row in batch.to_pylist():
            model, vectors, error = self._embed(list(row["texts"]))
            numbers.append(row["number"])
            models.append(model)
            dims.append(0 if vectors is None else int(vectors.shape[1]))
            blobs.append(b"" if vectors is None else vectors.tobytes())
            errors.append(error)
        return pa.table(
            {
                "number": pa.array(numbers, pa.int64()),
                "model": pa.array(models, pa.string()),
                "dimension": pa.array(dims, pa.int64()),
                "vectors": pa.array(blobs, pa.large_binary()),
                "error": pa.array(errors, pa.string()),
            }
        )


def _outcome(row: Mapping[str, Any]) -> Embedded | EmbedFailed:
    if row["error"]:
        return EmbedFailed(row["error"])
    vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(-1, int(row["dimension"]))
    return Embedded(row["model"], vectors)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def embed_chunks(
    chunks: AsyncIterator[Chunk],
    embedd: EmbeddConfig,
    model: str = "",
    *,
    concurrency: int = 0,
    window: int = 0,
) -> AsyncIterator[tuple[Chunk, Embedded | EmbedFailed]]:
    """Each chunk of ``chunks`` with what embedding its texts on the cluster gave, in the
    order the chunks came. ``concurrency``: embedder actors at most (0: one per CPU of the
    cluster); ``window``: chunks in flight at most (0: twice the actors, plus 2).

    An error raised by ``chunks`` (the source failing) is raised here once the chunks in
    flight are out; PipelineFailed when Ray fails. Needs a connected Ray (ray_build.prepare
    or ray.init). Leaving the loop early (or cancelling) stops the pipeline."""
    actors = concurrency or cluster_cpus()
    window = window or 2 * actors + 2
    queue = Queue(actor_options={"num_cpus": 0})
    ds = ray.data.read_datasource(_QueueSource(queue), override_num_blocks=1, num_cpus=0)
    ds = ds.map_batches(
        _EmbedActor,
        fn_constructor_args=(embedd, model),
        batch_size=1,
        batch_format="pyarrow",
        concurrency=(1, actors),
        num_cpus=1,
    )
    ds.context.execution_options.preserve_order = True
    # Ray Data merges a task's small output blocks up to this size before passing them on:
    # a batch must go on as soon as it is read (the window waits for it), so no merging.
    ds.context.target_max_block_size = 1
    ds.context.enable_progress_bars = False  # progress is the driver's (a job's counters, a bar)

    loop = asyncio.get_running_loop()
    results: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    slots = asyncio.Semaphore(window)
    pending: dict[int, Chunk] = {}
    sent: collections.deque[int] = collections.deque()
    source_error: list[BaseException] = []
    stop = threading.Event()

    def deliver(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(results.put_nowait, (kind, value))

    def drain() -> None:
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    deliver("row", row)
                if stop.is_set():
                    return
            deliver("end", None)
        except Exception as exc:
            deliver("error", exc)

    async def feed() -> None:
        try:
            async for chunk in chunks:
                await slots.acquire()
                pending[chunk.number] = chunk
                sent.append(chunk.number)
                await queue.put_async((chunk.number, chunk.texts))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the source failed: finish what is in flight, then raise it
            source_error.append(exc)
        await queue.put_async(None)

    drainer = threading.Thread(target=drain, name="corpus-pipeline", daemon=True)
    feeder = asyncio.create_task(feed())
    drainer.start()
    ready: dict[int, Embedded | EmbedFailed] = {}
    try:
        while True:
            kind, value = await results.get()
            if kind == "end":
                break
            if kind == "error":
                raise PipelineFailed(f"the Ray pipeline failed: {_first_line(value)}") from value
            ready[int(value["number"])] = _outcome(value)
            slots.release()
            while sent and sent[0] in ready:
                number = sent.popleft()
                yield pending.pop(number), ready.pop(number)
        await feeder
        if source_error:
            raise source_error[0]
    finally:
        stop.set()
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        # Ends the read task (its queue is gone), and so the pipeline and the drain thread.
        with contextlib.suppress(Exception):
            queue.shutdown(force=True)


# ---- from Python ---------------------------------------------------------------------


def _rows_of(rows: Sequence[Mapping[str, Any]] | Any) -> tuple[Iterable[Mapping[str, Any]], int | None]:
    if isinstance(rows, list | tuple):
        return rows, len(rows)
    if hasattr(rows, "iter_rows"):  # a Ray Dataset: read on the cluster, streamed here
        return rows.iter_rows(), None
    return rows, None


def build_corpus(
    index: Any,
    rows: Sequence[Mapping[str, Any]] | Any,
    *,
    provider: str = "hash",
    dimension: int = 384,
    model: str = "",
    embedd: EmbeddConfig | None = None,
    id_column: str = "id",
    text_template: str = "",
    text_columns: Sequence[str] = (),
    metadata_columns: Sequence[str] | None = (),
    batch_size: int = 256,
    concurrency: int = 0,
    page_rows: int = 10_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed ``rows`` (a list of dicts, any iterable of them, or a Ray Dataset) on the
    cluster and add them to ``index``; ``{rows, added, updated, skipped, seconds}``.

    Each row becomes ``(id, text, metadata)`` as in matrixd's build (:class:`RowShape`):
    ``text_template`` (default ``"{text}"``) or ``text_columns``; ``metadata_columns``
    (None: the whole row; the default keeps none), added as raw JSON. Rows without an id or
    text are skipped and counted. The embedder is ``embedd`` (an ``[embedd]`` section), else
    ``provider`` at ``dimension`` with ``model`` as its default. ValueError for bad arguments
    (before anything runs); an embed batch that fails ends the build with its error."""
    if embedd is None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
        embedd = EmbeddConfig(provider=provider, dimension=dimension, default_model=model)
    embedd.validate("embedd")
    for what, value in (("batch_size", batch_size), ("page_rows", page_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0:
        raise ValueError(f"concurrency must be an integer >= 0, got {concurrency!r}")
    if not text_template and not text_columns:
        text_template = "{text}"
    shape = RowShape.of(id_column, text_template=text_template, text_columns=text_columns,
                        metadata_columns=metadata_columns)
    source, total = _rows_of(rows)
    bar = Progress("building corpus", total=total, unit="rows") if progress else None
    stats = {"rows": 0, "added": 0, "updated": 0, "skipped": 0}
    started = time.perf_counter()

    async def chunks() -> AsyncIterator[Chunk]:
        it = iter(source)
        number = 0
        while True:
            page = await asyncio.to_thread(_take, it, page_rows)
            if not page:
                return
            made, n, skipped = chunk_rows(page, shape, batch_size, first_row=stats["rows"], first_number=number)
            stats["rows"] += n
            stats["skipped"] += skipped
            number += len(made)
            for chunk in made:
                yield chunk

    async def run() -> None:
        stream = embed_chunks(chunks(), embedd, model, concurrency=concurrency)
        async with contextlib.aclosing(stream):
            async for chunk, outcome in stream:
                if isinstance(outcome, EmbedFailed):
                    raise ValueError(f"embedding batch {chunk.number} (rows from {chunk.first_row}) failed: {outcome.error}")
                metadata = [orjson.dumps(m, option=orjson.OPT_SERIALIZE_NUMPY) for m in chunk.metadata] if shape.metadata_columns != () else None
                a, u = await asyncio.to_thread(index.add, chunk.ids, outcome.vectors, metadata)
                stats["added"] += a
                stats["updated"] += u
                if bar is not None:
                    bar.update(stats["rows"])

    asyncio.run(run())
    seconds = time.perf_counter() - started
    if bar is not None:
        bar.close(f"built: {stats['added']} added, {stats['updated']} updated, {stats['skipped']} skipped in {seconds:.1f} s")
    return {**stats, "seconds": round(seconds, 3)}


def _take(it: Iterator[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    out = []
    for row in it:
        out.append(row)
        if len(out) == n:
            break
    return out
