"""Named vector indexes with persistence: the library behind vectord.

    registry = VectorRegistry(open_store(config), save_min_interval=1.0)
    registry.load_all()                       # every saved index, no graph rebuild
    ix = registry.create(IndexParams("workers", 768))
    ix.add(ids, vectors, metadata)            # (added, updated); a save is scheduled
    ix.search(vector, k=10)                   # [Hit(id, distance, metadata)]
    ix.flush()                                # returns once everything so far is saved
    registry.close()                          # flush every index, stop the savers

Each :class:`NamedIndex` wraps one native :class:`~lakehouse.VectorIndex` and one native
:class:`~lakehouse.SaveCoalescer`. Every mutation bumps a version and triggers the
coalescer; the caller does not wait for the save. A save serialises the index (a consistent
snapshot taken by the core) and writes it to ``_vectors/<name>.lhv`` with one atomic
``put_bytes`` (the local store writes a temporary file, fsyncs and renames; S3 publishes an
upload whole), so a crash mid-save leaves the previous complete snapshot in place.

Saves of one index start at most every ``save_min_interval`` seconds: under a steady stream
of writes, each save carries every mutation since the previous one instead of rewriting a
large index back to back. An explicit :meth:`NamedIndex.flush` (and :meth:`close`) skips
that wait.

**Write-ahead log** (docs/vectord.md). With ``wal_dir`` set, every mutation is applied and
appended to the index's log (:mod:`lakehouse.vectors.wal`) under one lock, so the log's order is
the order of application; :meth:`NamedIndex.add` returns once the record is durable
(``add_logged`` + ``wait_logged_async`` let the daemon wait without a thread). A save takes
that lock to cut the log and serialise the index together, and once the snapshot is stored
deletes the segments before the cut. Records are blind writes per id (a set record carries
each item's final metadata), so replaying one that a snapshot already holds changes
nothing. :meth:`VectorRegistry.load_all` loads the snapshots, then replays the logs; torn
tails are dropped (never acknowledged). Nothing acknowledged is lost on a crash.

On start, :meth:`VectorRegistry.load_all` lists ``_vectors/`` and loads every ``<name>.lhv``.
An object that fails the format's checks (truncated, corrupt) is never loaded: it is moved
to ``_vectors/quarantine/<name>.<unix time>.lhv`` and logged, so the name is free again and
the bytes are kept for inspection. A storage failure while loading is raised (the daemon does
not start without its data rather than starting with part of it).

Index names match :data:`NAME_PATTERN`: 1 to 128 characters of ``A-Z a-z 0-9 _ . -``, not
starting with ``.`` or ``-`` (they become object keys and URL path segments).

All methods are thread-safe; the native calls release the GIL, so callers run them in
worker threads and many run at once.
"""

from __future__ import annotations

import logging
import re
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson

from .. import _native
from ..data.storage import ObjectNotFound, ObjectStore
from . import wal as wal_mod
from .index import DISTANCES, Hit, SaveCoalescer, VectorIndex, _encode_metadata
from .wal import WalError, WriteAheadLog

__all__ = [
    "check_batch",
    "NAME_PATTERN",
    "VECTORS_PREFIX",
    "SUFFIX",
    "MAX_K",
    "MAX_EF",
    "MAX_BATCH_RESULTS",
    "VectorsError",
    "IndexNotFound",
    "IndexExists",
    "ItemNotFound",
    "SaveFailed",
    "WalError",
    "DURABILITY_MODES",
    "IndexParams",
    "MergeResult",
    "NamedIndex",
    "VectorRegistry",
    "validate_name",
    "object_key",
    "is_empty_object",
    "decode_vector",
    "decode_vectors",
]

log = logging.getLogger("lakehouse.vectors.registry")

#: index names: they become object keys (``_vectors/<name>.lhv``) and URL path segments
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
VECTORS_PREFIX = "_vectors/"
SUFFIX = ".lhv"
QUARANTINE_PREFIX = VECTORS_PREFIX + "quarantine/"
#: largest k one search may ask for (the answer holds k results per query)
MAX_K = 10_000
#: largest ef (the core's own bound for ef_search)
MAX_EF = 100_000
#: largest queries x k of one batch search
MAX_BATCH_RESULTS = 1_000_000
MAX_DIMENSION = 65_536
#: [vectord].durability: when a mutation is answered (see the module docstring)
DURABILITY_MODES = ("fsync", "os", "none")


class VectorsError(Exception):
    """Base of this module's errors (bad input is a plain ValueError)."""


class IndexNotFound(VectorsError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no index named {name!r}")
        self.name = name


class IndexExists(VectorsError):
    def __init__(self, name: str, why: str = "already exists") -> None:
        super().__init__(f"index {name!r} {why}")
        self.name = name


class ItemNotFound(VectorsError, LookupError):
    def __init__(self, index: str, item: str) -> None:
        super().__init__(f"no item {item!r} in index {index!r}")
        self.index = index
        self.item = item


class SaveFailed(VectorsError):
    """A save (or the removal of a saved object) did not complete; the message says why."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def validate_name(name: Any) -> str:
    """Return ``name`` if it is a valid index name, else raise ValueError saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid index name {name!r}: use 1-128 characters of A-Z a-z 0-9 _ . -, "
            "not starting with '.' or '-'"
        )
    return name


