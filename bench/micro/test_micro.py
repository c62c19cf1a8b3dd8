"""Micro-benchmarks (pytest-benchmark): distance kernels per dimension, single add, single
search, the exact scan of a batch, serialise and load. Run with ``python -m bench micro`` (or ``pytest bench/micro``);
they are not part of the default test run (its testpaths is tests/).

Kernels: ``lakehouse._native.kernel_distance(isa, kind, a, b)`` for every kernel set this CPU
has, against numpy's ``np.dot`` on the same arrays; each call includes the Python call
overhead, which dominates at these sizes (the graph search calls the kernels from C++
without it): ``python -m bench micro`` also reports the slope between 128 and 1536
dimensions, out of which that overhead cancels. The index figures use an index of ``BENCH_MICRO_N`` (default 10,000) 128-d
euclidean items, M=16, ef_construction=200, and hnswlib for comparison where installed.

Exact scan: ``search_batch`` (k=10, one thread) over the demo's shape, 2,000 x 768 cosine
(under the default brute_force_threshold, so every query is an exact scan), for batches of
1, 4, 16 and 32 queries, with the store scanned once per tile of queries (``tiled``, the
default) and once per query (``per-query``: tile width 1, the code path from before tiles);
``python -m bench micro`` reports microseconds per query and the ratio of the two.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from lakehouse import VectorIndex, _native

DIMS = (128, 384, 768, 1536)
N = int(os.environ.get("BENCH_MICRO_N", "10000"))
#: single adds timed (each a new id)
ADD_ROUNDS = int(os.environ.get("BENCH_MICRO_ADD_ROUNDS", "2000"))
D = 128


def _pair(dims: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(dims)
    return rng.standard_normal(dims).astype(np.float32), rng.standard_normal(dims).astype(np.float32)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("kind", ["l2sq", "dot"])
@pytest.mark.parametrize("isa", _native.available_isas())
def test_kernel(benchmark, isa: str, kind: str, dims: int) -> None:
    a, b = _pair(dims)
    benchmark.group = f"kernel {kind} {dims}-d"
    benchmark.extra_info.update(isa=isa, kind=kind, dims=dims)
    got = benchmark(_native.kernel_distance, isa, kind, a, b)
    want = float(((a - b) ** 2).sum()) if kind == "l2sq" else float(a @ b)
    assert got == pytest.approx(want, rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("dims", DIMS)
def test_kernel_numpy_dot(benchmark, dims: int) -> None:
    a, b = _pair(dims)
    benchmark.group = f"kernel dot {dims}-d"
    benchmark.extra_info.update(isa="numpy", kind="dot", dims=dims)
    assert benchmark(np.dot, a, b) == pytest.approx(float(a @ b), rel=1e-4)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((max(10, N // 1000), D)).astype(np.float32) * 4
    x = centres[rng.integers(0, len(centres), N)] + rng.standard_normal((N, D)).astype(np.float32)
    fresh = x[rng.integers(0, N, 4096)] + 0.1 * rng.standard_normal((4096, D)).astype(np.float32)
    return x.astype(np.float32), fresh.astype(np.float32)


@pytest.fixture(scope="module")
def index(data) -> VectorIndex:
    x, _ = data
    ix = VectorIndex(D, distance="euclidean", m=16, ef_construction=200)
    ix.add([str(i) for i in range(len(x))], x)
    ix.set_threads(1)
    return ix


@pytest.fixture(scope="module")
def hnsw(data):
    hnswlib = pytest.importorskip("hnswlib", reason="hnswlib missing: no comparison")
    x, fresh = data
    ix = hnswlib.Index(space="l2", dim=D)
    ix.init_index(max_elements=len(x) + len(fresh), M=16, ef_construction=200, random_seed=1)
    ix.add_items(x, np.arange(len(x)))
    ix.set_num_threads(1)
    ix.set_ef(64)
    return ix


def test_single_search(benchmark, index, data) -> None:
    _, fresh = data
    rows = itertools.cycle(fresh)
    benchmark.group = "single search (k=10, ef=64)"
    benchmark.extra_info["library"] = "lakehouse"
    hits = benchmark(lambda: index.search(next(rows), k=10, ef=64))
    assert len(hits) == 10


def test_single_search_hnswlib(benchmark, hnsw, data) -> None:
    _, fresh = data
    rows = itertools.cycle(fresh)
    benchmark.group = "single search (k=10, ef=64)"
    benchmark.extra_info["library"] = "hnswlib"
    labels, _ = benchmark(lambda: hnsw.knn_query(next(rows), k=10))
    assert labels.shape == (1, 10)


def test_single_add(benchmark, index, data) -> None:
    # every round inserts a new id (an upsert of an unchanged vector would measure nothing):
    # as many rounds as fresh vectors, at most ADD_ROUNDS
    _, fresh = data
    counter = itertools.count()
    benchmark.group = "single add (ef_construction=200)"
    benchmark.extra_info["library"] = "lakehouse"
    before = len(index)

    def add() -> tuple[int, int]:
        i = next(counter)
        return index.add([f"fresh-{i}"], fresh[i : i + 1])

    added, _ = benchmark.pedantic(add, rounds=min(ADD_ROUNDS, len(fresh)), iterations=1)
    assert added == 1 and len(index) == before + min(ADD_ROUNDS, len(fresh))


def test_single_add_hnswlib(benchmark, hnsw, data) -> None:
    x, fresh = data
    counter = itertools.count()
    benchmark.group = "single add (ef_construction=200)"
    benchmark.extra_info["library"] = "hnswlib"

    def add() -> None:
        i = next(counter)
        hnsw.add_items(fresh[i : i + 1], np.array([len(x) + i]))

    benchmark.pedantic(add, rounds=min(ADD_ROUNDS, len(fresh)), iterations=1)
    assert hnsw.get_current_count() == len(x) + min(ADD_ROUNDS, len(fresh))


def test_serialise(benchmark, index) -> None:
    benchmark.group = "serialise / load (in memory)"
    benchmark.extra_info["library"] = "lakehouse"
    blob = benchmark(index.to_bytes)
    assert len(blob) > N * D * 4


def test_load(benchmark, index) -> None:
    blob = index.to_bytes()
    benchmark.group = "serialise / load (in memory)"
    benchmark.extra_info["library"] = "lakehouse"
    loaded = benchmark(VectorIndex.from_bytes, blob)
    assert len(loaded) == len(index)


def test_save_file(benchmark, index, tmp_path) -> None:
    path = tmp_path / "ix.lhv"
    benchmark.group = "save / load (file, no fsync)"
    benchmark.extra_info["library"] = "lakehouse"
    benchmark(index.save, path, False)
    assert path.stat().st_size > N * D * 4


def test_load_file(benchmark, index, tmp_path) -> None:
    path = tmp_path / "ix.lhv"
    index.save(path, durable=False)
    benchmark.group = "save / load (file, no fsync)"
    benchmark.extra_info["library"] = "lakehouse"
    loaded = benchmark(VectorIndex.load, path)
    assert len(loaded) == len(index)


def test_save_file_hnswlib(benchmark, hnsw, tmp_path) -> None:
    path = str(tmp_path / "ix.hnsw")
    benchmark.group = "save / load (file, no fsync)"
    benchmark.extra_info["library"] = "hnswlib"
    benchmark(hnsw.save_index, path)
    assert os.path.getsize(path) > N * D * 4


def test_load_file_hnswlib(benchmark, hnsw, tmp_path) -> None:
    import hnswlib

    path = str(tmp_path / "ix.hnsw")
    hnsw.save_index(path)
    benchmark.group = "save / load (file, no fsync)"
    benchmark.extra_info["library"] = "hnswlib"

    def load():
        ix = hnswlib.Index(space="l2", dim=D)
        ix.load_index(path)
        return ix

    loaded = benchmark(load)
    assert loaded.get_current_count() == hnsw.get_current_count()


EXACT_N, EXACT_D = 2000, 768
EXACT_BATCHES = (1, 4, 16, 32)


@pytest.fixture(scope="module")
def exact_index() -> tuple[VectorIndex, np.ndarray]:
    rng = np.random.default_rng(5)
    ix = VectorIndex(EXACT_D, distance="cosine")
    ix.add([str(i) for i in range(EXACT_N)], rng.standard_normal((EXACT_N, EXACT_D)).astype(np.float32))
    ix.set_threads(1)
    assert not ix.stats()["graph_built"]  # every search below is the exact scan
    return ix, rng.standard_normal((max(EXACT_BATCHES), EXACT_D)).astype(np.float32)


@pytest.mark.parametrize("scan", ["per-query", "tiled"])
@pytest.mark.parametrize("batch", EXACT_BATCHES)
def test_exact_search_batch(benchmark, exact_index, batch: int, scan: str) -> None:
    ix, queries = exact_index
    q = queries[:batch]
    width = _native.scan_tile()
    benchmark.group = f"exact search_batch {EXACT_N:,} x {EXACT_D} cosine, {batch} queries"
    benchmark.extra_info.update(scan=scan, batch=batch, tile=1 if scan == "per-query" else width)
    _native.set_scan_tile(1 if scan == "per-query" else width)
    try:
        ids, _ = benchmark(ix.search_batch, q, 10)
    finally:
        _native.set_scan_tile(width)
    assert len(ids) == batch and all(len(row) == 10 and "" not in row for row in ids)
