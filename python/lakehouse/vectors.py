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
that wait. What a crash can lose (the RPO): acknowledged mutations not yet covered by a
finished save, i.e. at most ``save_min_interval`` plus one save's duration.

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
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from .index import DISTANCES, Hit, SaveCoalescer, VectorIndex
from .storage import ObjectNotFound, ObjectStore

__all__ = [
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
    "IndexParams",
    "MergeResult",
    "NamedIndex",
    "VectorRegistry",
    "validate_name",
    "object_key",
    "is_empty_object",
    "decode_vectors",
]

log = logging.getLogger("lakehouse.vectors")

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


def decode_vectors(raws: Sequence[bytes | msgspec.Raw], dims: int, what: str = "item") -> np.ndarray:
    """Decode JSON arrays of numbers into a ``(len(raws), dims)`` float32 array.

    One row at a time, so a thread decoding a large batch gives the GIL back between rows
    (the event loop keeps serving). ValueError names the first bad row: ``item 3: ...``.
    """
    out = np.empty((len(raws), dims), dtype=np.float32)
    # float32 overflow (1e39) becomes inf here; the core then rejects it by item index.
    with np.errstate(over="ignore"):
        for i, raw in enumerate(raws):
            try:
                row = _vector_decoder.decode(raw)
            except msgspec.ValidationError as exc:
                raise ValueError(f"{what} {i}: vector: {exc}") from exc
            except msgspec.DecodeError as exc:  # a Raw is valid JSON; bytes may not be
                raise ValueError(f"{what} {i}: vector: malformed JSON: {exc}") from exc
            if len(row) != dims:
                raise ValueError(f"{what} {i}: vector has {len(row)} dimensions, expected {dims}")
            out[i] = row
    return out


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
    ) -> None:
        self.name = name
        self.index = index
        self.key = object_key(name)
        self._store = store
        self._min_interval = save_min_interval
        self._max_bytes = max_object_bytes
        self._lock = threading.Lock()
        # Mutations bump _version; a finished save records the version it started from.
        self._version = 0
        self._saved_version = 0 if saved else -1
        self._urgent = 0
        self._dropped = False
        self._last_start = float("-inf")  # the first save need not wait
        self.last_save: dict[str, Any] | None = None
        #: the live count after the last mutation: read on hot paths instead of len(), which
        #: waits (holding the GIL) while a large add edits the index's id table
        self.count = len(index)
        self._coalescer = SaveCoalescer(self._save) if store is not None else None

    # -- mutations (each schedules a save) ------------------------------------------------

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Any] | None = None
    ) -> tuple[int, int]:
        """Upsert a batch (all or nothing; ValueError names the failing item)."""
        result = self.index.add(ids, vectors, metadata)
        self.changed()
        return result

    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id (unknown ids are ignored); how many were deleted."""
        n = self.index.delete(ids)
        if n:
            self.changed()
        return n

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
        if queries.ndim != 2 or queries.shape[1] != self.index.dims:
            raise ValueError(
                f"vectors must have {self.index.dims} dimensions each, got shape {queries.shape}"
            )
        self._check_query(k, ef)
        if not len(queries):
            return []
        # The answer has a (queries x k) padded table: k past the live count only pads it.
        k_eff = max(1, min(k, self.count))
        if len(queries) * k_eff > MAX_BATCH_RESULTS:
            raise ValueError(
                f"batch too large: {len(queries)} queries x k {k_eff} is more than "
                f"{MAX_BATCH_RESULTS:,} results"
            )
        ids, distances = self.index.search_batch(queries, k_eff, ef, exclude_ids)
        # search_batch returns no metadata: look each distinct hit up once. An item deleted
        # since the search is dropped from its row, as if the search had run a moment later.
        meta: dict[str, Any] = {}
        out: list[list[Hit]] = []
        for row_ids, row_d in zip(ids, distances, strict=True):
            row: list[Hit] = []
            for j, item in enumerate(row_ids):
                if not item:
                    break  # padding: fewer than k live matches
                if item not in meta:
                    try:
                        meta[item] = self.index.get(item)[1]
                    except KeyError:
                        meta[item] = KeyError
                m = meta[item]
                if m is not KeyError:
                    row.append(Hit(item, float(row_d[j]), m))
            out.append(row)
        return out

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
        with self._lock:
            version = self._version
        start = time.monotonic()
        self._last_start = start
        try:
            data = self.index.to_bytes()
            self._store.put_bytes(self.key, data, max_bytes=self._max_bytes)
        except Exception as exc:
            log.error("saving index %r to %s failed: %s", self.name, self.key, exc)
            raise
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
    """

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        save_min_interval: float = 1.0,
        max_object_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.save_min_interval = save_min_interval
        self.max_object_bytes = max_object_bytes
        self._lock = threading.Lock()
        self._indexes: dict[str, NamedIndex] = {}
        self._dropping: set[str] = set()
        self.quarantined: list[str] = []

    def _wrap(self, name: str, index: VectorIndex, saved: bool) -> NamedIndex:
        return NamedIndex(
            name,
            index,
            self.store,
            save_min_interval=self.save_min_interval,
            max_object_bytes=self.max_object_bytes,
            saved=saved,
        )

    # -- loading ----------------------------------------------------------------------------

    def load_all(self) -> list[str]:
        """Load every saved index (see the module docstring); the names loaded."""
        if self.store is None:
            return []
        loaded = []
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
                index = VectorIndex.from_bytes(data)
            except ValueError as exc:
                self._quarantine(info.key, name, data, exc)
                continue
            with self._lock:
                self._indexes[name] = self._wrap(name, index, saved=True)
            loaded.append(name)
            log.info("loaded index %r: %d items, %d bytes", name, len(index), len(data))
        return loaded

    def _quarantine(self, key: str, name: str, data: bytes, exc: Exception) -> None:
        assert self.store is not None
        dest = f"{QUARANTINE_PREFIX}{name}.{int(time.time())}{SUFFIX}"
        self.store.put_bytes(dest, data)
        self.store.delete(key)
        self.quarantined.append(dest)
        log.error("index %r: %s is unreadable (%s); moved to %s, not loaded", name, key, exc, dest)

    # -- the set of indexes -----------------------------------------------------------------

    def create(self, params: IndexParams) -> NamedIndex:
        """A new, empty index (ValueError for bad params, IndexExists for a taken name);
        its first save is scheduled at once so it survives a restart."""
        params.validate()
        index = VectorIndex(
            params.dimension,
            params.distance,
            m=params.m,
            ef_construction=params.ef_construction,
            ef_search=params.ef_search,
        )
        with self._lock:
            if params.name in self._indexes:
                raise IndexExists(params.name)
            if params.name in self._dropping:
                raise IndexExists(params.name, "is being deleted; retry")
            entry = self._wrap(params.name, index, saved=False)
            self._indexes[params.name] = entry
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
        """Remove an index and its saved object (blocking: waits for a save in flight).

        If the object cannot be removed, the index is put back and SaveFailed is raised, so
        a failed delete changes nothing (a restart would otherwise bring it back).
        """
        with self._lock:
            entry = self._indexes.pop(name, None)
            if entry is None:
                raise IndexNotFound(name)
            self._dropping.add(name)
        try:
            entry.close(save=False)
            if self.store is not None:
                try:
                    self.store.delete(entry.key)
                except Exception as exc:
                    entry.reopen()
                    with self._lock:
                        self._indexes[name] = entry
                    raise SaveFailed(f"removing {entry.key} failed: {exc}") from exc
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
            done, bad = self._merge_batch(dst, batch_ids, np.stack(vectors), metadata)
            merged += len(done)
            failed += len(bad)
            errors.extend(bad[: max(0, 10 - len(errors))])  # a sample, not thousands
            if clear_source and done:
                cleared += src.delete(done)
        return MergeResult(source, dest, merged, skipped, failed, cleared, errors)

    @staticmethod
    def _merge_batch(
        dst: NamedIndex, ids: list[str], vectors: np.ndarray, metadata: list[Any]
    ) -> tuple[list[str], list[str]]:
        try:
            dst.add(ids, vectors, metadata)
            return ids, []
        except ValueError:
            pass
        # Something in the batch is refused: add one by one to find out what.
        done, bad = [], []
        for i, item in enumerate(ids):
            try:
                dst.add([item], vectors[i : i + 1], [metadata[i]])
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
