"""Pure-Python twin of native/src/playbook.cpp and native/src/role.cpp.

Same inputs, same order of operations, same IEEE arithmetic: for any valid input,
:func:`apply_playbook` here and ``lakehouse.matrix.ranking.apply_playbook`` give outcomes whose
:func:`outcome_json` bytes are identical (tests/matrix/test_playbook_parity.py checks that on
generated inputs). Read the C++ header ``native/include/lakehouse/playbook.h`` for the
algorithm; this file follows it step by step and must change in the same commit as it.

Precision, the one subtle point: distances are float32. A boosted distance is
``float32(float64(d) * (1.0 - 0.5 * score))``: Python floats are IEEE doubles and
``np.float32(x)`` rounds to nearest-even exactly like ``static_cast<float>`` in C++.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

__all__ = [
    "NON_PLURAL_S",
    "Outcome",
    "Row",
    "apply_playbook",
    "boost",
    "outcome_json",
    "role_equal",
    "role_gate_allows",
    "role_normalize",
]

NON_PLURAL_S = frozenset(
    {
        "sales",
        "logistics",
        "operations",
        "facilities",
        "premises",
        "news",
        "physics",
        "economics",
        "mathematics",
        "analytics",
    }
)

# C's isspace in the "C" locale: the only characters the core treats as word separators.
_SPACE = frozenset(" \t\n\v\f\r")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _singular(word: str) -> str:
    if word in NON_PLURAL_S:
        return word
    # Lengths are counted in UTF-8 bytes, as the core sees them.
    size = len(word.encode("utf-8"))
    if size <= 3 or not word.endswith("s"):
        return word
    if word.endswith(("ss", "us", "is")):
        return word
    if size >= 5 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses", "zzes")):
        return word[:-2]
    return word[:-1]


def role_normalize(role: str) -> str:
    """ASCII lower case, ASCII-whitespace split and joined by one space, last word singular."""
    words: list[str] = []
    current: list[str] = []
    for ch in role:
        if ch in _SPACE:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch.translate(_LOWER))
    if current:
        words.append("".join(current))
    if not words:
        return ""
    words[-1] = _singular(words[-1])
    return " ".join(words)


def role_equal(a: str, b: str) -> bool:
    return role_normalize(a) == role_normalize(b)


def role_gate_allows(entry_role: str, query_role: str) -> bool:
    e = role_normalize(entry_role)
    if not e:
        return True
    q = role_normalize(query_role)
    return not q or e == q


def boost(distance: np.float32, score: float) -> np.float32:
    """``float32(float64(d) * (1 - 0.5 * score))``: the core's rounding, exactly."""
    return np.float32(float(distance) * (1.0 - 0.5 * float(score)))


@dataclass
class Row:
    result_index: int
    hit_index: int
    distance: np.float32
    source: str


