"""The tiled exact scan (native/include/lakehouse/scan.h): a batch of searches scanned
together answers exactly what one search at a time does, and what numpy's brute force does.

- Each tile kernel gives, bit for bit, the distance of the one-query kernel of its kernel
  set (the accumulation order is the same), for any dimension and tile size.
- search_batch (tiles of any width, on one or two threads) equals search of the same query
  (same ids, ties by slot; same distances) and a float64 brute force, for all three
  distances, with exclude_ids, deletes and reused slots, k above the live count, and
  (below) while other threads add.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lakehouse import VectorIndex, _native

from .conftest import brute_force

ISAS = _native.available_isas()
DISTANCES = ["cosine", "euclidean", "dot"]


@pytest.fixture
def tile():
    """Sets the process-wide tile width for one test and puts the old one back."""
    before = _native.scan_tile()
    yield _native.set_scan_tile
    _native.set_scan_tile(before)


def test_default_tile_is_several_queries():
    assert _native.scan_tile() > 1


@pytest.mark.parametrize("isa", ISAS)
@given(
    data=st.tuples(st.integers(1, 16), st.integers(1, 300)).flatmap(
        lambda nd: st.tuples(
            hnp.arrays(np.float32, nd, elements=st.floats(-100, 100, width=32)),
            hnp.arrays(np.float32, nd[1], elements=st.floats(-100, 100, width=32)),
        )
    )
)
@settings(max_examples=60, deadline=None)
def test_tile_kernels_are_the_one_query_kernels_bit_for_bit(isa, data):
    queries, x = data
    for kind in ("l2sq", "ip_distance"):
        got = _native.scan_kernel_distances(isa, kind, queries, x)
        want = np.array([_native.kernel_distance(isa, kind, q, x) for q in queries], np.float32)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dims", [1, 15, 16, 17, 31, 32, 33, 40, 384, 768, 1536])
def test_tile_kernels_at_every_tile_size(isa, dims):
    rng = np.random.default_rng(dims)
    x = rng.standard_normal(dims).astype(np.float32)
    queries = rng.standard_normal((16, dims)).astype(np.float32)
    for n in range(1, 17):
        for kind in ("l2sq", "ip_distance"):
            got = _native.scan_kernel_distances(isa, kind, queries[:n], x)
            want = [_native.kernel_distance(isa, kind, q, x) for q in queries[:n]]
            np.testing.assert_array_equal(got, np.array(want, np.float32))


def test_scan_kernel_hook_rejects_bad_calls():
    q, x = np.ones((2, 4), np.float32), np.ones(4, np.float32)
    for bad in (
        lambda: _native.scan_kernel_distances("neon9000", "l2sq", q, x),
        lambda: _native.scan_kernel_distances("scalar", "cosine?", q, x),
        lambda: _native.scan_kernel_distances("scalar", "l2sq", np.ones((17, 4), np.float32), x),
        lambda: _native.scan_kernel_distances("scalar", "l2sq", q, np.ones(3, np.float32)),
    ):
        with pytest.raises(ValueError):
            bad()


def true_distances(stored: dict[str, np.ndarray], q: np.ndarray, distance: str) -> dict[str, float]:
    if not stored:
        return {}
    ids = list(stored)
    idx, dist = brute_force(np.stack([stored[i] for i in ids]), q[None, :], len(ids), distance)
    return {ids[j]: float(d) for j, d in zip(idx[0], dist[0], strict=True)}


def check_batch(ix: VectorIndex, stored: dict[str, np.ndarray], queries: np.ndarray, k: int,
                exclude: list[str], distance: str) -> None:
    """search_batch == search (ids and distances) == brute force (distances, and each hit's
    own true distance), padded past the eligible count."""
    found, dist = ix.search_batch(queries, k=k, exclude_ids=exclude)
    assert dist.shape == (len(queries), k)
    for row_ids, row_d, q in zip(found, dist, queries, strict=True):
        single = ix.search(q, k=k, exclude_ids=exclude)
        n = len(single)
        assert row_ids[:n] == [h.id for h in single]
        assert row_ids[n:] == [""] * (k - n) and np.isinf(row_d[n:]).all()
        # the same kernel, the same order: the very same float
        np.testing.assert_array_equal(row_d[:n], np.array([h.distance for h in single], np.float32))
        truth = {i: d for i, d in true_distances(stored, q, distance).items() if i not in set(exclude)}
        assert n == min(k, len(truth))
        np.testing.assert_allclose(row_d[:n], sorted(truth.values())[:n], rtol=1e-5, atol=1e-5)
        for item, d in zip(row_ids[:n], row_d[:n], strict=True):
            assert abs(d - truth[item]) <= 1e-5 * (1 + abs(truth[item]))


values = st.one_of(
    st.integers(-3, 3).map(float),  # small integers: exact ties, broken by slot
    st.floats(-10, 10, width=32),
)


@given(
    distance=st.sampled_from(DISTANCES),
    dims=st.sampled_from([1, 3, 16, 33]),
    n=st.integers(0, 40),
    deletes=st.integers(0, 20),
    readd=st.integers(0, 10),
    nq=st.integers(1, 20),
    k=st.integers(1, 50),
    n_exclude=st.integers(0, 8),
    width=st.sampled_from([1, 2, 3, 8, 16]),
    threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
@settings(max_examples=80, deadline=None)
def test_batch_equals_single_equals_brute_force(distance, dims, n, deletes, readd, nq, k,
                                               n_exclude, width, threads, seed, data):
    rng = np.random.default_rng(seed)
    vec = hnp.arrays(np.float32, dims, elements=values).filter(lambda v: bool(np.any(v)))
    ix = VectorIndex(dims, distance=distance, threads=threads)
    stored: dict[str, np.ndarray] = {}
    if n:
        x = np.stack([data.draw(vec) for _ in range(n)])
        ids = [f"i{j}" for j in range(n)]
        ix.add(ids, x)
        stored.update(zip(ids, x, strict=True))
        # tombstones, then adds that reuse their slots
        gone = [f"i{j}" for j in rng.choice(n, min(deletes, n), replace=False)]
        ix.delete(gone)
        for g in gone:
            stored.pop(g)
        if readd:
            y = np.stack([data.draw(vec) for _ in range(readd)])
            new = [f"r{j}" for j in range(readd)]
            ix.add(new, y)
            stored.update(zip(new, y, strict=True))
    exclude = [f"i{j}" for j in rng.integers(0, max(n, 1), n_exclude)] + ["absent"]
    queries = np.stack([data.draw(vec) for _ in range(nq)])
    before = _native.scan_tile()
    _native.set_scan_tile(width)
    try:
        check_batch(ix, stored, queries, k, exclude, distance)
    finally:
        _native.set_scan_tile(before)


@pytest.mark.parametrize("distance", DISTANCES)
def test_batch_at_768_dims_matches_brute_force(distance, tile):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 768)).astype(np.float32)
    ids = [f"w{i}" for i in range(len(x))]
    ix = VectorIndex(768, distance=distance, threads=2)
    ix.add(ids, x)
    q = rng.standard_normal((21, 768)).astype(np.float32)
    idx, dist = brute_force(x, q, 10, distance)
    per_query = ix.search_batch(q, k=10)
    tile(1)
    assert ix.search_batch(q, k=10)[0] == per_query[0]
    np.testing.assert_array_equal(ix.search_batch(q, k=10)[1], per_query[1])
    assert per_query[0] == [[ids[j] for j in row] for row in idx]
    np.testing.assert_allclose(per_query[1], dist, rtol=1e-5, atol=1e-5)


def test_graph_fallback_is_scanned_in_tiles(tile):
    # Above the threshold a graph answer cut short by exclusions falls back to the exact
    # scan; in a batch those queries share tiles, and the answer is still the exact one.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 12)).astype(np.float32)
    ids = [f"w{i}" for i in range(len(x))]
    ix = VectorIndex(12, distance="euclidean", brute_force_threshold=0, ef_search=4)
    ix.add(ids, x)
    exclude = ids[:390]
    q = rng.standard_normal((12, 12)).astype(np.float32)
    stored = dict(zip(ids, x, strict=True))
    for width in (1, 8):
        tile(width)
        check_batch(ix, stored, q, 10, exclude, "euclidean")


@pytest.mark.parametrize("distance", DISTANCES)
def test_batch_is_exact_while_other_threads_add(distance):
    # Each answer is exact over the items present when its tile was scanned: a superset of
    # the base set. So every base item closer than a row's last hit is in that row, and every
    # hit carries its own true distance (an id's vector never changes here).
    dims = 24
    rng = np.random.default_rng(11)
    base = rng.standard_normal((500, dims)).astype(np.float32)
    ix = VectorIndex(dims, distance=distance, threads=2)
    ix.add([f"b{i}" for i in range(len(base))], base)
    extra = rng.standard_normal((1500, dims)).astype(np.float32)
    vectors = {f"b{i}": v for i, v in enumerate(base)} | {f"a{i}": v for i, v in enumerate(extra)}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for start in range(0, len(extra), 25):
                if stop.is_set():
                    return
                ix.add([f"a{i}" for i in range(start, start + 25)], extra[start : start + 25])
                ix.delete([f"a{start}"])  # tombstones and slot reuse under the scans
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    base_ids = [f"b{i}" for i in range(len(base))]
    exclude = base_ids[:5]
    try:
        for _ in range(15):
            q = rng.standard_normal((19, dims)).astype(np.float32)
            found, dist = ix.search_batch(q, k=10, exclude_ids=exclude)
            for row_ids, row_d, qi in zip(found, dist, q, strict=True):
                assert "" not in row_ids and not set(row_ids) & set(exclude)
                assert list(row_d) == sorted(row_d) and len(set(row_ids)) == 10
                truth = true_distances({i: vectors[i] for i in row_ids}, qi, distance)
                for item, d in zip(row_ids, row_d, strict=True):
                    assert abs(d - truth[item]) <= 1e-5 * (1 + abs(truth[item]))
                base_truth = true_distances({i: vectors[i] for i in base_ids[5:]}, qi, distance)
                closer = {i for i, d in base_truth.items() if d < row_d[-1] - 1e-5}
                assert closer <= set(row_ids)
    finally:
        stop.set()
        t.join()
    assert not errors
