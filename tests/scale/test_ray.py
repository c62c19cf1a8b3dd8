"""The sharded index with its replicas as Ray actors on a local 3-node cluster (tox -e ray):
a 4-shard x 2-replica index answers exactly like one index below the brute-force threshold
and within 0.01 recall@10 above it; killing a replica's process under a search + add load
loses no acknowledged write and fails no search after a bounded retry."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from scalekit import assert_same_answer, needs_ray

from lakehouse.data.storage import LocalStore
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.registry import IndexParams

pytestmark = [pytest.mark.ray, needs_ray, pytest.mark.timeout(240)]


@pytest.fixture
def sharded(ray_cluster: str, tmp_path: Path):
    from lakehouse.scale import ShardedIndex
    from lakehouse.scale.ray_backend import RayBackend

    made = []

    def make(name: str, dims: int, shards: int = 4, replicas: int = 2, **kw):
        store = LocalStore(tmp_path / "objects")
        backend = RayBackend(
            functools.partial(LocalStore, tmp_path / "objects"), str(tmp_path / "wal"),
            durability="os", save_min_interval=0.5,
        )
        ix = ShardedIndex.create(IndexParams(name, dims), shards, replicas, backend, store=store, **kw)
        made.append(ix)
        return ix, backend

    yield make
    for ix in made:
        ix.drop()


def test_spread_over_the_nodes(sharded) -> None:
    import ray

    ix, backend = sharded("spread", 8, shards=3, replicas=2)
    nodes = ray.get([h.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
                     for row in ix._handles for h in row])
    assert len(ray.nodes()) == 3
    assert len(set(nodes)) >= 2  # SPREAD: replicas are not all on one node


def test_four_by_two_answers_like_one_index(sharded) -> None:
    rng = np.random.default_rng(1)
    dims = 32
    ix, _ = sharded("exact", dims)
    # Below the brute-force threshold (2048 per index): both are exact scans.
    X = rng.normal(size=(1500, dims)).astype(np.float32)
    ids = [f"w{i}" for i in range(len(X))]
    ref = VectorIndex(dims)
    assert ix.add(ids, X, [{"n": i} for i in range(len(X))]) == ref.add(ids, X)
    queries = rng.normal(size=(40, dims)).astype(np.float32)
    for q in queries[:20]:
        assert_same_answer(ix.search(q, 10, exclude_ids=ids[:50]), ref, q, 10, ids[:50])
    for q, row in zip(queries, ix.search_batch(queries, 10), strict=True):
        assert_same_answer(row, ref, q, 10)
    assert ix.get("w42")[1] == {"n": 42}


def test_recall_above_the_threshold(sharded) -> None:
    rng = np.random.default_rng(2)
    dims = 32
    n = 12_000  # each shard holds ~3,000: past the threshold, every shard searches a graph
    ix, _ = sharded("recall", dims)
    X = rng.normal(size=(n, dims)).astype(np.float32)
    ids = [f"w{i}" for i in range(n)]
    single = VectorIndex(dims)
    for start in range(0, n, 3000):
        ix.add(ids[start : start + 3000], X[start : start + 3000])
    single.add(ids, X)
    assert single.stats()["graph_built"]
    queries = rng.normal(size=(200, dims)).astype(np.float32)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ Xn.T), axis=1)[:, :10]

    def recall(rows) -> float:
        hit = sum(len({ids[j] for j in t} & {h.id for h in row}) for t, row in zip(truth, rows, strict=True))
        return hit / truth.size

    sharded_recall = recall(ix.search_batch(queries, 10, ef=32))
    single_recall = recall([single.search(q, 10, ef=32) for q in queries])
    assert sharded_recall >= single_recall - 0.01, (sharded_recall, single_recall)


def test_killing_a_replica_under_load_loses_nothing(sharded) -> None:
    from lakehouse.scale import ShardUnavailable, shard_of, wait_in_sync

    rng = np.random.default_rng(3)
    dims = 16
    ix, backend = sharded("crash", dims, heal_interval=0.5)
    ix.add([f"seed{i}" for i in range(200)], rng.normal(size=(200, dims)))
    acknowledged: list[str] = []
    failures: list[str] = []
    searches = [0]
    stop = threading.Event()

    def retrying(fn):
        # The bounded retry a client makes: a few attempts a little apart.
        for attempt in range(20):
            try:
                return fn()
            except ShardUnavailable:
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("still unavailable after the bounded retry")

    def writer() -> None:
        n = 0
        local = np.random.default_rng(4)
        while not stop.is_set():
            batch = [f"w{n + i}" for i in range(20)]
            try:
                retrying(lambda b=batch: ix.add(b, local.normal(size=(20, dims))))
            except Exception as exc:  # noqa: BLE001 - the test reports it
                failures.append(f"add: {exc!r}")
                return
            acknowledged.extend(batch)
            n += 20

    def searcher() -> None:
        local = np.random.default_rng(5)
        while not stop.is_set():
            try:
                got = retrying(lambda: ix.search(local.normal(size=dims).astype(np.float32), 10))
                assert len(got) == 10
                searches[0] += 1
            except Exception as exc:  # noqa: BLE001
                failures.append(f"search: {exc!r}")
                return

    threads = [threading.Thread(target=writer), threading.Thread(target=searcher)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        victim_pid = backend.pid(ix._handles[1][0])
        os.kill(victim_pid, signal.SIGKILL)
        time.sleep(4.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures
    assert searches[0] > 10 and len(acknowledged) > 100
    assert ix.failovers + ix.heals >= 1 or ix.out_of_sync()  # the kill was noticed
    assert wait_in_sync(ix, 60), ix.out_of_sync()
    assert ix.heals >= 1
    # Every acknowledged write is on every replica of its shard (the killed one caught up).
    for item in acknowledged[::7] + acknowledged[-5:]:
        s = shard_of(item, 4)
        for r in range(2):
            got = backend.results([backend.call(ix._handles[s][r], "get", item)], 30)[0]
            assert got is not None and not isinstance(got, BaseException), (item, s, r, got)
    assert ix.count == 200 + len(acknowledged)


def test_a_corpus_builds_through_a_ray_data_pipeline(sharded) -> None:
    from lakehouse.embed.hashing import hash_embed
    from lakehouse.scale.pipeline import build_corpus

    ix, _ = sharded("corpus", 64, shards=2, replicas=2)
    roles = ["picker", "packer", "driver", "forklift operator"]
    rows = [{"id": f"w{i}", "text": f"{roles[i % 4]} with {i % 7} years in zone {i % 5}", "role": roles[i % 4]}
            for i in range(600)]
    rows.append({"id": "", "text": "no id", "role": "x"})
    stats = build_corpus(ix, rows, dimension=64, metadata_columns=["role"], batch_size=100,
                         concurrency=2, progress=False)
    assert stats == {**stats, "rows": 601, "added": 600, "updated": 0, "skipped": 1}
    assert ix.count == 600
    # The vectors are the hash embedder's, byte for byte: the pipeline embedded each row's text.
    vec, meta = ix.get("w123")
    assert np.allclose(vec, hash_embed([rows[123]["text"]], 64)[0])
    assert meta == orjson.dumps({"role": roles[123 % 4]})  # raw JSON bytes, as vectord keeps them
    with pytest.raises(ValueError, match="provider"):
        build_corpus(ix, rows, provider="nope")
