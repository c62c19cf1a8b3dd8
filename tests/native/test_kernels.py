"""Every SIMD kernel set this CPU has agrees with numpy, for any dimension."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lakehouse import _native

ISAS = _native.available_isas()


def vector_pairs(max_n: int) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two float32 vectors of one length (1 to max_n), entries in [-100, 100]."""
    return st.integers(1, max_n).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, n, elements=st.floats(-100, 100, width=32)),
            hnp.arrays(np.float32, n, elements=st.floats(-100, 100, width=32)),
        )
    )


def test_best_kernel_is_one_of_the_available():
    assert _native.simd_isa() in ISAS and "scalar" in ISAS


@pytest.mark.parametrize("isa", ISAS)
@given(data=vector_pairs(1600))
def test_kernels_match_numpy(isa, data):
    a, b = data
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    tol = 1e-4 * (1 + float(np.abs(a64).sum() * np.abs(b64).max()))
    assert abs(_native.kernel_distance(isa, "l2sq", a, b) - ((a64 - b64) ** 2).sum()) <= 1e-4 * (1 + ((a64 - b64) ** 2).sum())
    assert abs(_native.kernel_distance(isa, "dot", a, b) - a64 @ b64) <= tol
    assert abs(_native.kernel_distance(isa, "ip_distance", a, b) - (1 - a64 @ b64)) <= tol


@pytest.mark.parametrize("dims", [1, 7, 8, 31, 32, 33, 128, 384, 768, 1536])
def test_kernel_sets_agree(dims):
    rng = np.random.default_rng(dims)
    a, b = rng.standard_normal((2, dims)).astype(np.float32)
    ref = _native.kernel_distance("scalar", "l2sq", a, b)
    for isa in ISAS:
        assert _native.kernel_distance(isa, "l2sq", a, b) == pytest.approx(ref, rel=1e-5)


def test_unknown_kernel_set():
    a = np.ones(4, np.float32)
    with pytest.raises(ValueError):
        _native.kernel_distance("neon9000", "l2sq", a, a)
    with pytest.raises(ValueError):
        _native.kernel_distance("scalar", "cosine?", a, a)


@pytest.mark.parametrize("isa", ISAS)
@given(pair=vector_pairs(800), frac=st.floats(0, 2.0))
def test_bounded_l2sq_decides_as_the_full_kernel(isa, pair, frac):
    """l2sq_bounded is l2sq bit for bit, or gives up with a running sum past the bound, and
    then the full sum is past it too: a caller keeping only what beats the bound keeps the
    same vectors either way."""
    a, b = pair
    full = _native.kernel_distance(isa, "l2sq", a, b)
    bound = np.float32(full * frac)  # below, at and above the full sum
    got = _native.kernel_distance(isa, "l2sq_bounded", a, b, float(bound))
    if got != full:
        assert got > bound and full > bound
        assert got <= full
    assert (got < bound) == (full < bound)
    assert _native.kernel_distance(isa, "l2sq_bounded", a, b) == full  # no bound: the whole sum


@pytest.mark.parametrize("isa", ISAS)
def test_bounded_l2sq_stops_early(isa):
    """A vector that is far off in its first floats is given up on before its end: the
    running sum already passes the bound, so the partial sum comes back, not the whole."""
    a = np.zeros(384, np.float32)
    b = np.zeros(384, np.float32)
    b[:64] = 1.0  # 64 from the first stride alone
    b[64:] = 0.5  # 80 more after it
    full = _native.kernel_distance(isa, "l2sq", a, b)
    assert full == 64 + 320 * 0.25
    assert _native.kernel_distance(isa, "l2sq_bounded", a, b, 10.0) == 64.0
    # looks after 64, 128, 192, 256 floats: 64, 80, 96, 112 > 100
    assert _native.kernel_distance(isa, "l2sq_bounded", a, b, 100.0) == 64 + 0.25 * 192
    assert _native.kernel_distance(isa, "l2sq_bounded", a, b, 144.0) == full