def object_key(name: str) -> str:
    """Where index ``name`` is saved."""
    return f"{VECTORS_PREFIX}{name}{SUFFIX}"


def _bounded(what: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class IndexParams:
    """What a create request fixes. Defaults are the native core's (m 16, ef_construction
    200, ef_search 64); the reference's coder/hnsw used ef_search 20 and had no separate
    ef_construction."""

    name: str
    dimension: int
    distance: str = "cosine"
    m: int = 16
    ef_search: int = 64
    ef_construction: int = 200
    #: False: vectors are stored as given and come back bit for bit (VectorIndex's rotate)
    rotate: bool = True

    def validate(self) -> IndexParams:
        validate_name(self.name)
        _bounded("dimension", self.dimension, 1, MAX_DIMENSION)
        if self.distance not in DISTANCES:
            raise ValueError(
                f"distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}"
            )
        _bounded("m", self.m, 2, 256)
        _bounded("ef_search", self.ef_search, 1, MAX_EF)
        _bounded("ef_construction", self.ef_construction, 1, MAX_EF)
        if not isinstance(self.rotate, bool):
            raise ValueError(f"rotate must be true or false, got {self.rotate!r}")
        return self


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a merge did: ``merged`` copied, ``skipped`` already in dest (left in the source),
    ``failed`` refused by dest (left in the source), ``cleared`` removed from the source."""

    source: str
    dest: str
    merged: int
    skipped: int
    failed: int
    cleared: int
    errors: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dest": self.dest,
            "merged": self.merged,
            "skipped": self.skipped,
            "failed": self.failed,
            "cleared": self.cleared,
            "errors": self.errors,
        }


def is_empty_object(raw: bytes) -> bool:
    """True for the JSON text ``{}`` (any inner whitespace): the "clear metadata" value."""
    raw = raw.strip()
    return raw[:1] == b"{" and raw[-1:] == b"}" and not raw[1:-1].strip()


_vector_decoder = msgspec.json.Decoder(list[float])


def decode_vector(raw: bytes | msgspec.Raw) -> np.ndarray:
    """One JSON array of numbers as a float32 vector; ValueError (naming what is wrong) for
    anything else. The numbers are read natively (json_floats.h), with the values a general
    decoder plus a float32 cast gives; only text that is not such an array takes the general
    decoder, for its message. Overflow (1e39) becomes inf; the core rejects it."""
    row = _native.json_floats(raw)
    if row is not None:
        return row
    try:
        values = _vector_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc
    except msgspec.DecodeError as exc:  # a Raw is valid JSON; bytes may not be
        raise ValueError(f"malformed JSON: {exc}") from exc
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def decode_vectors(raws: Sequence[bytes | msgspec.Raw], dims: int, what: str = "item") -> np.ndarray:
    """Decode JSON arrays of numbers into a ``(len(raws), dims)`` float32 array.

    One row at a time, so a thread decoding a large batch gives the GIL back between rows
    (the event loop keeps serving). ValueError names the first bad row: ``item 3: ...``.
    """
    out = np.empty((len(raws), dims), dtype=np.float32)
    for i, raw in enumerate(raws):
        try:
            row = decode_vector(raw)
        except ValueError as exc:
            raise ValueError(f"{what} {i}: vector: {exc}") from exc
        if len(row) != dims:
            raise ValueError(f"{what} {i}: vector has {len(row)} dimensions, expected {dims}")
        out[i] = row
    return out


# -- the write-ahead log's records ---------------------------------------------------------
#
# Records describe effects, not requests: a set record carries each item's final metadata
# (the "keep" of a metadata-less upsert is resolved before logging), so every record is a
# blind write per id (set or delete). Replaying a record whose effect a snapshot already holds
# therefore changes nothing, and a snapshot need not say exactly which record it stops at:
# replaying the whole log from a segment boundary at or before the snapshot's cut gives the
# state the live index had. Layout (little endian; u32 arrays are raw numpy arrays):
#
#   H <json params>                                       header, first record of a segment
#   S u32 n, u32 dims, u32[n] id lengths, ids (UTF-8),    set (upsert) n items
#     float32[n * dims] vectors, u32[n] metadata lengths, metadata (the core's tagged bytes;
#     length 0 = no metadata)
#   D u32 n, u32[n] id lengths, ids                       delete
#   X                                                     drop the index
#   U                                                     undo the drop before it (it failed)

_U32 = struct.Struct("<I")
_SET_HEAD = struct.Struct("<cII")
_DROP = b"X"
_UNDROP = b"U"


def _ids_parts(ids: Sequence[str]) -> tuple[bytes, bytes]:
    encoded = [i.encode("utf-8", "surrogatepass") for i in ids]
    lengths = np.fromiter((len(b) for b in encoded), dtype="<u4", count=len(encoded))
    return lengths.tobytes(), b"".join(encoded)


def _take_ids(payload: memoryview, pos: int, n: int) -> tuple[list[str], int]:
    lengths = np.frombuffer(payload, dtype="<u4", count=n, offset=pos)
    pos += 4 * n
    out = []
    for length in lengths.tolist():
        out.append(bytes(payload[pos : pos + length]).decode("utf-8", "surrogatepass"))
        pos += length
    return out, pos


def rotate_field(rotate: bool) -> dict[str, bool]:
    """``rotate`` as an index's answer shows it: only when false, so that the default answer
    keeps the reference's shape."""
    return {} if rotate else {"rotate": False}


def encode_header(params: IndexParams, fresh: bool) -> bytes:
    """A segment's header: the index's parameters, and whether the log starts at creation
    (``fresh``: replaying it from an empty index rebuilds the index without a snapshot)."""
    return b"H" + orjson.dumps(
        {
            "name": params.name,
            "dimension": params.dimension,
            "distance": params.distance,
            "m": params.m,
            "ef_search": params.ef_search,
            "ef_construction": params.ef_construction,
            "rotate": params.rotate,
            "fresh": fresh,
        }
    )


def encode_set(ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[bytes]) -> list[Any]:
    """The parts of a set record (``vectors`` is referenced, not copied)."""
    id_lens, id_blob = _ids_parts(ids)
    meta_lens = np.fromiter((len(m) for m in metadata), dtype="<u4", count=len(metadata))
    n, dims = vectors.shape
    return [
        _SET_HEAD.pack(b"S", n, dims),
        id_lens,
        id_blob,
        vectors,
        meta_lens.tobytes(),
        b"".join(metadata),
    ]


def encode_delete(ids: Sequence[str]) -> list[bytes]:
    id_lens, id_blob = _ids_parts(ids)
    return [b"D" + _U32.pack(len(ids)), id_lens, id_blob]


def decode_record(payload: bytes) -> tuple[Any, ...]:
    """``("H", params dict)``, ``("S", ids, vectors, metadata)``, ``("D", ids)``, ``("X",)``
    or ``("U",)``; ValueError for anything else (a record whose checksum matched but which
    this version cannot read)."""
    kind = payload[:1]
    view = memoryview(payload)
    try:
        if kind == b"H":
            params = orjson.loads(payload[1:])
            if not isinstance(params, dict):
                raise ValueError("header is not an object")
            return ("H", params)
        if kind == b"S":
            _, n, dims = _SET_HEAD.unpack_from(payload, 0)
            ids, pos = _take_ids(view, _SET_HEAD.size, n)
            vectors = np.frombuffer(payload, dtype="<f4", count=n * dims, offset=pos).reshape(n, dims)
            pos += 4 * n * dims
            lengths = np.frombuffer(payload, dtype="<u4", count=n, offset=pos)
            pos += 4 * n
            metadata = []
            for length in lengths.tolist():
                metadata.append(bytes(view[pos : pos + length]))
                pos += length
            if pos != len(payload):
                raise ValueError("set record has trailing bytes")
            return ("S", ids, vectors, metadata)
        if kind == b"D":
            (n,) = _U32.unpack_from(payload, 1)
            ids, pos = _take_ids(view, 1 + _U32.size, n)
            if pos != len(payload):
                raise ValueError("delete record has trailing bytes")
            return ("D", ids)
        if payload in (_DROP, _UNDROP):
            return (payload.decode(),)
    except (struct.error, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"unreadable log record: {exc}") from exc
    raise ValueError(f"unknown log record kind {bytes(kind)!r}")


def _params_from_header(header: dict[str, Any]) -> IndexParams:
    return IndexParams(
        str(header["name"]),
        int(header["dimension"]),
        str(header["distance"]),
        int(header["m"]),
        int(header["ef_search"]),
        int(header["ef_construction"]),
        header.get("rotate", True),  # logs written before the rotation: the default
    ).validate()


def _new_index(params: IndexParams) -> VectorIndex:
    return VectorIndex(
        params.dimension,
        params.distance,
        m=params.m,
        ef_construction=params.ef_construction,
        ef_search=params.ef_search,
        rotate=params.rotate,
    )


def apply_record(index: VectorIndex, record: tuple[Any, ...]) -> None:
    """Apply one set or delete record to ``index`` (replay; blind writes, so idempotent)."""
    if record[0] == "S":
        _, ids, vectors, metadata = record
        if ids:
            # The core's tagged bytes go in as they were logged (b"" clears).
            index._ix.add(ids, np.ascontiguousarray(vectors, dtype=np.float32), metadata)
    elif record[0] == "D" and record[1]:
        index.delete(record[1])


def _header_of(name: str, index: VectorIndex) -> bytes:
    """The log header of a loaded index (its log does not start at creation)."""
    st = index.stats()
    params = IndexParams(name, st["dims"], st["distance"], st["m"], st["ef_search"], st["ef_construction"],
                         index.rotate)
    return encode_header(params, fresh=False)


def _raw_metadata(index: VectorIndex, item: str) -> bytes:
    meta = index._ix.get(item)[1]
    return meta or b""


def check_batch(queries: np.ndarray, dims: int, count: int, k: int, ef: int | None) -> int:
    """The k a batch search of ``count`` items asks the core for, or ValueError: the shape,
    k and ef in range, and at most MAX_BATCH_RESULTS rows in the answer (a (queries x k)
    padded table, where k past the live count only pads it)."""
    if queries.ndim != 2 or queries.shape[1] != dims:
        raise ValueError(f"vectors must have {dims} dimensions each, got shape {queries.shape}")
    NamedIndex._check_query(k, ef)
    k_eff = max(1, min(k, count))
    if len(queries) * k_eff > MAX_BATCH_RESULTS:
        raise ValueError(
            f"batch too large: {len(queries)} queries x k {k_eff} is more than "
            f"{MAX_BATCH_RESULTS:,} results"
        )
    return k_eff


class NamedIndex:
    """One named index, its saver and its persistence counters. See the module docstring."""

    def __init__(
        self,
        name: str,
        index: VectorIndex,
        store: ObjectStore | None,
        *,
        save_min_interval: float = 0.0,
        max_object_bytes: int | None = None,
        saved: bool = False,
        wal: WriteAheadLog | None = None,
        stale_segments: bool = False,
    ) -> None:
        self.name = name
        self.index = index
        self.key = object_key(name)
        self._store = store
        self._min_interval = save_min_interval
        self._max_bytes = max_object_bytes
        self._lock = threading.Lock()
        #: held while a mutation is applied and logged, and while a save takes its snapshot
        #: and cuts the log: the log's order is the order of application, and a snapshot
        #: holds exactly the records before its cut
        self._mutate = threading.Lock()
        self.wal = wal
        # The log position of the last cut, and whether segments from before this process
        # (replayed at load) still wait for a snapshot to cover them.
        self._cut_lsn = 0
        self._stale_segments = stale_segments
        # Mutations bump _version; a finished save records the version it started from.
        self._version = 0
        self._saved_version = 0 if saved else -1
        self._urgent = 0
        self._dropped = False
        self._last_start = float("-inf")  # the first save need not wait
        if stale_segments:
            # The snapshot that covers a replayed log waits its turn like any other save.
            self._last_start = time.monotonic()
        self.last_save: dict[str, Any] | None = None
        #: the live count after the last mutation: read on hot paths instead of len(), which
        #: waits (holding the GIL) while a large add edits the index's id table
        self.count = len(index)
        self._coalescer = SaveCoalescer(self._save) if store is not None else None

    # -- mutations (each schedules a save) ------------------------------------------------

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Any] | None = None
    ) -> tuple[int, int]:
        """Upsert a batch (all or nothing; ValueError names the failing item); returns once
        the batch is in the log (WalError if writing the log failed)."""
        result, lsn = self.add_logged(ids, vectors, metadata)
        self.wait_logged(lsn)
        return result

    def add_logged(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Any] | None = None
    ) -> tuple[tuple[int, int], int]:
        """:meth:`add` without waiting for the log: ``((added, updated), lsn)``; pass the lsn
        to :meth:`wait_logged` or :meth:`wait_logged_async` before acknowledging."""
        lsn = 0
        with self._mutate:
            result = self.index.add(ids, vectors, metadata)
            if self.wal is not None:
                lsn = self._log_set(ids, vectors, metadata)
        self.changed()
        return result, lsn

    def _log_set(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None) -> int:
        """Append the set record of an add that just succeeded (``_mutate`` is held)."""
        ids = list(ids)
        arr = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.index.dims)
        meta: list[bytes] = []
        for i, item in enumerate(ids):
            m = None if metadata is None else metadata[i]
            # None kept what the item had: log what it has now, so the record is a blind write.
            raw = _raw_metadata(self.index, item) if m is None else _encode_metadata(i, m)
            meta.append(raw or b"")
        assert self.wal is not None
        return self.wal.append(encode_set(ids, arr, meta))

    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id (unknown ids are ignored); how many were deleted. Returns once
        the delete is in the log."""
        n, lsn = self.delete_logged(ids)
        self.wait_logged(lsn)
        return n

    def delete_logged(self, ids: Sequence[str]) -> tuple[int, int]:
        """:meth:`delete` without waiting for the log: ``(deleted, lsn)``."""
        lsn = 0
        with self._mutate:
            n = self.index.delete(ids)
            if n and self.wal is not None:
                lsn = self.wal.append(encode_delete(list(ids)))
        if n:
            self.changed()
        return n, lsn

    def wait_logged(self, lsn: int, timeout: float | None = None) -> None:
        """Block until log record ``lsn`` (0: none) is durable; WalError if it failed."""
        if lsn and self.wal is not None:
            self.wal.wait(lsn, timeout)

    async def wait_logged_async(self, lsn: int) -> None:
        """:meth:`wait_logged` on an event loop (no thread waits)."""
        if lsn and self.wal is not None:
            await self.wal.wait_async(lsn)

    def changed(self) -> None:
        """Record a mutation and schedule a save (the caller does not wait for it)."""
        with self._lock:
            self._version += 1
        self.count = len(self.index)
        if self._coalescer is not None:
            self._coalescer.trigger()

    # -- queries ----------------------------------------------------------------------------

    @staticmethod
    def _check_query(k: int, ef: int | None) -> None:
        _bounded("k", k, 1, MAX_K)
        if ef is not None:
            _bounded("ef", ef, 1, MAX_EF)

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` nearest live items, nearest first (metadata as stored: bytes or dict)."""
        if vector.shape != (self.index.dims,):
            raise ValueError(
                f"vector has {vector.shape[0] if vector.ndim == 1 else vector.shape} "
                f"dimensions, index {self.name!r} has {self.index.dims}"
            )
        self._check_query(k, ef)
        return self.index.search(vector, k, ef, exclude_ids)

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """One result list per query row (on the index's worker threads)."""
        k_eff = check_batch(queries, self.index.dims, self.count, k, ef)
        if not len(queries):
            return []
        return self.index.search_batch_hits(queries, k_eff, ef, exclude_ids)

    def get(self, item: str) -> tuple[np.ndarray, Any]:
        """``(vector, metadata)``; ItemNotFound when absent (cosine vectors are normalised)."""
        try:
            return self.index.get(item)
        except KeyError:
            raise ItemNotFound(self.name, item) from None

    def __len__(self) -> int:
        return len(self.index)

    # -- info -------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        s = self.index.stats()
        return {
            "name": self.name,
            "dimension": s["dims"],
            "distance": s["distance"],
            "m": s["m"],
            "ef_search": s["ef_search"],
            "ef_construction": s["ef_construction"],
            "count": s["count"],
            **rotate_field(self.index.rotate),
        }

    def info(self) -> dict[str, Any]:
        """Params, count, the core's stats and the persistence counters."""
        out = self.params()
        out["stats"] = self.index.stats()
        out["persistence"] = self.persistence()
        return out

    def persistence(self) -> dict[str, Any]:
        with self._lock:
            dirty = self._version != self._saved_version
        out: dict[str, Any] = {"key": self.key if self._store is not None else None}
        out["dirty"] = dirty
        if self._coalescer is not None:
            out.update(self._coalescer.stats())
        out["last_save"] = self.last_save
        out["wal"] = self.wal.stats() if self.wal is not None else None
        return out

    # -- saving -----------------------------------------------------------------------------

    def _save(self) -> None:
        """The coalescer's save function (runs on its thread; the GIL is free while the core
        serialises and while the store writes)."""
        if self._dropped or self._store is None:
            return
        # Space saves out, unless someone is waiting for this one (flush, close).
        wait_until = self._last_start + self._min_interval
        while not self._urgent and not self._dropped and time.monotonic() < wait_until:
            time.sleep(min(0.02, max(0.0, wait_until - time.monotonic())))
        if self._dropped:
            return
        start = time.monotonic()
        self._last_start = start
        cut = 0
        try:
            with self._mutate:
                # No mutation runs now: the snapshot holds exactly the records before the cut.
                # (The core takes its own exclusive snapshot lock here anyway.)
                with self._lock:
                    version = self._version
                wal = self.wal
                if wal is not None and (wal.last_lsn != self._cut_lsn or self._stale_segments):
                    cut = wal.rotate()
                    self._cut_lsn = wal.last_lsn
                data = self.index.to_bytes()
            self._store.put_bytes(self.key, data, max_bytes=self._max_bytes)
        except Exception as exc:
            log.error("saving index %r to %s failed: %s", self.name, self.key, exc)
            raise
        if cut and wal is not None:
            # The snapshot is durable: the segments before the cut are no longer needed.
            wal.checkpoint(cut)
            self._stale_segments = False
        with self._lock:
            self._saved_version = max(self._saved_version, version)
        self.last_save = {
            "at": time.time(),
            "seconds": round(time.monotonic() - start, 6),
            "bytes": len(data),
            "version": version,
        }

    def flush(self, timeout: float | None = None) -> None:
        """Return once every mutation so far is saved; SaveFailed if the save failed or did
        not finish within ``timeout`` seconds."""
        if self._coalescer is None:
            return
        with self._lock:
            dirty = self._version != self._saved_version
            self._urgent += 1
        try:
            if dirty:
                # Also covers a previous failed save that nothing has retried since.
                self._coalescer.trigger()
            self._coalescer.flush(timeout)
        except RuntimeError as exc:
            timed_out = "timed out" in str(exc)
            msg = (
                f"saving index {self.name!r} did not finish within {timeout}s"
                if timed_out
                else f"saving index {self.name!r} failed: {exc}"
            )
            raise SaveFailed(msg, timed_out=timed_out) from exc
        finally:
            with self._lock:
                self._urgent -= 1

    def close(self, *, save: bool = True) -> None:
        """Stop the saver: with ``save``, flush first (errors are logged); without, drop
        anything pending (the index is being deleted)."""
        if self._coalescer is None:
            return
        if not save:
            self._dropped = True
        else:
            try:
                self.flush()
            except SaveFailed as exc:
                log.error("%s", exc)
            self._urgent += 1  # close() flushes again; it must not wait out the interval
        self._coalescer.close()
        if save and self.wal is not None:
            self.wal.close()

    def reopen(self) -> None:
        """Give a closed index a new saver (undoing :meth:`close` after a failed delete)."""
        self._dropped = False
        self._urgent = 0
        if self._store is not None:
            self._coalescer = SaveCoalescer(self._save)
            self._saved_version = -1
            self.changed()


