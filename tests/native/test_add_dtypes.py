"""Adding vectors of another dtype or layout (issue 18, item 2): float64, integer, bool and
strided arrays are converted to float32 by the core a bounded chunk at a time, and the index
ends up exactly as if the caller had passed the float32 array."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from lakehouse import VectorIndex


def same_index(a: VectorIndex, b: VectorIndex, keys: list[str], queries: np.ndarray) -> None:
    for k in keys:
        va, ma = a.get(k)
        vb, mb = b.get(k)
        assert np.array_equal(va, vb) and ma == mb
    ra, da = a.search_batch(queries, k=5)
    rb, db = b.search_batch(queries, k=5)
    assert ra == rb and np.array_equal(da, db)


def inputs(x64: np.ndarray) -> dict[str, np.ndarray]:
    wide = np.zeros((len(x64), x64.shape[1] * 2))
    wide[:, ::2] = x64
    return {
        "float64": x64,
        "float64 fortran": np.asfortranarray(x64),
        "float64 strided": wide[:, ::2],
        "float32 strided": wide.astype(np.float32)[:, ::2],
        "float32 reversed rows": x64.astype(np.float32)[::-1][::-1],
        "int16": (x64 * 50).astype(np.int16),
        "int64": (x64 * 50).astype(np.int64),
        "uint8": (np.abs(x64) * 40).astype(np.uint8) + 1,
        "bool": x64 > 0,
    }


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "dot"])
def test_other_dtypes_equal_a_float32_add(distance):
    rng = np.random.default_rng(3)
    # more rows than one conversion chunk (2**20 floats / 96 dims = 10,922 rows): the chunk
    # boundary is crossed, and the graph is built (threshold 0)
    x64 = rng.standard_normal((11_500, 96))
    keys = [f"k{i}" for i in range(len(x64))]
    for name, arr in inputs(x64[:300]).items():
        if distance == "cosine" and name in ("bool", "uint8"):
            arr = arr.copy()
            arr[:, 0] = True if name == "bool" else 1  # no zero vector
        ref = VectorIndex(96, distance=distance, brute_force_threshold=0, seed=1, threads=1)
        got = VectorIndex(96, distance=distance, brute_force_threshold=0, seed=1, threads=1)
        ref.add(keys[:300], np.ascontiguousarray(arr, dtype=np.float32))
        got.add(keys[:300], arr)
        same_index(ref, got, keys[:300], x64[:20].astype(np.float32))
    ref = VectorIndex(96, distance=distance, brute_force_threshold=10**9)
    got = VectorIndex(96, distance=distance, brute_force_threshold=10**9)
    ref.add(keys, x64.astype(np.float32))
    got.add(keys, x64)
    same_index(ref, got, keys[::97] + keys[10_900:11_000], x64[:20].astype(np.float32))


def test_float64_add_makes_no_full_copy():
    # numpy allocations are traced; the core's chunk buffer (4 MiB at most) is not a numpy
    # array. A float32 copy of this batch would be 25.6 MB.
    x = np.random.default_rng(1).standard_normal((200_000, 32))
    keys = [str(i) for i in range(len(x))]
    ix = VectorIndex(32, distance="euclidean", brute_force_threshold=10**9)
    tracemalloc.start()
    try:
        ix.add(keys, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    assert np.array_equal(ix.get("123456")[0], x[123456].astype(np.float32))


def test_out_of_float_range_and_bad_dtypes_are_refused():
    ix = VectorIndex(4, distance="euclidean")
    ix.add(["a"], np.ones((1, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        ix.add(["b", "c"], np.array([[1.0, 2, 3, 4], [1e300, 0, 0, 0]]))
    with pytest.raises(ValueError, match="numeric"):
        ix.add(["d"], np.array([["x", "y", "z", "w"]]))
    with pytest.raises(ValueError, match="shape"):
        ix.add(["e"], np.ones((1, 5), dtype=np.int32))
    assert len(ix) == 1
    # float16 and big-endian input still work (one float32 copy)
    ix.add(["f"], np.ones((1, 4), dtype=np.float16))
    ix.add(["g"], np.ones((1, 4), dtype=">f8") * 2)
    assert np.array_equal(ix.get("g")[0], np.full(4, 2, np.float32))
