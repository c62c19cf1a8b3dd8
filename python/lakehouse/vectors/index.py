"""VectorIndex: an HNSW vector index whose source of truth is a side store of
(id, vector, metadata); the graph is a derived view the index can rebuild at any time.

    >>> import numpy as np
    >>> from lakehouse import VectorIndex
    >>> ix = VectorIndex(dims=4)
    >>> ix.add(["a", "b"], np.eye(2, 4, dtype=np.float32), [{"role": "picker"}, None])
    (2, 0)
    >>> ix.search(np.array([1, 0, 0, 0], np.float32), k=1)[0].id
    'a'

The work happens in C++ (``lakehouse._native``): batch calls take numpy arrays without a
Python object per item, release the GIL and use ``threads`` worker threads; any number of
threads may call any method at once. Every method validates its input fully before changing
anything: bad input raises ``ValueError`` and leaves the index as it was.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from .. import _native
from . import rotation

__all__ = ["VectorIndex", "Hit", "SaveCoalescer", "DISTANCES", "delete_ids"]

DISTANCES = ("cosine", "euclidean", "dot")

# Metadata is stored natively as opaque bytes with a one-byte tag saying how to give it
# back: a dict round-trips as JSON, bytes as themselves. An empty stored value means "none".
_TAG_JSON = b"J"
_TAG_BYTES = b"B"

Metadata = dict[str, Any] | bytes | bytearray | memoryview | None


class Hit(NamedTuple):
    """One search result: the item's id, its distance to the query, its metadata."""

    id: str
    distance: float
    metadata: dict[str, Any] | bytes | None


# The core makes search answers as Hits itself (one C call per answer, no Python call per
# hit), decoding JSON-tagged metadata with orjson as _decode_metadata does.
_native.set_hit_type(Hit, orjson.loads)


def _encode_metadata(item: int, value: Metadata) -> bytes | None:
    if value is None:
        return None  # keep an existing item's metadata
    if isinstance(value, dict):
        if not value:
            return b""  # {} clears it (the reference's rule)
        try:
            return _TAG_JSON + orjson.dumps(value)
        except TypeError as exc:
            raise ValueError(f"item {item}: metadata is not JSON-serialisable: {exc}") from exc
    if isinstance(value, bytes | bytearray | memoryview):
        return _TAG_BYTES + bytes(value)
    raise ValueError(f"item {item}: metadata must be a dict, bytes or None, got {type(value).__name__}")


def _decode_metadata(raw: bytes | None) -> dict[str, Any] | bytes | None:
    if not raw:
        return None
    tag, body = raw[:1], raw[1:]
    if tag == _TAG_JSON:
        return orjson.loads(body)
    return body


def _check_ids(ids: Sequence[str], what: str = "ids") -> list[str]:
    if isinstance(ids, str | bytes):
        raise ValueError(f"{what} must be a sequence of strings, not a single {type(ids).__name__}")
    out = list(ids)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise ValueError(f"item {i}: id must be a string, got {type(v).__name__}")
        if not v:
            raise ValueError(f"item {i}: empty id")
    return out


def delete_ids(ids: Sequence[str]) -> list[str]:
    """The ids of a delete as a list, or ValueError (unknown and empty ids are allowed: they
    match nothing)."""
    if isinstance(ids, str | bytes):
        raise ValueError("ids must be a sequence of strings, not a single string")
    id_list = list(ids)
    for i, v in enumerate(id_list):
        if not isinstance(v, str):
            raise ValueError(f"item {i}: id must be a string, got {type(v).__name__}")
    return id_list


