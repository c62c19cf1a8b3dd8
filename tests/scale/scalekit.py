"""Helpers shared by the tests of lakehouse.scale."""

from __future__ import annotations

import numpy as np
import pytest

from lakehouse.vectors.index import VectorIndex

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(
    not HAVE_RAY, reason="needs the ray extra (pip install 'lakehouse[ray]'; tox -e ray)"
)



def assert_same_answer(got, ref: VectorIndex, query, k, exclude=None) -> None:
    """``got`` is a correct top-k of ``ref`` (an exact scan below the brute-force
    threshold): the same distances, and each hit's distance is that item's true distance
    (ties may come in another order)."""
    want = ref.search(query, k, exclude_ids=exclude)
    everything = {h.id: h.distance for h in ref.search(query, max(1, len(ref)), exclude_ids=exclude)}
    assert len(got) == len(want)
    np.testing.assert_allclose([h.distance for h in got], [h.distance for h in want], rtol=1e-5, atol=1e-6)
    assert len({h.id for h in got}) == len(got)
    for h in got:
        assert h.id in everything
        assert abs(h.distance - everything[h.id]) <= 1e-5
