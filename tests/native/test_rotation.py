"""The rotation (docs/vectord.md, "The rotation"): an index past its exact scan stores its
vectors turned onto their principal axes, and no caller can tell, beyond float rounding:
answers, distances, stored vectors, persistence and refusals are those of an unrotated index."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse import VectorIndex, _native
from lakehouse.vectors import rotation

from .conftest import brute_force, clustered

DIMS = 128


def twins(distance: str, n: int = 1500, threshold: int = 1000) -> tuple[VectorIndex, VectorIndex, np.ndarray]:
    """The same items in a rotated index and in one made with rotate=False."""
    x = clustered(n, DIMS, seed=3)
    ids = [f"i{j}" for j in range(n)]
    rotated = VectorIndex(DIMS, distance=distance, brute_force_threshold=threshold, seed=1)
    plain = VectorIndex(DIMS, distance=distance, brute_force_threshold=threshold, seed=1, rotate=False)
    for ix in (rotated, plain):
        ix.add(ids[:600], x[:600])  # below the threshold: nothing to rotate yet
        assert not ix.stats()["rotated"]
        ix.add(ids[600:], x[600:])
    assert rotated.stats()["rotated"] and not plain.stats()["rotated"]
    return rotated, plain, x


def test_fit_is_orthonormal_with_the_largest_variance_first():
    x = clustered(3000, DIMS, seed=5) * np.linspace(3, 0.1, DIMS, dtype=np.float32)
    r = rotation.fit(rotation.chunks(x), normalise=False)
    assert r.dtype == np.float32 and r.shape == (DIMS, DIMS)
    np.testing.assert_allclose(r.astype(np.float64) @ r.T.astype(np.float64), np.eye(DIMS), atol=1e-5)
    spread = (x.astype(np.float64) @ r.T.astype(np.float64)).var(axis=0)
    assert (np.diff(spread) <= 1e-6 * spread[0]).all()  # non-increasing
    # chunked or whole, the same rows give the same matrix (to summation order); again, bit for bit
    np.testing.assert_allclose(r, rotation.fit([x], normalise=False), atol=1e-6)
    np.testing.assert_array_equal(r, rotation.fit(rotation.chunks(x), normalise=False))
    with pytest.raises(ValueError):
        rotation.fit([x[:1]], normalise=False)
    with pytest.raises(ValueError):
        rotation.fit([], normalise=False)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_a_rotated_index_answers_as_an_unrotated_one(distance):
    rotated, plain, x = twins(distance)
    queries = clustered(60, DIMS, seed=9)
    truth, truth_d = brute_force(x, queries, 10, distance)
    for ix in (rotated, plain):
        ids, dist = ix.search_batch(queries, k=10, ef=200)
        got = np.array([[int(i[1:]) for i in row] for row in ids])
        assert (got[:, 0] == truth[:, 0]).mean() >= 0.98
        np.testing.assert_allclose(dist, truth_d, rtol=1e-4, atol=1e-4)
    a, da = rotated.search_batch(queries, k=10, ef=200)
    b, db = plain.search_batch(queries, k=10, ef=200)
    assert np.mean([len(set(u) & set(v)) / 10 for u, v in zip(a, b, strict=True)]) >= 0.99
    np.testing.assert_allclose(da, db, rtol=1e-5, atol=1e-5)
    # every item found by its own vector, first, at distance ~0
    for j in range(0, len(x), 37):
        hit = rotated.search(x[j], k=1)[0]
        assert hit.id == f"i{j}" and hit.distance < 1e-5


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_get_turns_the_vector_back(distance):
    rotated, plain, x = twins(distance)
    for j in (0, 599, 600, 1499):
        want, meta = plain.get(f"i{j}")
        got, _ = rotated.get(f"i{j}")
        assert got.dtype == np.float32 and meta is None
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(np.abs(want).max()) + 1e-7)
    # rotate=False keeps the vectors bit for bit
    if distance == "euclidean":
        assert np.array_equal(plain.get("i7")[0], x[7])


def test_an_unchanged_upsert_stays_unchanged():
    rotated, _, x = twins("cosine")
    before = rotated.stats()
    assert rotated.add(["i5", "i700"], x[[5, 700]]) == (0, 2)
    after = rotated.stats()
    assert after["tombstones"] == before["tombstones"] and after["slots"] == before["slots"]


def test_persistence_keeps_the_rotation_and_the_choice(tmp_path):
    rotated, plain, x = twins("euclidean")
    blob = rotated.to_bytes()
    assert struct.unpack("<II", blob[8:16]) == (2, 0)  # version 2: a rotation follows the params
    clone = VectorIndex.from_bytes(blob)
    assert clone.stats()["rotated"] and clone.to_bytes() == blob
    q = clustered(10, DIMS, seed=11)
    (ci, cd), (ri, rd) = clone.search_batch(q, k=5), rotated.search_batch(q, k=5)
    assert ci == ri and np.array_equal(cd, rd)
    np.testing.assert_array_equal(clone.get("i3")[0], rotated.get("i3")[0])
    # an unrotated index is still written as version 1; rotate=False is kept (flag bit 0)
    pblob = plain.to_bytes()
    assert struct.unpack("<II", pblob[8:16]) == (1, 1)
    back = VectorIndex.from_bytes(pblob)
    back.add([f"n{j}" for j in range(2000)], clustered(2000, DIMS, seed=12))
    assert not back.stats()["rotated"]
    fresh = VectorIndex(DIMS, distance="euclidean")
    assert struct.unpack("<II", fresh.to_bytes()[8:16]) == (1, 0)


def test_a_corrupt_rotation_is_refused():
    rotated, _, _ = twins("euclidean")
    blob = bytearray(rotated.to_bytes())
    rot_at = 12 + 4 + 6 * 4 + 8  # after version, flags, six u32 params and the seed
    struct.pack_into("<f", blob, rot_at, 3.0)  # row 0 no longer has norm 1
    struct.pack_into("<I", blob, len(blob) - 12, _native.crc32c(bytes(blob[:-12])))
    with pytest.raises(ValueError, match="rotation"):
        VectorIndex.from_bytes(bytes(blob))
    flags = bytearray(rotated.to_bytes())
    struct.pack_into("<I", flags, 12, 4)  # an unknown flag bit
    struct.pack_into("<I", flags, len(flags) - 12, _native.crc32c(bytes(flags[:-12])))
    with pytest.raises(ValueError, match="flags"):
        VectorIndex.from_bytes(bytes(flags))


def test_a_refused_batch_sets_no_rotation():
    ix = VectorIndex(DIMS, distance="cosine", brute_force_threshold=100)
    x = clustered(1200, DIMS, seed=2)
    x[1100, 5] = np.nan
    with pytest.raises(ValueError, match="item 1100"):
        ix.add([f"i{j}" for j in range(1200)], x)
    x[1100] = 0
    with pytest.raises(ValueError, match="zero vector"):
        ix.add([f"i{j}" for j in range(1200)], x)
    assert len(ix) == 0 and not ix.stats()["rotated"]


@pytest.mark.parametrize(("distance", "dims"), [("dot", 128), ("cosine", 64), ("euclidean", 96), ("cosine", 768)])
def test_kinds_that_gain_nothing_are_not_rotated(distance, dims):
    ix = VectorIndex(dims, distance=distance, brute_force_threshold=100)
    ix.add([str(j) for j in range(1500)], clustered(1500, dims, seed=1))
    assert not ix.stats()["rotated"]


def test_set_rotation_refuses_bad_matrices_and_changes_nothing():
    ix = VectorIndex(DIMS, distance="euclidean", brute_force_threshold=10**6)
    x = clustered(50, DIMS, seed=1)
    ix.add([str(j) for j in range(50)], x)
    good = rotation.fit([x], normalise=False)
    for bad, match in [
        (good[:10], "128 x 128"),
        (good * 2, "norm 1"),
        (np.where(np.eye(DIMS, dtype=bool), np.nan, good).astype(np.float32), "finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            ix._ix.set_rotation(bad)
        assert not ix.stats()["rotated"] and np.array_equal(ix.get("3")[0], x[3])
    plain = VectorIndex(DIMS, distance="euclidean", rotate=False)
    with pytest.raises(ValueError, match="rotate=False"):
        plain._ix.set_rotation(good)
    with pytest.raises(ValueError, match="rotate"):
        VectorIndex(DIMS, rotate="yes")  # type: ignore[arg-type]


def test_searches_during_a_rotation_stay_right():
    """A query is turned inside the lock its search holds: a search racing set_rotation sees
    the store and the query under the same rotation, so an item's own vector finds it."""
    x = clustered(3000, DIMS, seed=6)
    ix = VectorIndex(DIMS, distance="euclidean", brute_force_threshold=500, threads=1)
    ix.add([str(j) for j in range(len(x))], x)
    mats = [rotation.fit([x[k::3]], normalise=False) for k in range(3)]
    stop = threading.Event()
    errors: list[str] = []

    def searcher(offset: int) -> None:
        j = offset
        while not stop.is_set():
            got = ix.search(x[j], k=1)[0].id if j % 2 else ix.search_batch(x[j : j + 1], k=1)[0][0][0]
            if got != str(j):
                errors.append(f"{j} -> {got}")
            j = (j + 7) % len(x)

    threads = [threading.Thread(target=searcher, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        for r in mats * 3:
            ix._ix.set_rotation(r)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert ix.stats()["unreachable"] == 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    cut=st.integers(0, 120),
    distance=st.sampled_from(["cosine", "euclidean"]),
)
def test_rotation_at_any_point_changes_no_exact_answer(seed, cut, distance):
    """Items added, some before and some after a rotation (any orthogonal matrix), then
    deleted and re-added: the exact scan's answers are those of an unrotated twin."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((160, DIMS)).astype(np.float32)
    ids = [str(j) for j in range(len(x))]
    r = np.linalg.qr(rng.standard_normal((DIMS, DIMS)))[0].T.astype(np.float32)
    a = VectorIndex(DIMS, distance=distance, brute_force_threshold=10**6)
    b = VectorIndex(DIMS, distance=distance, brute_force_threshold=10**6, rotate=False)
    for ix in (a, b):
        ix.add(ids[:cut], x[:cut])
    a._ix.set_rotation(r)
    for ix in (a, b):
        ix.add(ids[cut:], x[cut:])
        ix.delete(ids[::5])
        ix.add(ids[::10], x[::10] * 2)
    q = rng.standard_normal((8, DIMS)).astype(np.float32)
    ia, da = a.search_batch(q, k=5)
    ib, db = b.search_batch(q, k=5)
    np.testing.assert_allclose(da, db, rtol=1e-5, atol=1e-5)
    for u, v, dv in zip(ia, ib, db, strict=True):
        # the same ids, but for near-ties that float rounding may order either way
        differ = [i for i, (s, t) in enumerate(zip(u, v, strict=True)) if s != t]
        assert all(np.isclose(dv[i], dv[min(i + 1, 4)], rtol=1e-5) or np.isclose(dv[i], dv[max(i - 1, 0)], rtol=1e-5)
                   for i in differ)
