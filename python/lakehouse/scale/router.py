"""A sharded, replicated index: routing, replication, exact merging and catch-up.

    backend = LocalBackend(store, wal_dir)          # or RayBackend(...): replicas as actors
    ix = ShardedIndex.create(IndexParams("workers", 768), shards=4, replicas=2,
                             backend=backend, store=store)
    ix.add(ids, vectors, metadata)       # each item to every replica of its shard
    ix.search(vector, k=10)              # one replica of every shard, merged exactly

**Placement.** An item belongs to shard ``shard_of(id, shards)`` (:mod:`.placement`).

**Writes.** A batch is checked whole first (the core's own checks, on a scratch copy), so a
bad item refuses the batch before any shard sees it. Then the owning shards' locks are
taken (in shard order), the items of each shard are sent to every replica of that shard
that is in sync, and the answer waits for all of them: each replica answers once the write
is in its own write-ahead log. Holding the shard's lock while its replicas apply a write
gives every replica the same order of writes. A replica that fails is marked out of sync
(recorded in the layout object before the write is acknowledged); the write is
acknowledged when at least one replica of each shard has it. If every replica of a shard
fails, :class:`ShardUnavailable` is raised; the other shards' parts of the batch may be
applied (adds and deletes are idempotent: retry the batch).

**Searches.** Every shard is asked for its own top k (``exclude_ids`` applied in the shard:
each shard gets the excluded ids it owns), through one replica in sync, chosen round-robin.
The answers are merged by distance and cut to k. Since every item lives in exactly one
shard and each shard returns its k best, the merge is exact: below the brute-force
threshold the answer is the single index's answer; above it each shard's graph search has
its own recall. A replica that fails is marked out of sync and the shard is asked again
through another replica (each replica at most once per call).

**Catch-up.** A replica out of sync never serves (a restarted replica starts not serving,
see :mod:`.replica`). :meth:`ShardedIndex.heal` restarts it if needed, then, holding the
shard's lock (no write of that shard runs), copies a healthy replica's snapshot into it,
stores it, and marks it in sync again. ``heal_interval`` runs that in a background thread.

**Layout.** ``_vectors/_shards/<name>/layout.json`` holds the parameters, the shard and
replica counts and which replicas are in sync. :meth:`ShardedIndex.attach` reopens an index
from it: replicas in sync serve from their own snapshot + log, the others catch up first.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from ..data.storage import ObjectNotFound, ObjectStore
from ..vectors.index import Hit, VectorIndex, delete_ids
from ..vectors.registry import (
    VECTORS_PREFIX,
    IndexParams,
    ItemNotFound,
    NamedIndex,
    check_batch,
    rotate_field,
)
from .backend import Backend, ReplicaSpec, ReplicaUnavailable
from .placement import group_by_shard, shard_of, validate_layout
from .replica import shards_prefix

__all__ = ["ShardedIndex", "ShardUnavailable", "layout_key", "read_layouts"]

log = logging.getLogger("lakehouse.scale")

#: seconds a call to one replica may take before the replica counts as failed
CALL_TIMEOUT = 60.0


class ShardUnavailable(RuntimeError):
    """No replica of a shard answered: the operation did not complete."""


def layout_key(name: str) -> str:
    return f"{shards_prefix(name)}layout.json"


def read_layouts(store: ObjectStore) -> list[dict[str, Any]]:
    """Every sharded index's layout object in ``store`` (by name)."""
    out = []
    prefix = f"{VECTORS_PREFIX}_shards/"
    for info in list(store.iter_list(prefix)):
        rest = info.key[len(prefix) :]
        if rest.count("/") == 1 and rest.endswith("/layout.json"):
            try:
                out.append(orjson.loads(store.get_bytes(info.key)))
            except (ObjectNotFound, orjson.JSONDecodeError) as exc:
                log.error("%s: unreadable layout (%s), skipped", info.key, exc)
    return sorted(out, key=lambda d: d["params"]["name"])


def _params_json(p: IndexParams) -> dict[str, Any]:
    return {
        "name": p.name,
        "dimension": p.dimension,
        "distance": p.distance,
        "m": p.m,
        "ef_search": p.ef_search,
        "ef_construction": p.ef_construction,
        "rotate": p.rotate,
    }


class _Dims:
    """What vectord reads of ``entry.index``: its dimension."""

    __slots__ = ("dims",)

    def __init__(self, dims: int) -> None:
        self.dims = dims


