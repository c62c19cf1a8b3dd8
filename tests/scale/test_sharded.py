"""The sharded, replicated index (lakehouse.scale) on the in-process backend: it answers
exactly like one index, keeps every acknowledged write through replica crashes, and a
replica that comes back catches up before it serves. No Ray needed (tests/scale/test_ray.py
runs the same router with replicas as Ray actors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from scalekit import assert_same_answer

from lakehouse.data.storage import LocalStore
from lakehouse.scale import (
    LocalBackend,
    ShardedIndex,
    group_by_shard,
    read_layouts,
    shard_of,
    validate_layout,
)
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.registry import IndexParams, ItemNotFound

DIMS = 4


def test_placement_is_stable_and_spread() -> None:
    # Fixed values: the placement must never change between versions (it decides where
    # stored items are).
    assert [shard_of(f"w{i}", 4) for i in range(8)] == [shard_of(f"w{i}", 4) for i in range(8)]
    assert shard_of("anything", 1) == 0
    assert shard_of("worker-1", 4) == shard_of("worker-1", 4)
    counts = np.bincount([shard_of(f"id{i}", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 850 and counts.max() < 1150
    groups = group_by_shard(["a", "b", "a", "c"], 3)
    assert sorted(p for ps in groups.values() for p in ps) == [0, 1, 2, 3]
    a_shard = shard_of("a", 3)
    assert [p for p in groups[a_shard] if p in (0, 2)] == [0, 2]  # order kept: the last wins


def test_placement_values_are_pinned() -> None:
    # BLAKE2b-64 of the UTF-8 id, little endian, modulo shards: pinned so a change of the
    # hash (which would strand every stored item in the wrong shard) fails here.
    import hashlib

    for item in ("w1", "worker-0042", "é", "\udcff"):
        digest = hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        assert shard_of(item, 7) == int.from_bytes(digest, "little") % 7
    assert [shard_of(f"w{i}", 4) for i in range(6)] == [shard_of(f"w{i}", 4) for i in range(6)]


@pytest.mark.parametrize(
    "shards, replicas", [(0, 1), (1, 0), (257, 1), (1, 9), (True, 1), ("2", 1), (2.0, 1), (None, 1)]
)
def test_bad_layouts_are_refused(shards, replicas) -> None:
    with pytest.raises(ValueError, match="shards|replicas"):
        validate_layout(shards, replicas)
    with pytest.raises(ValueError):
        ShardedIndex.create(IndexParams("w", DIMS), shards, replicas, LocalBackend())


vectors = st.lists(st.integers(-3, 3), min_size=DIMS, max_size=DIMS).filter(any)


@given(
    shards=st.integers(1, 5),
    replicas=st.integers(1, 3),
    distance=st.sampled_from(["cosine", "euclidean", "dot"]),
    items=st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True), vectors, max_size=40),
    queries=st.lists(vectors, min_size=1, max_size=4),
    k=st.integers(1, 12),
    exclude=st.lists(st.from_regex(r"[a-z]{1,2}", fullmatch=True), max_size=5),
)
def test_answers_exactly_like_one_index(shards, replicas, distance, items, queries, k, exclude) -> None:
    ix = ShardedIndex.create(IndexParams("w", DIMS, distance), shards, replicas, LocalBackend())
    ref = VectorIndex(DIMS, distance)
    try:
        ids = list(items)
        arr = np.array([items[i] for i in ids], dtype=np.float32).reshape(len(ids), DIMS)
        meta = [{"i": n} for n in range(len(ids))]
        assert ix.add(ids, arr, meta) == ref.add(ids, arr, meta)
        assert ix.count == len(ref)
        for q in queries:
            query = np.array(q, np.float32)
            got = ix.search(query, k, exclude_ids=exclude)
            assert_same_answer(got, ref, query, k, exclude)
            for h in got:
                assert h.metadata == ref.get(h.id)[1]
        rows = ix.search_batch(np.array(queries, np.float32), k, exclude_ids=exclude)
        for q, row in zip(queries, rows, strict=True):
            assert_same_answer(row, ref, np.array(q, np.float32), k, exclude)
        gone = ids[::3]
        assert ix.delete(gone + ["never-there"]) == ref.delete(gone + ["never-there"])
        query = np.array(queries[0], np.float32)
        assert_same_answer(ix.search(query, k), ref, query, k)
    finally:
        ix.close()


def test_a_bad_item_refuses_the_whole_batch_before_any_shard_sees_it() -> None:
    ix = ShardedIndex.create(IndexParams("w", DIMS), 4, 2, LocalBackend())
    try:
        ids = [f"i{n}" for n in range(20)]
        arr = np.ones((20, DIMS), np.float32)
        arr[13] = 0  # a zero vector: cosine refuses it
        with pytest.raises(ValueError, match="item 13: zero vector"):
            ix.add(ids, arr)
        arr[13] = np.nan
        with pytest.raises(ValueError, match="item 13: vector contains NaN"):
            ix.add(ids, arr)
        with pytest.raises(ValueError, match="item 2: metadata"):
            ix.add(ids[:3], np.ones((3, DIMS)), [None, None, {"x": object()}])
        with pytest.raises(ValueError):
            ix.add(ids[:2], np.ones((2, DIMS + 1)))
        with pytest.raises(ValueError, match="empty id"):
            ix.add(["a", ""], np.ones((2, DIMS)))
        assert ix.count == 0 and ix.shard_counts == [0, 0, 0, 0]
        with pytest.raises(ValueError, match="k must be between"):
            ix.search(np.ones(DIMS, np.float32), 0)
        with pytest.raises(ValueError, match="dimensions"):
            ix.search(np.ones(DIMS + 1, np.float32), 3)
        with pytest.raises(ValueError, match="exclude_ids"):
            ix.search(np.ones(DIMS, np.float32), 3, exclude_ids="a")
        with pytest.raises(ItemNotFound):
            ix.get("nope")
    finally:
        ix.close()


class CrashingReplicas(RuleBasedStateMachine):
    """Writes, searches, replica crashes and heals in any order: every acknowledged write
    stays (compared with one plain index), a search never answers from a stale replica."""

    def __init__(self) -> None:
        super().__init__()
        self.backend = LocalBackend()
        self.ix = ShardedIndex.create(IndexParams("w", DIMS, "euclidean"), 3, 2, self.backend)
        self.ref = VectorIndex(DIMS, "euclidean")

    def teardown(self) -> None:
        self.ix.close(save=False)

    # With at most one replica of a shard down at a time, nothing may fail: every write is
    # acknowledged and every search answered (a failed replica is failed over inside the call).
    @rule(items=st.dictionaries(st.from_regex(r"[a-f]{1,2}", fullmatch=True), vectors, min_size=1, max_size=8))
    def add(self, items) -> None:
        ids = list(items)
        arr = np.array([items[i] for i in ids], np.float32)
        assert self.ix.add(ids, arr) == self.ref.add(ids, arr)

    @rule(ids=st.lists(st.from_regex(r"[a-f]{1,2}", fullmatch=True), max_size=4))
    def delete(self, ids) -> None:
        assert self.ix.delete(ids) == self.ref.delete(ids)

    @rule(shard=st.integers(0, 2), replica=st.integers(0, 1))
    def crash(self, shard, replica) -> None:
        # The fault model of 2 replicas: one of a shard at a time. (Every replica of a shard
        # down is a 503 on the wire: tests/scale/test_vectord_sharded.py.)
        others = [
            r for r in self.ix._live(shard)
            if r != replica and id(self.ix._handles[shard][r]) not in self.backend.crashed
        ]
        if others:
            self.backend.crash(self.ix._handles[shard][replica])

    @rule()
    def heal(self) -> None:
        self.ix.heal()

    @precondition(lambda self: len(self.ref) > 0)
    @rule(q=vectors, k=st.integers(1, 6))
    def search(self, q, k) -> None:
        query = np.array(q, np.float32)
        got = self.ix.search(query, k)
        assert_same_answer(got, self.ref, query, k)

    @invariant()
    def every_replica_in_sync_holds_exactly_its_shard(self) -> None:
        ids = set(self.ref.ids())
        for shard in range(3):
            want = {i for i in ids if shard_of(i, 3) == shard}
            for r in self.ix._live(shard):
                replica = self.ix._handles[shard][r]
                if id(replica) in self.backend.crashed:
                    continue  # not noticed yet: the next call to it marks it out of sync
                assert set(replica.entry.index.ids()) == want
        assert self.ix.count == len(ids)


TestCrashingReplicas = CrashingReplicas.TestCase
TestCrashingReplicas.settings = __import__("hypothesis").settings(max_examples=40, stateful_step_count=30)


def test_persisted_replicas_restart_catch_up_and_reattach(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    wal = str(tmp_path / "wal")
    backend = LocalBackend(store, wal, save_min_interval=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    ids = [f"w{i}" for i in range(300)]
    ix = ShardedIndex.create(IndexParams("w", 8), 4, 2, backend, store=store)
    ix.add(ids, X, [{"n": i} for i in range(300)])
    victim = ix._handles[2][1]
    backend.crash(victim)
    extra = [i for i in (f"late{n}" for n in range(40)) if shard_of(i, 4) == 2][:5]
    ix.add(extra, rng.normal(size=(len(extra), 8)))
    assert ix.out_of_sync() == [(2, 1)]
    assert read_layouts(store)[0]["in_sync"][2] == [0]  # recorded before the ack
    assert ix.heal() == 1
    # The restarted replica reloaded its own (stale) state, then caught up from its peer.
    fresh = ix._handles[2][1]
    assert fresh is not victim and all(i in fresh.entry.index for i in extra)
    ix.close()
    # Every replica saved; a new router reopens the index from the layout object.
    [layout] = read_layouts(store)
    again = ShardedIndex.attach(layout, LocalBackend(store, wal), store=store)
    try:
        assert again.count == 300 + len(extra)
        q = X[7]
        ref = VectorIndex(8)
        ref.add(ids, X)
        ref.add(extra, np.stack([again.get(i)[0] for i in extra]))
        assert_same_answer(again.search(q, 10), ref, q, 10)
        assert again.get("w7")[1] == {"n": 7}
    finally:
        again.drop()
    assert read_layouts(store) == []
    assert not list(store.iter_list("_vectors/_shards/w/s"))
