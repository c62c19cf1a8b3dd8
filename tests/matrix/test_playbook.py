"""The playbook arithmetic and the role gate against the contract's numbers (sections 9.9-9.11).

Every case runs through the native core (lakehouse.matrix.ranking) and the pure-Python twin
(parity.reference.playbook); both must give the contract's answer.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from parity.reference import playbook as twin

from lakehouse.matrix import ranking as native

RUNTIMES = [pytest.param(native, id="native"), pytest.param(twin, id="twin")]


def run(rt, results, hits, **kw):
    """results: [(id, corpus, distance)]; hits: [(answer_id, corpus, score, distance, role)]."""
    return rt.apply_playbook(
        [r[0] for r in results],
        [r[1] for r in results],
        [r[2] for r in results],
        [h[0] for h in hits],
        [h[1] for h in hits],
        [h[2] for h in hits],
        [h[3] for h in hits],
        [h[4] if len(h) > 4 else "" for h in hits],
        **kw,
    )


def ids(outcome, results, hits):
    out = []
    for row in outcome.rows:
        if row.result_index >= 0:
            out.append(results[row.result_index][0])
        else:
            out.append(hits[row.hit_index][0])
    return out


WIDGETS = [("widget-a", "w", 0.41), ("widget-b", "w", 0.52), ("widget-c", "w", 0.6566)]


@pytest.mark.parametrize("rt", RUNTIMES)
def test_smoke_numbers_boost_halves_at_score_one(rt):
    # contract 9.9 / 15.4: widget-c 0.6566 (rank 3) -> 0.3283 (rank 2), ratio exactly 0.5
    hits = [("widget-c", "w", 1.0, 0.0, "")]
    out = run(rt, WIDGETS, hits, k=3)
    assert ids(out, WIDGETS, hits) == ["widget-c", "widget-a", "widget-b"]
    row = next(r for r in out.rows if r.result_index == 2)
    assert row.source == "boost"
    assert np.float32(row.distance) == np.float32(0.6566) * np.float32(0.5)
    assert float(np.float32(row.distance)) / float(np.float32(0.6566)) == 0.5
    assert round(float(row.distance), 4) == 0.3283
    assert out.counts["boosted"] == 1 and out.counts["injected"] == 0


@pytest.mark.parametrize("rt", RUNTIMES)
def test_smoke_rank_three_becomes_rank_two(rt):
    results = [("widget-a", "w", 0.30), ("widget-b", "w", 0.45), ("widget-c", "w", 0.6566)]
    hits = [("widget-c", "w", 1.0, 0.01, "")]
    out = run(rt, results, hits, k=3)
    assert ids(out, results, hits) == ["widget-a", "widget-c", "widget-b"]


@pytest.mark.parametrize("rt", RUNTIMES)
@pytest.mark.parametrize("score,factor", [(0.0, 1.0), (0.5, 0.75), (1.0, 0.5)])
def test_boost_factor(rt, score, factor):
    out = run(rt, [("x", "c", 0.8)], [("x", "c", score, 0.1, "")])
    assert out.rows[0].distance == pytest.approx(0.8 * factor, rel=1e-6)
    assert out.rows[0].source == "boost"


@pytest.mark.parametrize("rt", RUNTIMES)
def test_boost_needs_same_corpus(rt):
    # cross-corpus id collisions do not match
    results = [("w-1", "workers", 0.6)]
    out = run(rt, results, [("w-1", "ethereal_workers", 1.0, 0.1, "")])
    retrieved = next(r for r in out.rows if r.result_index == 0)
    assert retrieved.source == "retrieval"
    assert retrieved.distance == pytest.approx(0.6)
    # ... and the other corpus's answer is absent, so it is injected instead
    assert [r.source for r in out.rows] == ["inject", "retrieval"]


@pytest.mark.parametrize("rt", RUNTIMES)
def test_boost_window(rt):
    results = [("x", "c", 0.8)]
    inside = run(rt, results, [("x", "c", 1.0, 0.5, "")])
    outside = run(rt, results, [("x", "c", 1.0, 0.5001, "")])
    assert inside.rows[0].source == "boost" and inside.counts["hits"] == 1
    assert outside.rows[0].source == "retrieval" and outside.counts["hits"] == 0


@pytest.mark.parametrize("rt", RUNTIMES)
def test_boost_applies_once_per_answer(rt):
    hits = [("x", "c", 1.0, 0.3, ""), ("x", "c", 0.0, 0.1, "")]
    out = run(rt, [("x", "c", 0.8)], hits)
    # the nearest hit (score 0.0) applies; the second does not compound
    assert out.rows[0].distance == pytest.approx(0.8)
    assert out.rows[0].hit_index == 1
    assert out.counts["boosted"] == 1


@pytest.mark.parametrize("rt", RUNTIMES)
def test_paraphrase_within_inject_window_is_injected(rt):
    results = [("w-1", "workers", 0.35), ("w-2", "workers", 0.40)]
    hits = [("w-9", "workers", 1.0, 0.18, "")]
    out = run(rt, results, hits, k=3)
    assert ids(out, results, hits) == ["w-9", "w-1", "w-2"]
    assert out.rows[0].source == "inject"
    assert out.rows[0].distance == pytest.approx(0.09, rel=1e-6)
    assert out.inject_candidates == [0]
    assert out.counts["injected"] == 1


@pytest.mark.parametrize("rt", RUNTIMES)
def test_paraphrase_at_0_3_is_not_injected_but_still_boosts(rt):
    results = [("w-1", "workers", 0.35)]
    out = run(rt, results, [("w-9", "workers", 1.0, 0.3, "")])
    assert [r.source for r in out.rows] == ["retrieval"]
    assert out.inject_candidates == [] and out.counts["injected"] == 0
    present = run(rt, [("w-9", "workers", 0.7)], [("w-9", "workers", 1.0, 0.3, "")])
    assert present.rows[0].source == "boost"


@pytest.mark.parametrize("rt", RUNTIMES)
def test_inject_dedupes_per_answer_and_skips_present(rt):
    results = [("w-1", "workers", 0.35)]
    hits = [
        ("w-9", "workers", 1.0, 0.10, ""),
        ("w-9", "workers", 0.0, 0.05, ""),
        ("w-1", "workers", 1.0, 0.02, ""),
    ]
    out = run(rt, results, hits)
    assert [r.source for r in out.rows].count("inject") == 1
    inj = next(r for r in out.rows if r.source == "inject")
    assert inj.hit_index == 1  # the nearest hit for w-9, score 0 -> factor 1
    assert inj.distance == pytest.approx(0.05)
    assert out.counts["boosted"] == 1 and out.counts["injected"] == 1


@pytest.mark.parametrize("rt", RUNTIMES)
def test_empty_hits_change_nothing(rt):
    results = [("b", "c", 0.2), ("a", "c", 0.1)]
    out = run(rt, results, [], k=5)
    assert ids(out, results, []) == ["a", "b"]
    assert all(r.source == "retrieval" for r in out.rows)


@pytest.mark.parametrize("rt", RUNTIMES)
def test_cross_role_hit_rejected_same_role_plural_accepted(rt):
    # real_001: Forklift Operator recorded, CNC Operator query, hit at 0.135
    results = [("w-1", "workers", 0.30)]
    hits = [("w-7", "workers", 1.0, 0.135, "Forklift Operator")]
    cross = run(rt, results, hits, query_role="CNC Operator")
    assert [r.source for r in cross.rows] == ["retrieval"]
    assert cross.counts["rejected_role"] == 1 and cross.inject_candidates == []
    same = run(rt, results, hits, query_role="Forklift Operators")
    assert same.rows[0].source == "inject" and same.counts["rejected_role"] == 0
    # the gate also stops the boost
    boosted = run(rt, [("w-7", "workers", 0.4)], hits, query_role="CNC Operator")
    assert boosted.rows[0].source == "retrieval"


@pytest.mark.parametrize("rt", RUNTIMES)
@pytest.mark.parametrize("entry,query", [("", "CNC Operator"), ("Forklift Operator", ""), (" ", "x")])
def test_role_gate_fails_open_on_an_empty_side(rt, entry, query):
    out = run(rt, [("w-1", "c", 0.3)], [("w-7", "c", 1.0, 0.1, entry)], query_role=query)
    assert out.counts["injected"] == 1


@pytest.mark.parametrize("rt", RUNTIMES)
def test_excluded_ids_never_come_back(rt):
    results = [("w-1", "workers", 0.30), ("w-2", "workers", 0.31)]
    hits = [("w-2", "workers", 1.0, 0.05, ""), ("w-3", "workers", 1.0, 0.05, "")]
    out = run(rt, results, hits, exclude_ids=["w-2", "w-3"])
    assert ids(out, results, hits) == ["w-1"]
    assert out.counts["excluded"] == 1
    assert out.inject_candidates == [] and out.counts["boosted"] == 0


@pytest.mark.parametrize("rt", RUNTIMES)
def test_vetoed_candidates_are_dropped_without_retrying_a_farther_hit(rt):
    results = [("w-1", "workers", 0.30)]
    hits = [("w-9", "workers", 1.0, 0.05, ""), ("w-9", "workers", 1.0, 0.06, ""), ("w-8", "workers", 0.5, 0.1, "")]
    first = run(rt, results, hits)
    assert first.inject_candidates == [0, 2]
    second = run(rt, results, hits, vetoed_hits=[0])
    assert second.inject_candidates == [0, 2]
    assert [r.source for r in second.rows].count("inject") == 1
    assert second.counts["vetoed"] == 1 and second.counts["injected"] == 1


@pytest.mark.parametrize("rt", RUNTIMES)
def test_truncation_and_stable_ties(rt):
    results = [("a", "c", 0.5), ("b", "c", 0.5), ("c", "c", 0.5)]
    hits = [("d", "c", 0.0, 0.5, "")]
    out = run(rt, results, hits, k=2, max_inject_distance=0.5)
    assert ids(out, results, hits) == ["a", "b"]
    out = run(rt, results, hits, k=10, max_inject_distance=0.5)
    assert ids(out, results, hits) == ["a", "b", "c", "d"]


ROLE_CASES = [
    ("Operators", "operator"),
    ("Forklift Operators", "forklift operator"),
    ("  forklift   OPERATOR ", "forklift operator"),
    ("Sales Associate", "sales associate"),
    ("Sales", "sales"),
    ("Logistics", "logistics"),
    ("Operations", "operations"),
    ("Facilities", "facilities"),
    ("Premises", "premises"),
    ("News", "news"),
    ("Analytics", "analytics"),
    ("Press Operator", "press operator"),
    ("Boss", "boss"),
    ("Press", "press"),
    ("Presses", "press"),
    ("Boxes", "box"),
    ("Box", "box"),
    ("Nurses", "nurse"),
    ("Deliveries", "delivery"),
    ("Welders", "welder"),
    ("Switches", "switch"),
    ("Status", "status"),
    ("Gas", "gas"),
    ("", ""),
    ("   ", ""),
    ("Opérateurs", "opérateur"),
]


@pytest.mark.parametrize("rt", [native, twin], ids=["native", "twin"])
@pytest.mark.parametrize("role,expected", ROLE_CASES)
def test_role_normalize_cases(rt, role, expected):
    assert rt.role_normalize(role) == expected


@pytest.mark.parametrize("rt", [native, twin], ids=["native", "twin"])
def test_role_equal_cases(rt):
    assert rt.role_equal("Forklift Operator", "Forklift Operators")
    assert rt.role_equal("Box", "Boxes")
    assert not rt.role_equal("Sales", "Sale")
    assert not rt.role_equal("Logistics", "Logistic")
    assert not rt.role_equal("Forklift Operator", "CNC Operator")


def test_playbook_id_is_sha256_prefix_of_the_triple():
    expected = hashlib.sha256(b"forklift operator\x1fw-42\x1fworkers").hexdigest()[:32]
    assert native.playbook_id("forklift operator", "w-42", "workers") == expected
    assert len(expected) == 32
    assert native.playbook_id("a", "b", "c") != native.playbook_id("a", "c", "b")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"k": 0}, "k must be"),
        ({"max_distance": -0.1}, "max_distance"),
        ({"max_inject_distance": float("nan")}, "max_inject_distance"),
        ({"vetoed_hits": [5]}, "out of range"),
        ({"exclude_ids": "w-1"}, "single string"),
    ],
)
def test_native_wrapper_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(native, [("a", "c", 0.1)], [("b", "c", 1.0, 0.1, "")], **kwargs)


@pytest.mark.parametrize(
    "results,hits,message",
    [
        ([("a", "c", float("inf"))], [], "not finite"),
        ([("a", "c", 0.1)], [("b", "c", 1.5, 0.1, "")], r"\[0, 1\]"),
        ([("a", "c", 0.1)], [("b", "c", -0.1, 0.1, "")], r"\[0, 1\]"),
        ([("a", "c", 0.1)], [("b", "c", float("nan"), 0.1, "")], r"\[0, 1\]"),
        ([("a", "c", 0.1)], [("b", "c", 0.5, float("nan"), "")], "not finite"),
        ([(1, "c", 0.1)], [], "must be a string"),
        ([("\ud800", "c", 0.1)], [], "Unicode"),
    ],
)
def test_native_wrapper_rejects_bad_values(results, hits, message):
    with pytest.raises(ValueError, match=message):
        run(native, results, hits)


def test_native_wrapper_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        native.apply_playbook(["a"], [], [0.1], [], [], [], [])
    with pytest.raises(ValueError, match="1-d sequence"):
        native.apply_playbook(["a"], ["c"], [0.1, 0.2], [], [], [], [])
    with pytest.raises(ValueError, match="hit_roles"):
        native.apply_playbook([], [], [], ["a"], ["c"], [1.0], [0.1], ["x", "y"])


def test_outcome_distances_are_float32():
    out = run(native, WIDGETS, [("widget-c", "w", 1.0, 0.0, "")])
    assert out.distances.dtype == np.float32
    assert [float(d) for d in out.distances] == [r.distance for r in out.rows]


def test_boost_distance_helper_matches_the_core():
    out = run(native, [("x", "c", 0.6566)], [("x", "c", 0.37, 0.1, "")])
    assert native.boost_distance(0.6566, 0.37) == out.rows[0].distance
    with pytest.raises(ValueError):
        native.boost_distance(0.5, 2.0)


# -- the calibrated playbook's ratio test (max_ratio > 0; 0 is the reference) --------------

RATIO_HITS = [
    # answer, corpus, score, distance, role; their recorded queries are QUERIES
    ("w-1", "workers", 1.0, 0.10, ""),
    ("w-2", "workers", 1.0, 0.30, ""),
    ("w-3", "workers", 1.0, 0.12, ""),
]
QUERIES = ["forklift milwaukee", "forklift chicago", "forklift milwaukee"]


@pytest.mark.parametrize("rt", RUNTIMES)
def test_ratio_test_lets_only_the_nearest_demand_act(rt):
    out = run(rt, [], RATIO_HITS, max_inject_distance=0.5, max_ratio=0.7, hit_queries=QUERIES)
    # w-1 and w-3 were recorded for the same query (one demand, two answers): both act;
    # w-2's demand is 0.30 away while a competitor sits at 0.10: 0.30 > 0.7 x 0.10
    assert ids(out, [], RATIO_HITS) == ["w-1", "w-3"]
    assert out.counts["rejected_ratio"] == 1 and out.counts["injected"] == 2


@pytest.mark.parametrize("rt", RUNTIMES)
def test_ratio_test_refuses_an_undecided_query(rt):
    hits = [("w-1", "workers", 1.0, 0.30, ""), ("w-2", "workers", 1.0, 0.35, "")]
    out = run(rt, [("w-2", "workers", 0.5)], hits, max_inject_distance=0.5, max_ratio=0.7, hit_queries=["a", "b"])
    # 0.30 <= 0.7 x 0.35 fails, so neither boosts nor injects
    assert out.counts["rejected_ratio"] == 2 and out.counts["boosted"] == 0 and out.counts["injected"] == 0
    assert float(out.rows[0].distance) == pytest.approx(0.5)


@pytest.mark.parametrize("rt", RUNTIMES)
def test_ratio_test_ignores_competitors_with_the_same_answer_and_lone_hits(rt):
    # a paraphrase recorded for the same answer is no competitor
    hits = [("w-1", "workers", 1.0, 0.20, ""), ("w-1", "workers", 1.0, 0.21, "")]
    out = run(rt, [], hits, max_inject_distance=0.5, max_ratio=0.7, hit_queries=["a", "b"])
    assert out.counts["rejected_ratio"] == 0 and out.counts["injected"] == 1
    out = run(rt, [], hits[:1], max_inject_distance=0.5, max_ratio=0.7, hit_queries=["a"])
    assert out.counts["injected"] == 1


@pytest.mark.parametrize("rt", RUNTIMES)
def test_ratio_zero_or_no_queries_is_the_reference(rt):
    ref = run(rt, [], RATIO_HITS, max_inject_distance=0.5)
    assert twin.outcome_json(run(rt, [], RATIO_HITS, max_inject_distance=0.5, max_ratio=0.0, hit_queries=QUERIES)) == twin.outcome_json(ref)
    assert twin.outcome_json(run(rt, [], RATIO_HITS, max_inject_distance=0.5, max_ratio=0.7)) == twin.outcome_json(ref)
    assert ref.counts["injected"] == 3


def test_ratio_test_validates():
    with pytest.raises(ValueError, match="max_ratio"):
        run(native, [], RATIO_HITS, max_ratio=-1.0, hit_queries=QUERIES)
    with pytest.raises(ValueError, match="hit_queries"):
        run(native, [], RATIO_HITS, max_ratio=0.7, hit_queries=QUERIES[:2])


@given(
    hits=st.lists(
        st.tuples(
            st.sampled_from(["w-1", "w-2", "w-3", "w-4"]),
            st.floats(0.0, 1.0),
            st.sampled_from([0.0, 0.1, 0.2, 0.25]) | st.floats(0.0, 0.5, width=32),
            st.sampled_from(["q1", "q2", "q3"]),
        ),
        max_size=6,
    ),
    ratio=st.sampled_from([0.3, 0.7, 0.99]),
)
def test_with_a_ratio_below_one_no_two_rival_demands_act_together(hits, ratio):
    """The calibrated playbook's guarantee: one demand's answer is never injected or boosted
    for another's. Any two hits that act share their query or their answer, unless the query
    is identical (distance 0) to both: d_i <= r d_j <= r^2 d_i forces d_i = d_j = 0."""
    rows = [(a, "workers", s, d, "") for a, s, d, _ in hits]
    results = [("w-1", "workers", 0.4), ("w-4", "workers", 0.45)]
    out = run(native, results, rows, max_distance=1.0, max_inject_distance=1.0, max_ratio=ratio, hit_queries=[q for *_, q in hits])
    acting = [r.hit_index for r in out.rows if r.hit_index >= 0]
    for i in acting:
        for j in acting:
            assert hits[i][3] == hits[j][3] or hits[i][0] == hits[j][0] or hits[i][2] == hits[j][2] == 0.0
    assert twin.outcome_json(out) == twin.outcome_json(
        run(twin, results, rows, max_distance=1.0, max_inject_distance=1.0, max_ratio=ratio, hit_queries=[q for *_, q in hits])
    )
