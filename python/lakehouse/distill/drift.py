"""Drift quantification (contract section 14.6).

*Distribution drift* (:func:`compute_distribution_drift`): the Population Stability Index of an
``actual`` sample against an ``expected`` (baseline) sample,

    PSI = sum over buckets of (a_i - e_i) * ln(a_i / e_i)

where ``e_i`` and ``a_i`` are the shares of each sample in bucket ``i``. Buckets are of equal
width over the combined min/max of both samples (the last bucket includes the maximum). An
empty bucket's share is clamped to :data:`EPSILON` so the logarithm stays finite. Tiers:
``stable`` below 0.10, ``minor`` from 0.10 to below 0.25, ``major`` at 0.25 and above.

The reference leaves the bucket count and epsilon unstated; ours: 10 buckets by default,
clamped to 2..100, and epsilon 1e-4. Empty samples give a PSI of 0 (``stable``) with a note,
and a sample whose values are all equal falls into one bucket (PSI 0 when both are).

*Scorer drift* (:func:`compute_scorer_drift`): re-score ``(record, persisted category)`` pairs
with the current scorer (:mod:`lakehouse.distill.scoring`) and report the mismatches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import scoring

__all__ = [
    "compute_distribution_drift",
    "compute_scorer_drift",
    "psi_tier",
    "DEFAULT_BUCKETS",
    "MIN_BUCKETS",
    "MAX_BUCKETS",
    "EPSILON",
    "STABLE_BELOW",
    "MAJOR_FROM",
]

DEFAULT_BUCKETS = 10
MIN_BUCKETS = 2
MAX_BUCKETS = 100
EPSILON = 1e-4
STABLE_BELOW = 0.10
MAJOR_FROM = 0.25


def psi_tier(psi: float) -> str:
    """``stable`` (< 0.10), ``minor`` (0.10 to < 0.25) or ``major`` (>= 0.25)."""
    if psi < STABLE_BELOW:
        return "stable"
    if psi < MAJOR_FROM:
        return "minor"
    return "major"


def _sample(name: str, values: Iterable[float]) -> np.ndarray:
    try:
        arr = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a list of numbers") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a flat list of numbers")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: NaN and infinite values are not allowed")
    return arr


def compute_distribution_drift(
    expected: Iterable[float],
    actual: Iterable[float],
    buckets: int | None = None,
) -> dict[str, Any]:
    """PSI of ``actual`` against ``expected`` with its tier and a per-bucket breakdown.

    ``ValueError`` for non-numeric, NaN or infinite values.
    """
    e = _sample("expected", expected)
    a = _sample("actual", actual)
    n = DEFAULT_BUCKETS if buckets is None else int(buckets)
    n = min(max(n, MIN_BUCKETS), MAX_BUCKETS)
    result: dict[str, Any] = {
        "psi": 0.0,
        "tier": "stable",
        "num_buckets": n,
        "epsilon": EPSILON,
        "n_expected": int(e.size),
        "n_actual": int(a.size),
        "buckets": [],
    }
    if e.size == 0 or a.size == 0:
        result["note"] = "an empty sample has no distribution; PSI reported as 0"
        return result
    lo = float(min(e.min(), a.min()))
    hi = float(max(e.max(), a.max()))
    # All values equal: one bucket holds both samples whole.
    edges = np.array([lo, hi]) if lo == hi else np.linspace(lo, hi, n + 1)
    # np.histogram's buckets are [edge_i, edge_i+1) and the last one closed: equal width.
    e_counts, _ = np.histogram(e, bins=edges)
    a_counts, _ = np.histogram(a, bins=edges)
    psi = 0.0
    rows = []
    for i in range(len(edges) - 1):
        # plain Python numbers from here on: the result is serialised as JSON
        e_share = int(e_counts[i]) / e.size
        a_share = int(a_counts[i]) / a.size
        ec, ac = max(e_share, EPSILON), max(a_share, EPSILON)
        contrib = (ac - ec) * math.log(ac / ec)
        psi += contrib
        rows.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "expected_count": int(e_counts[i]),
                "actual_count": int(a_counts[i]),
                "expected_share": e_share,
                "actual_share": a_share,
                "psi": contrib,
            }
        )
    result.update(psi=psi, tier=psi_tier(psi), buckets=rows)
    return result


def compute_scorer_drift(pairs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Re-score each ``{"record": {...}, "category": persisted}`` and report mismatches.

    ``ValueError`` when a pair is malformed or names an unknown category.
    """
    entries = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, Mapping) or not isinstance(pair.get("record"), Mapping):
            raise ValueError(f"pairs[{i}]: expected {{record: {{...}}, category: ...}}")
        persisted = pair.get("category")
        if persisted not in scoring.CATEGORIES:
            raise ValueError(
                f"pairs[{i}].category: must be one of {', '.join(scoring.CATEGORIES)}"
            )
        current = scoring.score_record(pair["record"])
        if current.category != persisted:
            entries.append(
                {
                    "index": i,
                    "persisted": persisted,
                    "current": current.category,
                    "scorer": current.scorer,
                    "reasons": list(current.reasons),
                }
            )
    total = len(pairs)
    return {
        "scorer_version": scoring.SCORER_VERSION,
        "total": total,
        "mismatches": len(entries),
        "mismatch_rate": len(entries) / total if total else 0.0,
        "entries": entries,
    }