class VectorRegistry:
    """Named indexes, persisted through ``store`` (None: in memory only).

    ``save_min_interval``: seconds between the starts of two saves of one index.
    ``max_object_bytes``: largest saved object (storaged's ``_vectors/`` cap).
    ``wal_dir``: where the write-ahead logs live (on the local disk whatever the store);
    None, or ``durability="none"``, keeps no log (a crash loses what no snapshot holds).
    ``durability``: "fsync" (a mutation returns once its log record is fsynced), "os" (once
    it is written to the operating system), "none".
    """

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        save_min_interval: float = 1.0,
        max_object_bytes: int | None = None,
        wal_dir: str | Path | None = None,
        durability: str = "fsync",
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got {durability!r}")
        self.store = store
        self.save_min_interval = save_min_interval
        self.max_object_bytes = max_object_bytes
        self.durability = durability
        self.wal_dir = (
            Path(wal_dir) if wal_dir is not None and store is not None and durability != "none" else None
        )
        self._lock = threading.Lock()
        self._indexes: dict[str, NamedIndex] = {}
        self._dropping: set[str] = set()
        #: names whose create is under way (its log being made): a concurrent create of the
        #: same name waits for it, then sees the index (a client's exist_ok must find it)
        self._creating: dict[str, threading.Event] = {}
        self.quarantined: list[str] = []
        #: what the last load_all replayed: {name: records applied}, torn tails dropped
        self.replayed: dict[str, int] = {}
        self.torn_tails: list[str] = []

    def _wrap(
        self,
        name: str,
        index: VectorIndex,
        saved: bool,
        wal: WriteAheadLog | None = None,
        stale_segments: bool = False,
    ) -> NamedIndex:
        return NamedIndex(
            name,
            index,
            self.store,
            save_min_interval=self.save_min_interval,
            max_object_bytes=self.max_object_bytes,
            saved=saved,
            wal=wal,
            stale_segments=stale_segments,
        )

    def _open_wal(
        self, name: str, header: bytes, *, next_seq: int, created: IndexParams | None = None
    ) -> WriteAheadLog | None:
        """The log of index ``name``. ``created``: a new index, whose first segment (marked
        fresh: it starts at creation) is durable on return; otherwise the first segment
        opens with the first write."""
        if self.wal_dir is None:
            return None
        sync = self.durability == "fsync"
        if created is not None:
            return WriteAheadLog.create(
                self.wal_dir, name, encode_header(created, fresh=True), sync=sync,
                next_seq=next_seq, later_header=header,
            )
        return WriteAheadLog.open(self.wal_dir, name, header, sync=sync, next_seq=next_seq)

    # -- loading ----------------------------------------------------------------------------

    def load_all(self) -> list[str]:
        """Load every saved index, then replay the write-ahead logs over the snapshots (see
        the module docstring); the names loaded."""
        if self.store is None:
            return []
        snapshots: dict[str, VectorIndex] = {}
        for info in list(self.store.iter_list(VECTORS_PREFIX)):
            rest = info.key[len(VECTORS_PREFIX) :]
            if "/" in rest or not rest.endswith(SUFFIX):
                if rest.endswith(".lhv1") and "/" not in rest:
                    log.warning("%s: the reference's LHV1 format is not loaded", info.key)
                continue
            name = rest[: -len(SUFFIX)]
            try:
                validate_name(name)
            except ValueError:
                log.warning("%s: not a valid index name, skipped", info.key)
                continue
            try:
                data = self.store.get_bytes(info.key)
            except ObjectNotFound:
                continue  # deleted while we listed
            try:
                snapshots[name] = VectorIndex.from_bytes(data)
            except ValueError as exc:
                self._quarantine(info.key, name, data, exc)
                continue
            log.info("loaded index %r: %d items, %d bytes", name, len(snapshots[name]), len(data))
        logs = wal_mod.list_segments(self.wal_dir) if self.wal_dir is not None else {}
        loaded = []
        for name in sorted(set(snapshots) | set(logs)):
            segments = logs.get(name, [])
            index = snapshots.get(name)
            if segments:
                try:
                    validate_name(name)
                except ValueError:
                    log.warning("write-ahead log %r: not a valid index name, skipped", name)
                    continue
                index, dropped = self._replay(name, index, segments)
                if dropped:
                    self._finish_drop(name)
                    continue
                if index is None:
                    continue
            assert index is not None
            header = _header_of(name, index)  # not fresh: later segments need the snapshot
            wal = self._open_wal(name, header, next_seq=segments[-1].seq + 1 if segments else 1)
            entry = self._wrap(
                name, index, saved=name in snapshots, wal=wal, stale_segments=bool(segments)
            )
            with self._lock:
                self._indexes[name] = entry
            if self.replayed.get(name) or (segments and name not in snapshots):
                entry.changed()  # a snapshot that covers the replayed log
            loaded.append(name)
        return loaded

    def _replay(
        self, name: str, index: VectorIndex | None, segments: list[wal_mod.Segment]
    ) -> tuple[VectorIndex | None, bool]:
        """Apply ``name``'s log segments over its snapshot: ``(index, dropped)``.
        A torn or corrupt frame ends its segment (it was never acknowledged). A log that
        cannot rebuild the index (no snapshot, and the log does not start at creation) is
        moved to the quarantine folder beside it."""
        assert self.wal_dir is not None
        applied = 0
        dropped = False
        for seg in segments:
            read = wal_mod.read_segment(seg.path)
            if read.torn:
                self.torn_tails.append(f"{seg.path.name}: {read.torn}")
                log.warning("write-ahead log %s: %s; the rest of the segment is dropped (never acknowledged)",
                            seg.path, read.torn)
            if not read.records:
                continue
            try:
                first = decode_record(read.records[0])
                if first[0] != "H":
                    raise ValueError("the segment does not start with a header")
                params = _params_from_header(first[1])
                if params.name != name:
                    raise ValueError(f"the header names index {params.name!r}")
                if index is None:
                    if not first[1].get("fresh"):
                        raise ValueError("no snapshot, and the log does not start at the index's creation")
                    index = _new_index(params)
                elif index.dims != params.dimension:
                    raise ValueError(f"the header says {params.dimension} dimensions, the snapshot {index.dims}")
                for raw in read.records[1:]:
                    rec = decode_record(raw)
                    if rec[0] == "X":
                        dropped = True
                    elif rec[0] == "U":
                        dropped = False
                    elif rec[0] == "H":
                        raise ValueError("a header in the middle of a segment")
                    else:
                        apply_record(index, rec)
                        applied += 1
            except (ValueError, KeyError, TypeError) as exc:
                self._quarantine_log(name, segments, exc)
                return None, False
        self.replayed[name] = applied
        if applied:
            log.info("index %r: replayed %d log records", name, applied)
        return index, dropped

    def _quarantine_log(self, name: str, segments: list[wal_mod.Segment], exc: Exception) -> None:
        assert self.wal_dir is not None
        folder = self.wal_dir / "quarantine"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = int(time.time())
        for seg in segments:
            dest = folder / f"{stamp}.{seg.path.name}"
            seg.path.rename(dest)
            self.quarantined.append(str(dest))
        log.error("index %r: its write-ahead log cannot be replayed (%s); moved to %s, not loaded",
                  name, exc, folder)

    def _finish_drop(self, name: str) -> None:
        """A drop was logged but not finished before a crash: finish it."""
        assert self.store is not None and self.wal_dir is not None
        self.store.delete(object_key(name))
        wal_mod.delete_segments(self.wal_dir, name)
        log.info("index %r: finished a drop interrupted by a crash", name)

    def _quarantine(self, key: str, name: str, data: bytes, exc: Exception) -> None:
        assert self.store is not None
        dest = f"{QUARANTINE_PREFIX}{name}.{int(time.time())}{SUFFIX}"
        self.store.put_bytes(dest, data)
        self.store.delete(key)
        self.quarantined.append(dest)
        log.error("index %r: %s is unreadable (%s); moved to %s, not loaded", name, key, exc, dest)

    # -- the set of indexes -----------------------------------------------------------------

    def create(self, params: IndexParams) -> NamedIndex:
        """A new, empty index (ValueError for bad params, IndexExists for a taken name).
        With a log, the index's first log segment (its parameters) is durable when this
        returns; its first save is scheduled at once as well. Blocking (an fsync)."""
        params.validate()
        index = _new_index(params)
        while True:
            with self._lock:
                if params.name in self._indexes:
                    raise IndexExists(params.name)
                if params.name in self._dropping:
                    raise IndexExists(params.name, "is being deleted; retry")
                pending = self._creating.get(params.name)
                if pending is None:
                    # Reserve the name while the log is created.
                    self._creating[params.name] = threading.Event()
                    break
            pending.wait()
        try:
            wal = None
            if self.wal_dir is not None:
                # Leftovers of a dropped index of that name must not replay after this one.
                wal_mod.delete_segments(self.wal_dir, params.name)
                wal = self._open_wal(
                    params.name, encode_header(params, fresh=False), next_seq=1, created=params
                )
            entry = self._wrap(params.name, index, saved=False, wal=wal)
            with self._lock:
                self._indexes[params.name] = entry
        finally:
            with self._lock:
                self._creating.pop(params.name).set()
        entry.changed()
        return entry

    def get(self, name: str) -> NamedIndex:
        try:
            return self._indexes[name]
        except KeyError:
            raise IndexNotFound(name) from None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._indexes)

    def indexes(self) -> list[NamedIndex]:
        with self._lock:
            return [self._indexes[n] for n in sorted(self._indexes)]

    def __contains__(self, name: object) -> bool:
        return name in self._indexes

    def __len__(self) -> int:
        return len(self._indexes)

    def drop(self, name: str) -> None:
        """Remove an index, its saved object and its log (blocking: waits for a save in
        flight).

        The drop is logged first, so a crash part-way is finished at the next start. If the
        object cannot be removed, the drop is undone in the log, the index is put back and
        SaveFailed is raised: a failed delete changes nothing.
        """
        with self._lock:
            entry = self._indexes.pop(name, None)
            if entry is None:
                raise IndexNotFound(name)
            self._dropping.add(name)
        try:
            entry.close(save=False)
            wal = entry.wal
            if wal is not None:
                try:
                    wal.wait(wal.append([_DROP]))
                except WalError as exc:
                    entry.reopen()
                    with self._lock:
                        self._indexes[name] = entry
                    raise SaveFailed(f"logging the delete of {name!r} failed: {exc}") from exc
            if self.store is not None:
                try:
                    self.store.delete(entry.key)
                except Exception as exc:
                    if wal is not None:
                        # Best effort: if this fails too, a restart finishes the drop.
                        try:
                            wal.wait(wal.append([_UNDROP]))
                        except WalError:
                            log.exception("index %r: undoing the logged drop failed", name)
                    entry.reopen()
                    with self._lock:
                        self._indexes[name] = entry
                    raise SaveFailed(f"removing {entry.key} failed: {exc}") from exc
            if wal is not None:
                try:
                    wal.destroy()
                except OSError as exc:
                    # The logged drop stays: the next start finishes it.
                    log.error("index %r: removing its log failed: %s", name, exc)
        finally:
            with self._lock:
                self._dropping.discard(name)

    # -- merge ------------------------------------------------------------------------------

    def merge(
        self, source: str, dest: str, clear_source: bool = False, chunk: int = 4096
    ) -> MergeResult:
        """Copy every item of ``source`` that ``dest`` lacks into ``dest`` (idempotent).

        Items already in dest are skipped (and stay in the source). With ``clear_source``,
        exactly the items whose copy into dest succeeded are deleted from the source. An item
        dest refuses (a zero vector into a cosine index) is counted in ``failed`` and kept.
        ValueError for a self-merge or a dimension mismatch; IndexNotFound for either name.
        """
        if source == dest:
            raise ValueError(f"cannot merge index {source!r} into itself")
        src = self.get(source)
        dst = self.get(dest)
        if src.index.dims != dst.index.dims:
            raise ValueError(
                f"dimension mismatch: {source!r} has {src.index.dims}, {dest!r} has "
                f"{dst.index.dims}"
            )
        merged = skipped = failed = cleared = 0
        errors: list[str] = []
        # Each chunk is logged as it goes; the merge returns once every record is durable.
        pending: list[tuple[NamedIndex, int]] = []
        ids = src.index.ids()
        for start in range(0, len(ids), chunk):
            batch_ids: list[str] = []
            vectors: list[np.ndarray] = []
            metadata: list[Any] = []
            for item in ids[start : start + chunk]:
                if item in dst.index:
                    skipped += 1
                    continue
                try:
                    vec, meta = src.index.get(item)
                except KeyError:
                    continue  # deleted from the source meanwhile
                batch_ids.append(item)
                vectors.append(vec)
                # None would mean "keep dest's metadata"; dest has no such item, so {} is
                # the faithful copy of "no metadata".
                metadata.append({} if meta is None else meta)
            if not batch_ids:
                continue
            done, bad = self._merge_batch(dst, batch_ids, np.stack(vectors), metadata, pending)
            merged += len(done)
            failed += len(bad)
            errors.extend(bad[: max(0, 10 - len(errors))])  # a sample, not thousands
            if clear_source and done:
                n, lsn = src.delete_logged(done)
                cleared += n
                pending.append((src, lsn))
        for entry, lsn in pending:
            entry.wait_logged(lsn)
        return MergeResult(source, dest, merged, skipped, failed, cleared, errors)

    @staticmethod
    def _merge_batch(
        dst: NamedIndex,
        ids: list[str],
        vectors: np.ndarray,
        metadata: list[Any],
        pending: list[tuple[NamedIndex, int]],
    ) -> tuple[list[str], list[str]]:
        try:
            pending.append((dst, dst.add_logged(ids, vectors, metadata)[1]))
            return ids, []
        except ValueError:
            pass
        # Something in the batch is refused: add one by one to find out what.
        done, bad = [], []
        for i, item in enumerate(ids):
            try:
                pending.append((dst, dst.add_logged([item], vectors[i : i + 1], [metadata[i]])[1]))
                done.append(item)
            except ValueError as exc:
                bad.append(f"{item}: {str(exc).removeprefix('item 0: ')}")
        return done, bad

    # -- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and stop every index's saver (errors are logged, never raised)."""
        for entry in self.indexes():
            try:
                entry.close(save=True)
            except Exception:
                log.exception("closing index %r", entry.name)