class ShardedIndex:
    """See the module docstring. Thread-safe. It offers the methods vectord calls on a
    :class:`~lakehouse.vectors.registry.NamedIndex` (search, search_batch, add_logged, ...)."""

    #: vectord: never search inline on the event loop (a call goes to other processes)
    remote = True

    def __init__(
        self,
        params: IndexParams,
        shards: int,
        replicas: int,
        backend: Backend,
        *,
        store: ObjectStore | None = None,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self.params_ = params.validate()
        self.shards, self.replicas = validate_layout(shards, replicas)
        self.name = params.name
        self.index = _Dims(params.dimension)
        self.backend = backend
        self._store = store
        self._timeout = call_timeout
        self._specs = [[ReplicaSpec(params, s, r) for r in range(replicas)] for s in range(shards)]
        self._handles: list[list[Any]] = [[None] * replicas for _ in range(shards)]
        self._in_sync = [[False] * replicas for _ in range(shards)]
        self._locks = [threading.Lock() for _ in range(shards)]
        self._state = threading.Lock()  # guards _in_sync, _handles and the layout object
        self._rr = itertools.count()
        self.shard_counts = [0] * shards
        self.count = 0
        self.heals = 0
        self.failovers = 0
        self._healer: threading.Thread | None = None
        self._closing = threading.Event()
        # The core's own input checks, run on a scratch index that never builds a graph.
        self._checker_args = (params.dimension, params.distance)

    # -- creating and reopening ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        params: IndexParams,
        shards: int,
        replicas: int,
        backend: Backend,
        *,
        store: ObjectStore | None = None,
        call_timeout: float = CALL_TIMEOUT,
        heal_interval: float | None = None,
    ) -> ShardedIndex:
        """A new, empty index: every replica started and in sync. ValueError for bad
        parameters (nothing started)."""
        ix = cls(params, shards, replicas, backend, store=store, call_timeout=call_timeout)
        try:
            ix._start_all()
            ix._in_sync = [[True] * ix.replicas for _ in range(ix.shards)]
            ix._save_layout()
            # An empty snapshot everywhere: clears what a replica of an earlier index of
            # that name left behind (a replica that was down when it was dropped).
            empty = VectorIndex(
                params.dimension, params.distance, m=params.m,
                ef_construction=params.ef_construction, ef_search=params.ef_search, rotate=params.rotate,
            ).to_bytes()
            ix._check_all(ix._broadcast("install", empty))
        except BaseException:
            ix.close(save=False)
            if store is not None:  # a half-made index must not be reattached at the next start
                store.delete(layout_key(params.name))
            raise
        ix._refresh_counts()
        ix.start_healer(heal_interval)
        return ix

    @classmethod
    def attach(
        cls,
        layout: dict[str, Any],
        backend: Backend,
        *,
        store: ObjectStore | None = None,
        call_timeout: float = CALL_TIMEOUT,
        heal_interval: float | None = None,
    ) -> ShardedIndex:
        """Reopen an index from its layout object: replicas in sync serve what they have
        on disk, the others are caught up from them."""
        p = layout["params"]
        params = IndexParams(
            p["name"], p["dimension"], p["distance"], p["m"], p["ef_search"], p["ef_construction"],
            p.get("rotate", True),
        )
        ix = cls(params, layout["shards"], layout["replicas"], backend, store=store, call_timeout=call_timeout)
        try:
            ix._start_all()
            ix._in_sync = [[r in layout["in_sync"][s] for r in range(ix.replicas)] for s in range(ix.shards)]
            for s in range(ix.shards):
                for r in range(ix.replicas):
                    if ix._in_sync[s][r]:
                        got = backend.results([backend.call(ix._handles[s][r], "open")], call_timeout)[0]
                        if isinstance(got, BaseException):
                            ix._mark_out_of_sync(s, r, got)
            ix.heal()
        except BaseException:
            ix.close(save=False)
            raise
        ix._refresh_counts()
        ix.start_healer(heal_interval)
        return ix

    def _start_all(self) -> None:
        for s in range(self.shards):
            for r in range(self.replicas):
                self._handles[s][r] = self.backend.start(self._specs[s][r])

    def _broadcast(self, method: str, *args: Any) -> list[Any]:
        pending = [self.backend.call(h, method, *args) for row in self._handles for h in row]
        return self.backend.results(pending, self._timeout)

    @staticmethod
    def _check_all(results: list[Any]) -> None:
        for got in results:
            if isinstance(got, BaseException):
                raise got

    def _layout(self) -> dict[str, Any]:
        return {
            "params": _params_json(self.params_),
            "shards": self.shards,
            "replicas": self.replicas,
            "in_sync": [[r for r in range(self.replicas) if row[r]] for row in self._in_sync],
        }

    def _save_layout(self) -> None:
        if self._store is not None:
            self._store.put_bytes(layout_key(self.name), orjson.dumps(self._layout()))

    def _mark_out_of_sync(self, shard: int, replica: int, why: BaseException | str) -> None:
        with self._state:
            if not self._in_sync[shard][replica]:
                return
            self._in_sync[shard][replica] = False
            log.warning("index %r: replica s%dr%d out of sync: %s", self.name, shard, replica, why)
            # Recorded before any write that skipped it is acknowledged: a restart of the
            # whole index must not serve from it.
            self._save_layout()

    def _live(self, shard: int) -> list[int]:
        with self._state:
            return [r for r in range(self.replicas) if self._in_sync[shard][r]]

    def _refresh_counts(self) -> None:
        for s in range(self.shards):
            for r in self._live(s):
                got = self.backend.results([self.backend.call(self._handles[s][r], "ping")], self._timeout)[0]
                if not isinstance(got, BaseException):
                    self.shard_counts[s] = got["count"]
                    break
        self.count = sum(self.shard_counts)

    # -- writes ---------------------------------------------------------------------------

    def _check_batch(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None) -> tuple[list[str], np.ndarray]:
        """The core's checks on the whole batch (ValueError naming the item), nothing stored."""
        scratch = VectorIndex(*self._checker_args, brute_force_threshold=1 << 62, threads=1)
        scratch.add(ids, vectors, metadata)
        arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)).reshape(len(ids), self.index.dims)
        return list(ids), arr

    def _write(self, parts: dict[int, tuple[Any, ...]], method: str) -> dict[int, Any]:
        """Send ``method(*parts[shard])`` to every in-sync replica of each shard; the first
        answer of each shard."""
        shards = sorted(parts)
        with contextlib.ExitStack() as held:
            for s in shards:
                held.enter_context(self._locks[s])
            calls: list[tuple[int, int]] = []
            pending = []
            for s in shards:
                live = self._live(s)
                if not live:
                    raise ShardUnavailable(f"index {self.name!r}: no replica of shard {s} is in sync")
                for r in live:
                    calls.append((s, r))
                    pending.append(self.backend.call(self._handles[s][r], method, *parts[s]))
            results = self.backend.results(pending, self._timeout)
            answers: dict[int, list[tuple[int, Any]]] = {s: [] for s in shards}
            for (s, r), got in zip(calls, results, strict=True):
                if isinstance(got, ReplicaUnavailable):
                    self._mark_out_of_sync(s, r, got)
                else:
                    answers[s].append((r, got))
            out: dict[int, Any] = {}
            for s in shards:
                ok = [g for _, g in answers[s] if not isinstance(g, BaseException)]
                refused = [(r, g) for r, g in answers[s] if isinstance(g, BaseException)]
                if ok:
                    out[s] = ok[0]
                    for r, g in refused:  # it refused what a peer accepted: it has diverged
                        self._mark_out_of_sync(s, r, g)
                elif refused:
                    raise refused[0][1]
                else:
                    raise ShardUnavailable(f"index {self.name!r}: no replica of shard {s} answered")
            return out

    def add(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None = None) -> tuple[int, int]:
        """Upsert a batch; ``(added, updated)`` once every item is in the log of every
        in-sync replica of its shard. ValueError (nothing changed) for bad input."""
        id_list, arr = self._check_batch(ids, vectors, metadata)
        if not id_list:
            return 0, 0
        meta = list(metadata) if metadata is not None else None
        parts = {
            s: ([id_list[i] for i in pos], arr[pos], None if meta is None else [meta[i] for i in pos])
            for s, pos in group_by_shard(id_list, self.shards).items()
        }
        answers = self._write(parts, "add")
        added = updated = 0
        for s, (a, u, count) in answers.items():
            added += a
            updated += u
            self.shard_counts[s] = count
        self.count = sum(self.shard_counts)
        return added, updated

    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id (unknown ids are ignored); how many were deleted."""
        id_list = delete_ids(ids)
        if not id_list:
            return 0
        parts = {s: ([id_list[i] for i in pos],) for s, pos in group_by_shard(id_list, self.shards).items()}
        deleted = 0
        for s, (n, count) in self._write(parts, "delete").items():
            deleted += n
            self.shard_counts[s] = count
        self.count = sum(self.shard_counts)
        return deleted

    # vectord's NamedIndex interface: the answer already waited for every replica's log.
    def add_logged(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Any] | None = None) -> tuple[tuple[int, int], int]:
        return self.add(ids, vectors, metadata), 0

    def delete_logged(self, ids: Sequence[str]) -> tuple[int, int]:
        return self.delete(ids), 0

    def wait_logged(self, lsn: int, timeout: float | None = None) -> None:
        return None

    async def wait_logged_async(self, lsn: int) -> None:
        return None

    # -- reads ----------------------------------------------------------------------------

    def _read(self, shards: Sequence[int], method: str, args: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        """``method(*args[s])`` answered by one in-sync replica of each shard; a failed
        replica is marked out of sync and the shard asked again through another."""
        out: dict[int, Any] = {}
        tried: dict[int, set[int]] = {s: set() for s in shards}
        todo = list(shards)
        turn = next(self._rr)
        while todo:
            calls: list[tuple[int, int]] = []
            pending = []
            for s in todo:
                live = [r for r in self._live(s) if r not in tried[s]]
                if not live:
                    raise ShardUnavailable(f"index {self.name!r}: no replica of shard {s} answered")
                r = live[(turn + s) % len(live)]
                tried[s].add(r)
                calls.append((s, r))
                pending.append(self.backend.call(self._handles[s][r], method, *args[s]))
            todo = []
            for (s, r), got in zip(calls, self.backend.results(pending, self._timeout), strict=True):
                if isinstance(got, ReplicaUnavailable):
                    self._mark_out_of_sync(s, r, got)
                    self.failovers += 1
                    todo.append(s)
                elif isinstance(got, BaseException):
                    raise got
                else:
                    out[s] = got
        return out

    def _check_query(self, k: int, ef: int | None) -> None:
        NamedIndex._check_query(k, ef)

    def _exclusions(self, exclude_ids: Sequence[str] | None) -> dict[int, list[str] | None]:
        if exclude_ids is None:
            return dict.fromkeys(range(self.shards))
        if isinstance(exclude_ids, str | bytes):
            raise ValueError("exclude_ids must be a sequence of strings, not a single string")
        out: dict[int, list[str] | None] = {s: [] for s in range(self.shards)}
        for i, item in enumerate(exclude_ids):
            if not isinstance(item, str):
                raise ValueError(f"exclude_ids[{i}] must be a string, got {type(item).__name__}")
            out[shard_of(item, self.shards)].append(item)  # type: ignore[union-attr]
        return out

    @staticmethod
    def _merge(rows: list[list[Hit]], k: int) -> list[Hit]:
        # Each row is sorted; a stable sort keeps shard order among equal distances.
        hits = [h for row in rows for h in row]
        hits.sort(key=lambda h: h.distance)
        return hits[:k]

    def search(
        self, vector: np.ndarray, k: int = 10, ef: int | None = None, exclude_ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """The ``k`` nearest items over every shard, nearest first."""
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.index.dims,):
            raise ValueError(
                f"vector has {vector.shape[0] if vector.ndim == 1 else vector.shape} "
                f"dimensions, index {self.name!r} has {self.index.dims}"
            )
        self._check_query(k, ef)
        excl = self._exclusions(exclude_ids)
        shards = range(self.shards)
        got = self._read(shards, "search", {s: (vector, k, ef, excl[s]) for s in shards})
        return self._merge([got[s] for s in shards], k)

    def search_batch(
        self, queries: np.ndarray, k: int = 10, ef: int | None = None, exclude_ids: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """One merged result list per query row."""
        queries = np.asarray(queries, dtype=np.float32)
        check_batch(queries, self.index.dims, self.count, k, ef)
        if not len(queries):
            return []
        excl = self._exclusions(exclude_ids)
        shards = range(self.shards)
        got = self._read(shards, "search_batch", {s: (queries, k, ef, excl[s]) for s in shards})
        return [self._merge([got[s][q] for s in shards], k) for q in range(len(queries))]

    def get(self, item: str) -> tuple[np.ndarray, Any]:
        """``(vector, metadata)`` from the owning shard; ItemNotFound when absent."""
        if not isinstance(item, str):
            raise ItemNotFound(self.name, str(item))
        s = shard_of(item, self.shards)
        got = self._read([s], "get", {s: (item,)})[s]
        if got is None:
            raise ItemNotFound(self.name, item)
        return got

    def __len__(self) -> int:
        return self.count

    # -- catch-up -------------------------------------------------------------------------

    def out_of_sync(self) -> list[tuple[int, int]]:
        with self._state:
            return [(s, r) for s in range(self.shards) for r in range(self.replicas) if not self._in_sync[s][r]]

    def heal(self) -> int:
        """Catch every out-of-sync replica up from a healthy one of its shard (restarting
        it if it does not answer); how many rejoined. A replica that cannot be caught up
        now stays out of sync (the next heal tries again)."""
        healed = 0
        for s, r in self.out_of_sync():
            handle = self._handles[s][r]
            alive = self.backend.results([self.backend.call(handle, "ping")], self._timeout)[0]
            if isinstance(alive, BaseException):
                try:
                    handle = self.backend.restart(handle, self._specs[s][r])
                except Exception as exc:
                    log.warning("index %r: restarting replica s%dr%d failed: %s", self.name, s, r, exc)
                    continue
                with self._state:
                    self._handles[s][r] = handle
            with self._locks[s]:  # no write of this shard runs while it catches up
                sources = self._live(s)
                if not sources:
                    log.error("index %r: shard %d has no replica in sync to catch up from", self.name, s)
                    continue
                data = self.backend.results([self.backend.call(self._handles[s][sources[0]], "export")], self._timeout)[0]
                if isinstance(data, BaseException):
                    if isinstance(data, ReplicaUnavailable):
                        self._mark_out_of_sync(s, sources[0], data)
                    continue
                got = self.backend.results([self.backend.call(handle, "install", data)], self._timeout)[0]
                if isinstance(got, BaseException):
                    log.warning("index %r: replica s%dr%d did not catch up: %s", self.name, s, r, got)
                    continue
                with self._state:
                    self._in_sync[s][r] = True
                    self._save_layout()
            healed += 1
            self.heals += 1
            log.info("index %r: replica s%dr%d caught up (%d items)", self.name, s, r, got)
        return healed

    def start_healer(self, interval: float | None) -> None:
        """Run :meth:`heal` every ``interval`` seconds in a background thread (None: never)."""
        if interval is None or self._healer is not None:
            return

        def loop() -> None:
            while not self._closing.wait(interval):
                if self.out_of_sync():
                    try:
                        self.heal()
                    except Exception:
                        log.exception("index %r: heal failed", self.name)

        self._healer = threading.Thread(target=loop, name=f"heal-{self.name}", daemon=True)
        self._healer.start()

    # -- info, saving, shutdown -----------------------------------------------------------

    def layout(self) -> dict[str, Any]:
        with self._state:
            return self._layout()

    def params(self) -> dict[str, Any]:
        p = _params_json(self.params_)
        shown = rotate_field(p.pop("rotate"))
        return {**p, "count": self.count, **shown, "shards": self.shards, "replicas": self.replicas}

    def info(self) -> dict[str, Any]:
        out = self.params()
        out["sharding"] = {
            "engine": self.backend.engine,
            "shard_counts": list(self.shard_counts),
            "out_of_sync": [f"s{s}r{r}" for s, r in self.out_of_sync()],
            "heals": self.heals,
            "failovers": self.failovers,
        }
        return out

    def persistence(self) -> dict[str, Any]:
        return {"key": layout_key(self.name) if self._store is not None else None}

    def flush(self, timeout: float | None = None) -> None:
        """Return once every in-sync replica's index is saved."""
        for s in range(self.shards):
            with self._locks[s]:
                live = self._live(s)
                got = self.backend.results(
                    [self.backend.call(self._handles[s][r], "flush", timeout) for r in live],
                    None if timeout is None else timeout + 5,
                )
            for r, g in zip(live, got, strict=True):
                if isinstance(g, ReplicaUnavailable):
                    self._mark_out_of_sync(s, r, g)
                elif isinstance(g, BaseException):
                    raise g

    def close(self, *, save: bool = True) -> None:
        """Stop the healer and every replica (``save``: each saves first)."""
        self._closing.set()
        if self._healer is not None:
            self._healer.join(timeout=10)
        handles = [h for row in self._handles for h in row if h is not None]
        if save:
            self.backend.results([self.backend.call(h, "close") for h in handles], self._timeout)
        for h in handles:
            self.backend.stop(h)

    def drop(self) -> None:
        """Remove every replica's data and the layout object."""
        self._closing.set()
        if self._healer is not None:
            self._healer.join(timeout=10)
        handles = [h for row in self._handles for h in row if h is not None]
        # A replica that is down keeps its files; they are removed when it is next started
        # for this name (create starts from an empty index and a fresh log).
        self.backend.results([self.backend.call(h, "drop") for h in handles], self._timeout)
        for h in handles:
            self.backend.stop(h)
        if self._store is not None:
            self._store.delete(layout_key(self.name))


def wait_in_sync(ix: ShardedIndex, timeout: float) -> bool:
    """Poll until every replica is in sync (tests, benchmarks); False on timeout."""
    deadline = time.monotonic() + timeout
    while ix.out_of_sync():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
