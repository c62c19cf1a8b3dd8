"""Exact (brute-force) vector search in numpy: the twin of ``lakehouse.VectorIndex`` at or
below its ``brute_force_threshold``, where the native index promises an exact answer.

The three distances, from SPEC section 3 and contract section 7.2, computed in float64 from
the float32 values the caller gave:

* ``cosine``: ``1 - cos(a, b)``; both vectors are normalised, a zero vector is refused;
* ``euclidean``: ``|a - b|``, the L2 norm of the difference;
* ``dot``: ``1 - a.b``.

Results are sorted by distance ascending, ties in the order the ids were first inserted (the
native index breaks ties by storage slot, which is the same order until a delete frees a
slot; the parity probe compares tied rows as a set, so that difference never matters).

Item semantics follow the facade: an add validates the whole batch before changing anything
(wrong shape, NaN or inf, a zero vector under cosine, an empty or non-string id:
``ValueError``); a duplicate id inside one batch: the last occurrence wins, metadata
included; metadata ``None`` keeps an existing item's metadata and ``{}`` clears it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DISTANCES", "BruteForceIndex", "distance"]

DISTANCES = ("cosine", "euclidean", "dot")


def _finite_float32(values: Any, shape_ok: Any, what: str) -> np.ndarray:
    # Values pass through float32 first, as they do on the way into the native core: a value
    # beyond float32's range becomes inf there and is refused here for the same reason.
    with np.errstate(over="ignore"):
        try:
            arr = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be numeric: {exc}") from exc
    if not shape_ok(arr):
        raise ValueError(f"{what} has the wrong shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or inf")
    return arr.astype(np.float64)


def distance(metric: str, a: np.ndarray, b: np.ndarray) -> float:
    """The distance between two float64 vectors under ``metric`` (cosine ones unnormalised)."""
    if metric == "cosine":
        return float(1.0 - np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))
    if metric == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if metric == "dot":
        return float(1.0 - np.dot(a, b))
    raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {metric!r}")


@dataclass
class _Item:
    seq: int
    vector: np.ndarray
    metadata: Any


class BruteForceIndex:
    """A dict of ``id -> (vector, metadata)`` searched by scanning every item."""

    def __init__(self, dims: int, distance: str = "cosine") -> None:
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise ValueError(f"dims must be a positive integer, got {dims!r}")
        self.dims = dims
        self.distance = distance
        self._items: dict[str, _Item] = {}
        self._seq = 0

    def _vector_ok(self, v: np.ndarray, what: str) -> None:
        if self.distance == "cosine" and not np.any(v):
            raise ValueError(f"{what}: zero vector (cosine distance needs a non-zero norm)")

    def add(
        self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None = None
    ) -> tuple[int, int]:
        """Insert or replace items; ``(added, updated)``. All or nothing."""
        if isinstance(ids, str | bytes):
            raise ValueError("ids must be a sequence of strings")
        ids = list(ids)
        for i, v in enumerate(ids):
            if not isinstance(v, str) or not v:
                raise ValueError(f"item {i}: id must be a non-empty string")
        arr = _finite_float32(
            vectors, lambda a: a.ndim == 2 and a.shape == (len(ids), self.dims), "vectors"
        )
        meta = [None] * len(ids) if metadata is None else list(metadata)
        if len(meta) != len(ids):
            raise ValueError(f"got {len(meta)} metadata entries for {len(ids)} items")
        for i, m in enumerate(meta):
            if m is not None and not isinstance(m, dict | bytes):
                raise ValueError(f"item {i}: metadata must be a dict, bytes or None")
            self._vector_ok(arr[i], f"item {i}")
        last = {id_: i for i, id_ in enumerate(ids)}  # the last occurrence wins
        added = updated = 0
        for id_, i in sorted(last.items(), key=lambda kv: kv[1]):
            old = self._items.get(id_)
            if old is None:
                added += 1
                self._items[id_] = _Item(self._seq, arr[i], meta[i] or None)
                self._seq += 1
                continue
            updated += 1
            old.vector = arr[i]
            if meta[i] is not None:
                old.metadata = meta[i] or None  # {} clears
        return added, updated

    def delete(self, ids: Sequence[str]) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        return sum(self._items.pop(i, None) is not None for i in set(ids))

    def ids(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def search(
        self, vector: Any, k: int = 10, exclude_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, Any]]:
        """``[(id, distance, metadata)]``: the ``k`` nearest live, non-excluded items."""
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be positive, got {k!r}")
        q = _finite_float32(vector, lambda a: a.shape == (self.dims,), "vector")
        self._vector_ok(q, "query")
        excluded = set(exclude_ids or ())
        scored = [
            (distance(self.distance, q, item.vector), item.seq, id_, item.metadata)
            for id_, item in self._items.items()
            if id_ not in excluded
        ]
        scored.sort(key=lambda row: (row[0], row[1]))
        return [(id_, d, meta) for d, _, id_, meta in scored[:k]]
