"""Playbook arithmetic and the role gate: the public face of the native core's playbook.h.

The learning loop of matrixd (contract sections 9.9-9.11) in three pure functions:

* :func:`apply_playbook` re-ranks one search's merged results with its playbook hits:
  **boost** ``d x (1 - 0.5 x score)`` for a result whose ``(id, corpus)`` is a hit's answer
  (hits within ``max_distance``, default 0.5), **inject** ("Shape B") a hit's answer that is
  absent, at ``hit_distance x (1 - 0.5 x score)`` (hits within ``max_inject_distance``,
  default 0.20, one per answer), skipping ``exclude_ids`` everywhere, then a stable sort and
  truncation to ``k``.
* :func:`role_normalize` / :func:`role_equal`: the role gate's comparison (head noun
  singularised, non-plural-s words and ``-ss`` kept, ``Boxes -> Box``).
* :func:`playbook_id`: the deterministic id of a recorded ``(query, answer)``.

The judge gate is not called from here: run :func:`apply_playbook` once, ask the judge about
``outcome.inject_candidates``, then run it again with the refused hits in ``vetoed_hits``
(candidates never depend on the vetoes). matrixd does exactly that.

Distances are float32, as on the wire; see ``native/include/lakehouse/playbook.h`` for the
exact rounding, which ``parity/reference/playbook.py`` reproduces bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _native

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "DEFAULT_MAX_INJECT_DISTANCE",
    "PlaybookOutcome",
    "PlaybookRow",
    "apply_playbook",
    "boost_distance",
    "playbook_id",
    "role_equal",
    "role_gate_allows",
    "role_normalize",
]

#: Contract 9.9: hits farther than this from the query neither boost nor inject.
DEFAULT_MAX_DISTANCE = 0.5
#: Contract 9.10: inject only hits at most this far (paraphrases sit at 0.23-0.30 and
#: cross-pollination at 0.20-0.46 in the reference's runs).
DEFAULT_MAX_INJECT_DISTANCE = 0.20


@dataclass(frozen=True)
class PlaybookRow:
    """One row of the re-ranked answer.

    ``result_index`` points into the input results (-1 for an injected row); ``hit_index``
    is the playbook hit that boosted or injected the row (-1 for plain retrieval);
    ``distance`` is the float32 distance as a Python float; ``source`` is ``"retrieval"``,
    ``"boost"`` or ``"inject"``.
    """

    result_index: int
    hit_index: int
    distance: float
    source: str


@dataclass(frozen=True)
class PlaybookOutcome:
    """What :func:`apply_playbook` returns."""

    #: the answer in its final order, at most ``k`` rows
    rows: list[PlaybookRow]
    #: the rows' distances as the float32 array the core computed
    distances: np.ndarray
    #: hits whose answer would be injected, in visiting order (what a judge must approve)
    inject_candidates: list[int]
    #: hits (within max_distance), boosted, injected, rejected_role, rejected_ratio, vetoed,
    #: excluded
    counts: dict[str, int] = field(default_factory=dict)


def _strings(values: Any, what: str) -> list[str]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{what} must be a sequence of strings, not a single string")
    out = list(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise ValueError(f"{what}[{i}] must be a string, got {type(v).__name__}")
        _check_utf8(v, f"{what}[{i}]")
    return out


def _check_utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text: {exc.reason}") from exc


def _vector(values: Any, dtype: type, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers: {exc}") from exc
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{what} must be a 1-d sequence of {n} numbers, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _threshold(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


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
    max_distance: float = DEFAULT_MAX_DISTANCE,
    max_inject_distance: float = DEFAULT_MAX_INJECT_DISTANCE,
    k: int = 10,
    vetoed_hits: Sequence[int] = (),
    hit_queries: Sequence[str] | None = None,
    max_ratio: float = 0.0,
) -> PlaybookOutcome:
    """Boost and inject playbook answers into merged results, then sort and truncate.

    Results are ``(result_ids[i], result_corpora[i], result_distances[i])`` in merge order;
    hits are ``(hit_answer_ids[j], hit_answer_corpora[j], hit_scores[j] in [0, 1],
    hit_distances[j], hit_roles[j])`` in any order (visited nearest first). Distances are
    converted to float32. ``hit_roles=None`` means no hit has a role. ``vetoed_hits`` are
    hit indexes whose injection is refused (the judge said no).

    ``max_ratio > 0`` turns on the calibrated playbook's ratio test (0, the default, is the
    reference): a hit boosts or injects only when its distance is at most ``max_ratio`` x
    the distance of its nearest competitor, the nearest hit recorded for another query text
    (``hit_queries[j]``) and another answer; hits that fail are counted in
    ``rejected_ratio``. ``hit_queries=None`` means no hit has a competitor.

    Raises ValueError for mismatched lengths, non-finite distances, scores outside [0, 1],
    negative thresholds, ``k < 1``, a vetoed index out of range or ``hit_queries`` of
    another length than the hits.
    """
    rids = _strings(result_ids, "result_ids")
    rcorp = _strings(result_corpora, "result_corpora")
    if len(rids) != len(rcorp):
        raise ValueError("result_ids and result_corpora differ in length")
    rdist = _vector(result_distances, np.float32, len(rids), "result_distances")
    hids = _strings(hit_answer_ids, "hit_answer_ids")
    hcorp = _strings(hit_answer_corpora, "hit_answer_corpora")
    if len(hids) != len(hcorp):
        raise ValueError("hit_answer_ids and hit_answer_corpora differ in length")
    hroles = [""] * len(hids) if hit_roles is None else _strings(hit_roles, "hit_roles")
    if len(hroles) != len(hids):
        raise ValueError("hit_roles and hit_answer_ids differ in length")
    hscores = _vector(hit_scores, np.float64, len(hids), "hit_scores")
    hdist = _vector(hit_distances, np.float32, len(hids), "hit_distances")
    if not isinstance(query_role, str):
        raise ValueError("query_role must be a string")
    _check_utf8(query_role, "query_role")
    excl = _strings(exclude_ids, "exclude_ids")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    vetoed = list(vetoed_hits)
    for v in vetoed:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= v < len(hids):
            raise ValueError(f"vetoed hit index {v!r} is out of range for {len(hids)} hits")
    hqueries = [] if hit_queries is None else _strings(hit_queries, "hit_queries")
    if hqueries and len(hqueries) != len(hids):
        raise ValueError("hit_queries and hit_answer_ids differ in length")
    rows_r, rows_h, dists, sources, candidates, counts = _native.apply_playbook(
        rids,
        rcorp,
        rdist,
        hids,
        hcorp,
        hscores,
        hdist,
        hroles,
        query_role,
        excl,
        _threshold(max_distance, "max_distance"),
        _threshold(max_inject_distance, "max_inject_distance"),
        int(k),
        [int(v) for v in vetoed],
        hqueries,
        _threshold(max_ratio, "max_ratio"),
    )
    rows = [
        PlaybookRow(int(r), int(h), float(d), s)
        for r, h, d, s in zip(rows_r, rows_h, dists, sources, strict=True)
    ]
    return PlaybookOutcome(rows, dists, list(candidates), dict(counts))


def boost_distance(distance: float, score: float) -> float:
    """``distance x (1 - 0.5 x score)`` rounded to float32, exactly as the core computes it."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be within [0, 1], got {score!r}")
    return float(np.float32(float(np.float32(distance)) * (1.0 - 0.5 * score)))


def role_normalize(role: str) -> str:
    """The role gate's normal form: lower case, trimmed, the last word singular.

    ``"Forklift Operators" -> "forklift operator"``, ``"Boxes" -> "box"``, ``"Sales"`` and
    ``"Boss"`` unchanged (see native/include/lakehouse/role.h for every rule).
    """
    if not isinstance(role, str):
        raise ValueError("role must be a string")
    _check_utf8(role, "role")
    return _native.role_normalize(role)


def role_equal(a: str, b: str) -> bool:
    """True when two roles have the same normal form (``Operators`` == ``operator``)."""
    return role_normalize(a) == role_normalize(b)


def role_gate_allows(entry_role: str, query_role: str) -> bool:
    """The gate: open when either role is empty, else the roles must be equal."""
    e = role_normalize(entry_role)
    if not e:
        return True
    q = role_normalize(query_role)
    return not q or e == q


def playbook_id(query_text: str, answer_id: str, answer_corpus: str) -> str:
    """The first 32 hex digits of sha256(``query_text \\x1f answer_id \\x1f answer_corpus``).

    Deterministic, so recording the same triple again upserts the same entry.
    """
    data = "\x1f".join((query_text, answer_id, answer_corpus)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:32]