@dataclass
class Outcome:
    rows: list[Row]
    inject_candidates: list[int]
    counts: dict[str, int] = field(default_factory=dict)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def apply_playbook(
    result_ids: Sequence[str],
    result_corpora: Sequence[str],
    result_distances: Any,
    hit_answer_ids: Sequence[str],
    hit_answer_corpora: Sequence[str],
    hit_scores: Any,
    hit_distances: Any,
    hit_roles: Sequence[str] | None = None,
    *,
    query_role: str = "",
    exclude_ids: Sequence[str] = (),
    max_distance: float = 0.5,
    max_inject_distance: float = 0.20,
    k: int = 10,
    vetoed_hits: Sequence[int] = (),
    hit_queries: Sequence[str] = (),
    max_ratio: float = 0.0,
) -> Outcome:
    """The twin of the core's ``apply_playbook`` (same signature as lakehouse.matrix.ranking's)."""
    rdist = [np.float32(d) for d in np.asarray(result_distances, dtype=np.float32).reshape(-1)]
    hdist = [np.float32(d) for d in np.asarray(hit_distances, dtype=np.float32).reshape(-1)]
    hscores = [float(s) for s in np.asarray(hit_scores, dtype=np.float64).reshape(-1)]
    nr, nh = len(result_ids), len(hit_answer_ids)
    roles = [""] * nh if hit_roles is None else list(hit_roles)
    _check(len(result_corpora) == nr and len(rdist) == nr, "result arrays differ in length")
    _check(
        len(hit_answer_corpora) == nh and len(hscores) == nh and len(hdist) == nh and len(roles) == nh,
        "hit arrays differ in length",
    )
    _check(all(math.isfinite(float(d)) for d in rdist), "result distance not finite")
    _check(all(math.isfinite(float(d)) for d in hdist), "hit distance not finite")
    _check(all(0.0 <= s <= 1.0 for s in hscores), "hit score outside [0, 1]")
    queries = list(hit_queries)
    _check(not queries or len(queries) == nh, "hit_queries must be empty or one per hit")
    for t in (max_distance, max_inject_distance, max_ratio):
        _check(math.isfinite(t) and t >= 0.0, "threshold must be finite and >= 0")
    _check(k >= 1, "k must be positive")
    _check(all(0 <= v < nh for v in vetoed_hits), "vetoed hit index out of range")

    excluded = set(exclude_ids)
    vetoed = set(vetoed_hits)
    counts = {
        "hits": 0,
        "boosted": 0,
        "injected": 0,
        "rejected_role": 0,
        "rejected_ratio": 0,
        "vetoed": 0,
        "excluded": 0,
    }
    ratio_test = max_ratio > 0.0 and bool(queries)

    def passes_ratio(h: int) -> bool:
        # the nearest hit of another query text and another answer is h's competitor
        competitor = None
        for g in range(nh):
            if queries[g] == queries[h]:
                continue
            if hit_answer_ids[g] == hit_answer_ids[h] and hit_answer_corpora[g] == hit_answer_corpora[h]:
                continue
            d = float(hdist[g])
            if competitor is None or d < competitor:
                competitor = d
        return competitor is None or float(hdist[h]) <= max_ratio * competitor

    # 1. drop excluded results, index the rest by (id, corpus)
    rows: list[Row] = []
    present: dict[tuple[str, str], list[int]] = {}
    for i in range(nr):
        if result_ids[i] in excluded:
            counts["excluded"] += 1
            continue
        present.setdefault((result_ids[i], result_corpora[i]), []).append(len(rows))
        rows.append(Row(i, -1, rdist[i], "retrieval"))

    # 2. hits nearest first (sorted() is stable: the index breaks ties)
    order = sorted(range(nh), key=lambda h: hdist[h])
    boosted_keys: set[tuple[str, str]] = set()
    candidate_keys: set[tuple[str, str]] = set()
    candidates: list[int] = []
    injected: list[Row] = []
    for h in order:
        hit_distance = float(hdist[h])
        if hit_distance > max_distance:
            continue
        counts["hits"] += 1
        if not role_gate_allows(roles[h], query_role):
            counts["rejected_role"] += 1
            continue
        if hit_answer_ids[h] in excluded:
            continue
        if ratio_test and not passes_ratio(h):
            counts["rejected_ratio"] += 1
            continue
        key = (hit_answer_ids[h], hit_answer_corpora[h])
        if key in present:
            # 3. boost, once per answer
            if key in boosted_keys:
                continue
            boosted_keys.add(key)
            for pos in present[key]:
                row = rows[pos]
                row.distance = boost(row.distance, hscores[h])
                row.source = "boost"
                row.hit_index = h
                counts["boosted"] += 1
            continue
        # 4. inject: tighter window, dedup before the veto
        if hit_distance > max_inject_distance:
            continue
        if key in candidate_keys:
            continue
        candidate_keys.add(key)
        candidates.append(h)
        if h in vetoed:
            counts["vetoed"] += 1
            continue
        injected.append(Row(-1, h, boost(hdist[h], hscores[h]), "inject"))
        counts["injected"] += 1

    # 5. stable sort, truncate
    rows.extend(injected)
    rows.sort(key=lambda r: r.distance)
    return Outcome(rows[:k], candidates, counts)


def outcome_json(outcome: Any) -> bytes:
    """A normalised, byte-comparable JSON of either runtime's outcome.

    Distances appear as their float32 bit patterns (and as numbers for the reader), so two
    outcomes compare equal only when every bit agrees.
    """
    rows = []
    for r in outcome.rows:
        bits = int(np.float32(r.distance).view(np.uint32))
        rows.append(
            {
                "result_index": int(r.result_index),
                "hit_index": int(r.hit_index),
                "distance": float(np.float32(r.distance)),
                "distance_bits": f"{bits:08x}",
                "source": str(r.source),
            }
        )
    data = {
        "rows": rows,
        "inject_candidates": [int(c) for c in outcome.inject_candidates],
        "counts": {key: int(v) for key, v in sorted(outcome.counts.items())},
    }
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
