"""Corpus builds and re-embedding as Ray Data pipelines (the ``ray`` extra).

    stats = build_corpus(index, rows, provider="hash", dimension=384,
                         id_column="id", text_column="text", metadata_columns=["role"])

``rows`` (a list of dicts, or any Ray Dataset, e.g. ``ray.data.read_parquet("s3://...")``)
flows through a Ray Data pipeline: ``map_batches`` embeds batches of ``batch_size`` texts
on a pool of ``concurrency`` embedder actors spread over the cluster (each loads its model
once: the ``hash`` embedder, or ``sentence-transformers`` with the ``st`` extra), and the
driver adds each embedded batch to ``index`` (a :class:`~lakehouse.scale.ShardedIndex`, or
any object with ``add(ids, vectors, metadata)``: a sharded index sends each item to its
shard's replicas) as it arrives, showing progress. Re-embedding an existing corpus with a
new model is the same call with the rows read back (ids and texts) and a new index.

Rows whose id is missing or empty are skipped and counted. An embed batch that fails ends
the build with its error (Ray Data retries a failed task itself first).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from ..progress import Progress

try:
    import ray
    import ray.data  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("Ray Data pipelines need the ray extra: pip install 'lakehouse[ray]'") from exc

__all__ = ["Embedder", "build_corpus"]

PROVIDERS = ("hash", "sentence-transformers")


class Embedder:
    """The map_batches callable: one per actor of the pool (the model loads once)."""

    def __init__(self, provider: str, dimension: int, model: str, text_column: str) -> None:
        self.provider = provider
        self.dimension = dimension
        self.text_column = text_column
        self._st: Any = None
        if provider == "sentence-transformers":
            from ..embed.providers import SentenceTransformersProvider, _load_st_model

            p = SentenceTransformersProvider(model)
            self._st = (p, p._path(model or p.default_model))
            _load_st_model(self._st[1])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        if self._st is not None:
            provider, path = self._st
            vectors = provider._encode(path, texts)
        else:
            from ..embed.hashing import hash_embed

            vectors = hash_embed(texts, self.dimension)
        out = dict(batch)
        out["__vector"] = vectors
        return out


def build_corpus(
    index: Any,
    rows: Sequence[dict[str, Any]] | Any,
    *,
    provider: str = "hash",
    dimension: int = 384,
    model: str = "",
    id_column: str = "id",
    text_column: str = "text",
    metadata_columns: Sequence[str] = (),
    batch_size: int = 256,
    concurrency: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed ``rows`` on the cluster and add them to ``index``; counts and timings.
    ValueError for bad arguments (before anything runs)."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    for what, value in (("batch_size", batch_size), ("concurrency", concurrency), ("dimension", dimension)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if isinstance(rows, list | tuple):
        total: int | None = len(rows)
        ds = ray.data.from_items(list(rows))
    else:
        ds = rows
        total = None
    ds = ds.map_batches(
        Embedder,
        fn_constructor_args=(provider, dimension, model, text_column),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=concurrency,
        num_cpus=0.5,
    )
    bar = Progress("building corpus", total=total, unit="rows") if progress else None
    added = updated = skipped = seen = 0
    started = time.perf_counter()
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        raw_ids = batch[id_column]
        keep = [i for i, v in enumerate(raw_ids) if v is not None and str(v) != ""]
        skipped += len(raw_ids) - len(keep)
        seen += len(raw_ids)
        if keep:
            ids = [str(raw_ids[i]) for i in keep]
            vectors = np.ascontiguousarray(batch["__vector"][keep], dtype=np.float32)
            metadata = None
            if metadata_columns:
                metadata = [
                    orjson.dumps({c: _plain(batch[c][i]) for c in metadata_columns}) for i in keep
                ]
            a, u = index.add(ids, vectors, metadata)
            added += a
            updated += u
        if bar is not None:
            bar.update(seen)
    seconds = time.perf_counter() - started
    if bar is not None:
        bar.close(f"built: {added} added, {updated} updated, {skipped} skipped in {seconds:.1f} s")
    return {"rows": seen, "added": added, "updated": updated, "skipped": skipped, "seconds": round(seconds, 3)}


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON value it stands for."""
    return value.item() if isinstance(value, np.generic) else value
