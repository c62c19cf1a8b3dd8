"""PSI distribution drift and scorer drift."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.distill.drift import (
    EPSILON,
    compute_distribution_drift,
    compute_scorer_drift,
    psi_tier,
)


def test_tier_boundaries():
    assert psi_tier(0.0) == "stable" and psi_tier(0.0999) == "stable"
    assert psi_tier(0.10) == "minor" and psi_tier(0.2499) == "minor"
    assert psi_tier(0.25) == "major" and psi_tier(3.0) == "major"


def test_identical_is_stable():
    x = list(np.random.default_rng(1).normal(size=1000))
    r = compute_distribution_drift(x, x)
    assert r["psi"] == 0.0 and r["tier"] == "stable" and r["num_buckets"] == 10


def test_hard_shift_is_major():
    rng = np.random.default_rng(2)
    r = compute_distribution_drift(rng.normal(0, 1, 2000), rng.normal(3, 1, 2000))
    assert r["tier"] == "major" and r["psi"] > 1.0


def test_moderate_shift_is_detected():
    rng = np.random.default_rng(3)
    r = compute_distribution_drift(rng.normal(0, 1, 20000), rng.normal(0.35, 1, 20000))
    assert r["tier"] in ("minor", "major") and r["psi"] >= 0.10


def test_hand_computed_psi_with_an_empty_bucket():
    # range 0..4 in 2 buckets: [0, 2) and [2, 4]
    r = compute_distribution_drift([0, 1, 1, 3], [3, 3, 4, 4], buckets=2)
    e, a = [0.75, 0.25], [EPSILON, 1.0]  # the empty actual bucket is clamped
    expected = sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True))
    assert r["psi"] == pytest.approx(expected)
    b0, b1 = r["buckets"]
    assert (b0["lower"], b0["upper"], b1["lower"], b1["upper"]) == (0, 2, 2, 4)
    assert (b0["expected_count"], b0["actual_count"], b1["expected_count"], b1["actual_count"]) == (3, 0, 1, 4)
    assert b0["actual_share"] == 0.0  # the reported share is the true one
    assert r["tier"] == "major"
    msgspec.json.encode(r)  # plain Python numbers only (numpy scalars do not serialise)


def test_empty_and_constant_inputs_are_safe():
    r = compute_distribution_drift([], [1, 2])
    assert r["psi"] == 0.0 and r["tier"] == "stable" and "note" in r and r["n_expected"] == 0
    r = compute_distribution_drift([5, 5, 5], [5, 5])
    assert r["psi"] == 0.0 and len(r["buckets"]) == 1 and r["buckets"][0]["actual_count"] == 2


def test_bucket_count_is_clamped():
    assert compute_distribution_drift([1, 2], [1, 2], buckets=0)["num_buckets"] == 2
    assert compute_distribution_drift([1, 2], [1, 2], buckets=1)["num_buckets"] == 2
    assert compute_distribution_drift([1, 2], [1, 2], buckets=10_000)["num_buckets"] == 100
    assert len(compute_distribution_drift([1, 2], [1, 2], buckets=7)["buckets"]) == 7


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf")], ["x"], [[1, 2]]])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError):
        compute_distribution_drift(bad, [1.0])


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=50), st.lists(finite, min_size=1, max_size=50),
       st.integers(2, 20))
def test_counts_conserved_and_psi_nonnegative(e, a, n):
    r = compute_distribution_drift(e, a, buckets=n)
    assert sum(b["expected_count"] for b in r["buckets"]) == len(e)
    assert sum(b["actual_count"] for b in r["buckets"]) == len(a)
    assert r["psi"] >= -1e-12 and r["tier"] == psi_tier(r["psi"])
    assert compute_distribution_drift(e, e, buckets=n)["psi"] == pytest.approx(0.0, abs=1e-12)


def test_scorer_drift_reports_mismatches():
    pairs = [
        {"record": {"source": "scrum_reviews", "verdict": "approved"}, "category": "accepted"},
        {"record": {"source": "scrum_reviews", "verdict": "blocked"}, "category": "accepted"},
        {"record": {"source": "mystery"}, "category": "needs_human_review"},
    ]
    r = compute_scorer_drift(pairs)
    assert r["total"] == 3 and r["mismatches"] == 1 and r["mismatch_rate"] == pytest.approx(1 / 3)
    assert r["entries"][0]["index"] == 1 and r["entries"][0]["current"] == "rejected"
    assert r["scorer_version"] == "v1.0.0"
    assert compute_scorer_drift([])["mismatch_rate"] == 0.0
    with pytest.raises(ValueError):
        compute_scorer_drift([{"record": {}, "category": "great"}])
    with pytest.raises(ValueError):
        compute_scorer_drift([{"category": "accepted"}])