def _as_float32(a: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numeric: {exc}") from exc
    return np.ascontiguousarray(arr)


def _as_rows(a: Any, what: str) -> np.ndarray:
    """A batch for the native add: float32, float64, integer and bool arrays of any layout go
    as they are (the core converts them to float32 a bounded chunk at a time, never a whole
    extra copy); anything else numpy can convert becomes one float32 copy."""
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be numeric: {exc}") from exc
    dt = a.dtype
    if dt.isnative and (dt.kind in "biu" or (dt.kind == "f" and dt.itemsize in (4, 8))):
        return a
    return _as_float32(a, what)


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


class VectorIndex:
    """An HNSW index over ``dims``-dimensional float32 vectors, keyed by string ids.

    Parameters:
        dims: vector size (1..65536).
        distance: ``"cosine"`` (1 - cosine similarity; vectors are normalised on insert and a
            zero vector is rejected), ``"euclidean"`` (the L2 norm of a - b) or ``"dot"``
            (1 - a.b).
        m: graph links per node (2m on the bottom layer).
        ef_construction: candidate list width while inserting (quality vs build time).
        ef_search: default candidate list width while searching (raised to k when smaller).
        brute_force_threshold: at or below this many live items a search is an exact scan;
            the graph is built the first time the index grows past it.
        threads: worker threads for batch calls; 0 = all cores.
        seed: seeds the level generator (same seed and insertion order -> same levels).
        rotate: a cosine or euclidean index of 128 to 512 dimensions stores its vectors
            turned onto their principal axes once it outgrows the exact scan, which makes
            graph searches read less of each vector (docs/vectord.md, "The rotation").
            Distances and answers are unchanged up to float rounding, but ``get`` then
            returns a vector equal to the one given only to about 1e-6 relative. ``False``
            keeps vectors as given, bit for bit (saved with the index).
    """

    __slots__ = ("_ix", "_dims", "__weakref__")

    def __init__(
        self,
        dims: int,
        distance: str = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        brute_force_threshold: int = 2048,
        threads: int = 0,
        seed: int = 0,
        rotate: bool = True,
    ) -> None:
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        dims = _check_positive("dims", dims)
        m = _check_positive("m", m)
        ef_construction = _check_positive("ef_construction", ef_construction)
        ef_search = _check_positive("ef_search", ef_search)
        for name, value in (("brute_force_threshold", brute_force_threshold), ("threads", threads), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if seed >= 1 << 64:
            raise ValueError("seed must be below 2**64")
        if not isinstance(rotate, bool):
            raise ValueError(f"rotate must be True or False, got {rotate!r}")
        self._ix = _native.HnswIndex(
            dims, distance, m, ef_construction, ef_search, int(brute_force_threshold), int(threads), int(seed),
            rotate,
        )
        self._dims = dims

    @classmethod
    def _wrap(cls, native: Any) -> VectorIndex:
        obj = cls.__new__(cls)
        obj._ix = native
        obj._dims = int(native.dims)
        return obj

    # -- mutation -------------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Metadata] | None = None,
    ) -> tuple[int, int]:
        """Insert or replace items; returns ``(added, updated)``.

        ``vectors`` is an array of shape ``(len(ids), dims)`` (float32, or anything numpy
        converts). ``metadata``, if given, has one entry per item: a dict (stored as JSON),
        bytes, or None. None keeps an existing item's metadata; ``{}`` clears it. A duplicate
        id inside one batch: the last occurrence wins. The whole batch is validated first;
        on any error nothing changes.
        """
        id_list = _check_ids(ids)
        arr = _as_rows(vectors, "vectors")
        dims = self.dims
        if arr.ndim == 1 and len(id_list) == 1 and arr.shape[0] == dims:
            arr = arr.reshape(1, dims)
        if arr.ndim != 2 or arr.shape[1] != dims:
            raise ValueError(f"vectors must have shape ({len(id_list)}, {dims}), got {arr.shape}")
        if arr.shape[0] != len(id_list):
            raise ValueError(f"got {len(id_list)} ids for {arr.shape[0]} vectors")
        meta: list[bytes | None] = []
        if metadata is not None:
            if isinstance(metadata, dict | bytes):
                raise ValueError("metadata must be a sequence with one entry per item")
            meta_in = list(metadata)
            if len(meta_in) != len(id_list):
                raise ValueError(f"got {len(meta_in)} metadata entries for {len(id_list)} items")
            meta = [_encode_metadata(i, m) for i, m in enumerate(meta_in)]
        if self._ix.rotate and not self._ix.rotated:
            self._maybe_rotate(id_list, arr)
        added, updated = self._ix.add(id_list, arr, meta)
        return int(added), int(updated)

    def _maybe_rotate(self, ids: list[str], arr: np.ndarray) -> None:
        """Fits and sets the rotation before an add that takes the index past its exact scan
        (:mod:`.rotation`), from a sample of the stored items and the batch. A batch the core
        would refuse (a non-finite value, a zero vector under cosine) sets nothing: the add
        then fails and changes nothing."""
        distance = self.distance
        if not rotation.wanted(distance, self._dims, len(self._ix) + len(ids), self._ix.brute_force_threshold):
            return
        cosine = distance == "cosine"
        if not rotation.acceptable(arr, cosine):
            return
        # Evenly spaced rows: a strided view of the batch, no index array (a random choice of
        # 20,000 of 100,000 rows kept about 7 MiB of the process's memory after it was done).
        step = max(1, -(-len(arr) // rotation.SAMPLE))
        batch = arr[::step]
        stored = self._ix.ids() if len(batch) < rotation.SAMPLE else []
        wanted_stored = rotation.SAMPLE - len(batch)
        picked = stored[:: max(1, -(-len(stored) // wanted_stored))] if stored else []

        def sample() -> Iterator[np.ndarray]:
            yield from rotation.chunks(batch)
            for i in range(0, len(picked), rotation.CHUNK):
                yield np.stack([self._ix.get(j)[0] for j in picked[i : i + rotation.CHUNK]])

        self._ix.set_rotation(rotation.fit(sample(), normalise=cosine))

    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id; unknown ids are ignored. Returns how many were deleted."""
        return int(self._ix.remove(delete_ids(ids)))

    def rebuild(self) -> None:
        """Rebuild the graph from the side store (searches continue on the old graph)."""
        self._ix.rebuild()

    # -- queries --------------------------------------------------------------------------

    def _exclude(self, exclude_ids: Sequence[str] | None) -> list[str]:
        if exclude_ids is None:
            return []
        if isinstance(exclude_ids, str | bytes):
            raise ValueError("exclude_ids must be a sequence of strings, not a single string")
        out = list(exclude_ids)
        for i, v in enumerate(out):
            if not isinstance(v, str):
                raise ValueError(f"exclude_ids[{i}] must be a string, got {type(v).__name__}")
        return out

    @staticmethod
    def _ef(ef: int | None) -> int:
        return 0 if ef is None else _check_positive("ef", ef)

    def search(
        self,
        vector: Any,
        k: int = 10,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` nearest live items to ``vector``, nearest first.

        ``ef`` overrides the index's ``ef_search`` for this call. ``exclude_ids`` are skipped
        during the graph traversal, so ``k`` results come back whenever ``k`` live,
        non-excluded items exist.
        """
        k = _check_positive("k", k)
        q = _as_float32(vector, "vector")
        if q.ndim != 1 or q.shape[0] != self.dims:
            raise ValueError(f"vector must have shape ({self.dims},), got {q.shape}")
        return self._ix.search(q, k, self._ef(ef), self._exclude(exclude_ids), True)

    def search_batch(
        self,
        queries: Any,
        k: int = 10,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Search many queries at once on ``threads`` threads.

        Returns ``(ids, distances)``: ``ids[i]`` lists the ids for query ``i`` and
        ``distances`` is a float32 array of shape ``(len(queries), k)``. A row with fewer
        than ``k`` matches is padded with ``""`` and ``inf``.
        """
        ids, distances = self._ix.search_batch(*self._batch_args(queries, k, ef, exclude_ids))
        return ids, distances

    def search_batch_hits(
        self,
        queries: Any,
        k: int = 10,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search_batch` with each hit's metadata, as :meth:`search` returns them: one
        list of hits per query, nearest first, without padding. Each hit's metadata is read
        with its id, so a hit is never an item deleted or changed after it was found."""
        return self._ix.search_batch(*self._batch_args(queries, k, ef, exclude_ids), True)

    def _batch_args(
        self, queries: Any, k: int, ef: int | None, exclude_ids: Sequence[str] | None
    ) -> tuple[np.ndarray, int, int, list[str]]:
        """A batch search's arguments, checked, as the binding takes them."""
        k = _check_positive("k", k)
        q = _as_float32(queries, "queries")
        if q.ndim != 2 or q.shape[1] != self.dims:
            raise ValueError(f"queries must have shape (q, {self.dims}), got {q.shape}")
        return q, k, self._ef(ef), self._exclude(exclude_ids)

    def get(self, id: str) -> tuple[np.ndarray, dict[str, Any] | bytes | None]:  # noqa: A002
        """``(vector, metadata)`` of an item; KeyError if absent. Cosine vectors come back
        normalised (that is how they are stored)."""
        if not isinstance(id, str):
            raise KeyError(id)
        vec, meta = self._ix.get(id)
        return vec, _decode_metadata(meta)

    def ids(self) -> list[str]:
        """The ids of every live item."""
        return self._ix.ids()

    def __len__(self) -> int:
        return len(self._ix)

    def __contains__(self, id: object) -> bool:  # noqa: A002
        return isinstance(id, str) and id in self._ix

    def __repr__(self) -> str:
        s = self._ix.stats()
        return f"VectorIndex(dims={s['dims']}, distance={s['distance']!r}, count={s['count']})"

    # -- settings and stats ---------------------------------------------------------------

    @property
    def dims(self) -> int:
        return self._dims

    @property
    def distance(self) -> str:
        return str(self._ix.distance)

    @property
    def rotate(self) -> bool:
        """False when the index was made with ``rotate=False`` (saved with it)."""
        return bool(self._ix.rotate)

    @property
    def ef_search(self) -> int:
        return int(self._ix.ef_search)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ix.set_ef_search(_check_positive("ef_search", value))

    def set_threads(self, threads: int) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be a non-negative integer, got {threads!r}")
        self._ix.set_threads(threads)

    def stats(self) -> dict[str, Any]:
        """count, dims, distance, m, ef_construction, ef_search, brute_force_threshold,
        threads, tombstones (deleted slots awaiting reuse), slots, capacity, rebuilds,
        graph_failures, graph_built, max_level, memory_bytes, unreachable (live items a
        bottom-layer traversal from the entry point misses: always 0), rotated (the vectors
        are stored turned: see ``rotate``), isa."""
        return dict(self._ix.stats())

    # -- persistence ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The versioned, checksummed binary form (vectors, ids, metadata and the graph)."""
        return self._ix.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> VectorIndex:
        """Load from :meth:`to_bytes` output; ValueError for truncated or corrupt input."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"from_bytes needs bytes, got {type(data).__name__}")
        return cls._wrap(_native.HnswIndex.from_bytes(data))

    def save(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        """Write atomically: a temporary file beside ``path``, renamed over it.

        ``durable`` (the default) also fsyncs the file and its directory, so the saved
        content survives a power loss, not only a crash of this process.
        """
        self._ix.save(os.fspath(path), bool(durable))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex:
        """Load a file written by :meth:`save` (no graph rebuild needed)."""
        p = os.fspath(path)
        if not os.path.exists(p):
            raise FileNotFoundError(p)
        return cls._wrap(_native.HnswIndex.load(p))


#: coalescers not yet closed: closed (their pending save done) when the interpreter exits,
#: while their save functions can still run (a worker thread asking for the GIL during
#: finalization would be ended mid-save)
_open_coalescers: weakref.WeakSet[SaveCoalescer] = weakref.WeakSet()


@atexit.register
def _close_open_coalescers() -> None:
    for coalescer in list(_open_coalescers):
        with contextlib.suppress(Exception):
            coalescer.close()


class SaveCoalescer:
    """At most one save in flight; any burst of triggers collapses into one more save.

    ``save_fn`` runs on a background thread. ``trigger()`` schedules a save and returns at
    once; while a save runs, any number of triggers produce exactly one further save.
    ``flush()`` waits until a save that began after every trigger so far has finished and
    raises RuntimeError if that save failed. A failing save is counted (``stats()``) and
    does not stop later ones. ``close()`` flushes and stops the worker.
    """

    __slots__ = ("_c", "__weakref__")

    def __init__(self, save_fn: Callable[[], object]) -> None:
        if not callable(save_fn):
            raise ValueError("save_fn must be callable")
        self._c = _native.SaveCoalescer(save_fn)
        _open_coalescers.add(self)

    def trigger(self) -> None:
        self._c.trigger()

    def flush(self, timeout: float | None = None) -> None:
        self._c.flush(-1.0 if timeout is None else float(timeout))

    def close(self) -> None:
        self._c.close()
        _open_coalescers.discard(self)

    def stats(self) -> dict[str, Any]:
        return dict(self._c.stats())
