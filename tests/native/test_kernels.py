"""Every SIMD kernel set this CPU has agrees with numpy, for any dimension."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lakehouse import _native

ISAS = _native.available_isas()


def test_best_kernel_is_one_of_the_available():
    assert _native.simd_isa() in ISAS and "scalar" in ISAS


@pytest.mark.parametrize("isa", ISAS)
@given(
    data=st.integers(1, 1600).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, n, elements=st.floats(-100, 100, width=32)),
            hnp.arrays(np.float32, n, elements=st.floats(-100, 100, width=32)),
        )
    )
)
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
