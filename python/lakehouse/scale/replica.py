"""One replica of one shard: today's :class:`~lakehouse.vectors.registry.VectorRegistry` holding one
:class:`~lakehouse.vectors.registry.NamedIndex`, with its own snapshot key and its own write-ahead log.

A replica is a plain object: the router uses it in-process (:class:`LocalBackend`) or as a
Ray actor (:mod:`lakehouse.scale.ray_backend`), with the same code. It reuses the single
index's durability unchanged: a write returns once it is in the replica's log, snapshots go
through the object store, and a restart replays snapshot + log (``load_all``).

Where a replica keeps its data:

- snapshot: ``_vectors/_shards/<name>/s<shard>r<replica>/<name>.lhv`` (a :class:`ShardStore`
  view maps the registry's ``_vectors/`` there; vectord's own registry skips keys with a
  ``/`` after ``_vectors/``, so it never loads a replica's snapshot as an index);
- log: ``<wal_dir>/_shards/<name>/s<shard>r<replica>/`` on the local disk of the node.

**Serving.** A replica starts *not serving*: every data call raises :class:`NotServing`
until the router says it is in sync (:meth:`ShardReplica.open`) or gives it a healthy
peer's state (:meth:`ShardReplica.install`). A replica process that died and was restarted
(by Ray, or by hand) therefore never answers from a stale state: it catches up first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.storage import ListPage, ObjectInfo, ObjectReader, ObjectStore, ObjectWriter
from ..vectors import wal as wal_mod
from ..vectors.index import Hit, VectorIndex
from ..vectors.registry import VECTORS_PREFIX, IndexParams, NamedIndex, VectorRegistry, object_key

__all__ = ["NotServing", "ShardReplica", "ShardStore", "replica_dir", "shards_prefix"]

log = logging.getLogger("lakehouse.scale")


class NotServing(RuntimeError):
    """The replica has not caught up since it started: ask another replica."""


def shards_prefix(name: str) -> str:
    """Where everything of sharded index ``name`` lives in the object store."""
    return f"{VECTORS_PREFIX}_shards/{name}/"


def replica_dir(shard: int, replica: int) -> str:
    return f"s{shard:03d}r{replica}"


class ShardStore(ObjectStore):
    """A view of ``store`` that maps ``_vectors/<rest>`` to ``<base><rest>``: a registry
    working through it keeps its snapshots under ``base`` and sees nothing else."""

    def __init__(self, store: ObjectStore, base: str) -> None:
        self.inner = store
        self.base = base
        self.backend = store.backend

    def _key(self, key: str) -> str:
        if not key.startswith(VECTORS_PREFIX):
            raise ValueError(f"a shard replica only stores under {VECTORS_PREFIX}, not {key!r}")
        return self.base + key[len(VECTORS_PREFIX) :]

    def _back(self, key: str) -> str:
        return VECTORS_PREFIX + key[len(self.base) :]

    def open_writer(self, key: str, *, max_bytes: int | None = None) -> ObjectWriter:
        return self.inner.open_writer(self._key(key), max_bytes=max_bytes)

    def open_reader(self, key: str) -> ObjectReader:
        return self.inner.open_reader(self._key(key))

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(self._key(key))

    def delete(self, key: str) -> bool:
        return self.inner.delete(self._key(key))

    def list(self, prefix: str = "", after: str = "", limit: int = 1000) -> ListPage:
        page = self.inner.list(self._key(prefix), self._key(after) if after else "", limit)
        items = [ObjectInfo(self._back(i.key), i.size, i.sha256) for i in page.items]
        nxt = self._back(page.next_after) if page.next_after else None
        return ListPage(items, page.truncated, nxt)

    def iter_list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in self.inner.iter_list(self._key(prefix)):
            yield ObjectInfo(self._back(info.key), info.size, info.sha256)

    def uri(self, key: str) -> str:
        return self.inner.uri(self._key(key))

    def uri_prefix(self, prefix: str) -> str:
        return self.inner.uri_prefix(self._key(prefix))


StoreSource = ObjectStore | Callable[[], ObjectStore] | None


class ShardReplica:
    """Replica ``replica`` of shard ``shard`` of index ``params.name`` (see the module
    docstring). ``store``: an object store, or a function that opens one (a Ray actor opens
    its own from the config); None keeps the replica in memory only. ``wal_dir``: the root
    of the write-ahead logs (the replica uses a folder below it)."""

    def __init__(
        self,
        params: IndexParams,
        shard: int,
        replica: int,
        store: StoreSource = None,
        wal_dir: str | os.PathLike[str] | None = None,
        *,
        durability: str = "fsync",
        save_min_interval: float = 1.0,
        max_object_bytes: int | None = None,
    ) -> None:
        self.params = params.validate()
        self.name = params.name
        self.shard = shard
        self.replica = replica
        self._owns_store = callable(store) and not isinstance(store, ObjectStore)
        base_store = store() if self._owns_store else store  # type: ignore[operator]
        self._base_store: ObjectStore | None = base_store  # type: ignore[assignment]
        where = f"{shards_prefix(self.name)}{replica_dir(shard, replica)}/"
        self.store = ShardStore(base_store, where) if base_store is not None else None  # type: ignore[arg-type]
        self.wal_dir = (
            Path(wal_dir) / "_shards" / self.name / replica_dir(shard, replica)
            if wal_dir is not None
            else None
        )
        self._durability = durability
        self._save_min_interval = save_min_interval
        self._max_bytes = max_object_bytes
        self.serving = False
        self.registry = self._open_registry()
        self.entry = self._entry()

    # -- the registry behind the replica ----------------------------------------------------

    def _open_registry(self) -> VectorRegistry:
        if self.wal_dir is not None:
            self.wal_dir.mkdir(parents=True, exist_ok=True)
        registry = VectorRegistry(
            self.store,
            save_min_interval=self._save_min_interval,
            max_object_bytes=self._max_bytes,
            wal_dir=self.wal_dir,
            durability=self._durability,
        )
        # Its own snapshot + log: what it had when it stopped (maybe stale; see open()).
        registry.load_all()
        return registry

    def _entry(self) -> NamedIndex:
        if self.name in self.registry:
            entry = self.registry.get(self.name)
            if entry.index.dims != self.params.dimension:
                raise ValueError(
                    f"replica {replica_dir(self.shard, self.replica)} of {self.name!r} holds "
                    f"{entry.index.dims} dimensions, the index has {self.params.dimension}"
                )
            return entry
        return self.registry.create(self.params)

    def _serving(self) -> NamedIndex:
        if not self.serving:
            raise NotServing(
                f"replica {replica_dir(self.shard, self.replica)} of {self.name!r} has not caught up"
            )
        return self.entry

    # -- life cycle -------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"serving": self.serving, "count": self.entry.count, "pid": os.getpid()}

    def open(self) -> int:
        """Serve from the state this replica has (the router knows it is in sync)."""
        self.serving = True
        return self.entry.count

    def export(self) -> bytes:
        """A snapshot of this replica's index (consistent: no write runs while it is taken)."""
        entry = self._serving()
        with entry._mutate:
            return entry.index.to_bytes()

    def install(self, data: bytes) -> int:
        """Replace this replica's state with a peer's snapshot (durably: the snapshot is
        stored and the old log removed before it serves); the new count."""
        index = VectorIndex.from_bytes(data)  # ValueError before anything changes
        if index.dims != self.params.dimension:
            raise ValueError(f"the snapshot has {index.dims} dimensions, the index {self.params.dimension}")
        self.serving = False
        self._close(save=False)
        if self.store is not None:
            self.store.put_bytes(object_key(self.name), data, max_bytes=self._max_bytes)
        if self.wal_dir is not None:
            wal_mod.delete_segments(self.wal_dir, self.name)
        if self.store is None:
            # In memory only: nothing to reload from, so adopt the index directly.
            self.registry = VectorRegistry(None)
            self.entry = NamedIndex(self.name, index, None)
            self.registry._indexes[self.name] = self.entry
        else:
            self.registry = self._open_registry()
            self.entry = self._entry()
        self.serving = True
        return self.entry.count

    def _close(self, *, save: bool) -> None:
        entry = self.entry
        if save:
            self.registry.close()
            return
        entry.close(save=False)
        if entry.wal is not None:
            entry.wal.close()

    def close(self) -> None:
        """Save and stop (a clean shutdown)."""
        self.serving = False
        self._close(save=True)
        if self._owns_store and self._base_store is not None:
            self._base_store.close()

    def drop(self) -> None:
        """Remove this replica's snapshot and log (the index is being deleted)."""
        self.serving = False
        if self.name in self.registry:
            self.registry.drop(self.name)
        if self._owns_store and self._base_store is not None:
            self._base_store.close()

    # -- data -------------------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Any] | None) -> tuple[int, int, int]:
        """``(added, updated, count)`` once the batch is in this replica's log."""
        entry = self._serving()
        added, updated = entry.add(ids, vectors, metadata)
        return added, updated, entry.count

    def delete(self, ids: Sequence[str]) -> tuple[int, int]:
        """``(deleted, count)`` once the delete is in this replica's log."""
        entry = self._serving()
        return entry.delete(ids), entry.count

    def search(self, vector: np.ndarray, k: int, ef: int | None, exclude: Sequence[str] | None) -> list[Hit]:
        return self._serving().search(vector, k, ef, exclude)

    def search_batch(
        self, queries: np.ndarray, k: int, ef: int | None, exclude: Sequence[str] | None
    ) -> list[list[Hit]]:
        return self._serving().search_batch(queries, k, ef, exclude)

    def get(self, item: str) -> tuple[np.ndarray, Any] | None:
        """``(vector, metadata)``, or None when this replica has no such item."""
        entry = self._serving()
        try:
            return entry.index.get(item)
        except KeyError:
            return None

    def flush(self, timeout: float | None = None) -> dict[str, Any]:
        """Return once this replica's index is saved; its persistence counters."""
        entry = self._serving()
        entry.flush(timeout)
        return entry.persistence()

    def stats(self) -> dict[str, Any]:
        return {"count": self.entry.count, "serving": self.serving, **self.entry.index.stats()}
