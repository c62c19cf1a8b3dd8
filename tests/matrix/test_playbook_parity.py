"""Native core vs the pure-Python twin: byte-identical normalised outcomes on generated inputs.

Inputs are drawn to collide on purpose (few ids, two corpora, distances on the threshold
edges and in ties, scores at 0 and 1, plural and cross roles), so every branch of the
algorithm is exercised; distances are compared as float32 bit patterns.
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st
from parity.library import playbook_args
from parity.reference import playbook as twin

from lakehouse.matrix import ranking as native

IDS = st.sampled_from(["w-1", "w-2", "w-3", "w-4", "e-1", "e-2"])
CORPORA = st.sampled_from(["workers", "ethereal_workers"])
EDGE_DISTANCES = [0.0, -0.0, 0.1, 0.135, 0.2, 0.20000001, 0.3, 0.5, 0.50000006, 0.6566, 1.0, 2.0]
DISTANCES = st.one_of(
    st.sampled_from(EDGE_DISTANCES),
    st.floats(-0.0625, 2.0, width=32, allow_nan=False, allow_infinity=False),
)
HIT_DISTANCES = st.one_of(
    st.sampled_from([0.0, 0.05, 0.135, 0.19, 0.2, 0.20000001, 0.3, 0.5, 0.50000006]),
    st.floats(0.0, 0.625, width=32),
)
SCORES = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0.0, 1.0))
ROLE_WORDS = st.sampled_from(
        ["", " ", "Forklift Operator", "Forklift Operators", "forklift  operator", "CNC Operator",
         "Sales", "Sale", "Boxes", "Box", "Press", "Presses", "Deliveries", "Delivery"]
)
# mostly no role or a known one, so the gate lets enough hits through to boost and inject
ROLES = st.one_of(
    st.just(""),
    ROLE_WORDS,
    ROLE_WORDS,
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)
# thresholds near the defaults and the edges hypothesis likes
THRESHOLDS = st.one_of(st.sampled_from([0.0, 0.2, 0.20, 0.3, 0.5, 1.0]), st.floats(0.0, 2.0))


@st.composite
def playbook_inputs(draw):
    results = draw(st.lists(st.tuples(IDS, CORPORA, DISTANCES), max_size=10))
    # half the hits point at a retrieved answer (boost), the rest anywhere (inject or nothing)
    keys = st.tuples(IDS, CORPORA)
    if results:
        keys = st.one_of(keys, st.sampled_from([(r[0], r[1]) for r in results]))
    hits = [
        (key[0], key[1], score, distance, role)
        for key, score, distance, role in draw(
            st.lists(st.tuples(keys, SCORES, HIT_DISTANCES, ROLES), max_size=6)
        )
    ]
    kwargs = {
        "query_role": draw(st.one_of(st.just(""), ROLES)),
        "exclude_ids": draw(st.lists(IDS, max_size=2)),
        "max_distance": draw(st.one_of(st.just(0.5), THRESHOLDS)),
        "max_inject_distance": draw(st.one_of(st.just(0.2), st.just(0.5), THRESHOLDS)),
        "k": draw(st.integers(1, 12)),
        "vetoed_hits": draw(st.lists(st.integers(0, len(hits) - 1), max_size=3)) if hits else [],
    }
    return playbook_args({"results": results, "hits": hits, **kwargs})


@given(playbook_inputs())
def test_native_and_twin_are_byte_identical(inputs):
    args, kwargs = inputs
    out = native.apply_playbook(*args, **kwargs)
    for name in ("boosted", "injected", "rejected_role", "vetoed", "excluded"):
        event(f"{name}: {'some' if out.counts[name] else 'none'}")
    a = twin.outcome_json(out)
    b = twin.outcome_json(twin.apply_playbook(*args, **kwargs))
    assert a == b


@given(playbook_inputs())
def test_invariants(inputs):
    args, kwargs = inputs
    out = native.apply_playbook(*args, **kwargs)
    result_ids, _, _, hit_ids = args[0], args[1], args[2], args[3]
    excluded = set(kwargs["exclude_ids"])
    assert len(out.rows) <= kwargs["k"]
    distances = [r.distance for r in out.rows]
    assert distances == sorted(distances)
    for row in out.rows:
        rid = result_ids[row.result_index] if row.result_index >= 0 else hit_ids[row.hit_index]
        assert rid not in excluded
        if row.source == "inject":
            assert row.hit_index not in kwargs["vetoed_hits"]
            assert float(args[6][row.hit_index]) <= kwargs["max_inject_distance"]
    # every candidate is a distinct answer, and injected + vetoed = candidates
    keys = [(hit_ids[h], args[4][h]) for h in out.inject_candidates]
    assert len(keys) == len(set(keys))
    assert out.counts["injected"] + out.counts["vetoed"] == len(out.inject_candidates)


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_role_normalize_parity(role):
    assert native.role_normalize(role) == twin.role_normalize(role)


@given(ROLES, ROLES)
def test_role_gate_parity(a, b):
    assert native.role_gate_allows(a, b) == twin.role_gate_allows(a, b)
    assert native.role_equal(a, b) == twin.role_equal(a, b)
    # normalisation is idempotent, so the gate is a stable equivalence
    assert native.role_normalize(native.role_normalize(a)) == native.role_normalize(a)


def test_boost_rounding_parity_on_a_dense_grid():
    # One call boosting 2,000 distinct answers with random scores: every product rounds in
    # the same place in both runtimes (a twin computing the factor in float32 fails here).
    rng = np.random.default_rng(7)
    n = 2000
    ids = [f"w-{i}" for i in range(n)]
    distances = rng.uniform(0.0, 2.0, n).astype(np.float32)
    scores = rng.uniform(0.0, 1.0, n)
    hit_distances = rng.uniform(0.0, 0.5, n).astype(np.float32)
    args = (ids, ["c"] * n, distances, ids, ["c"] * n, scores, hit_distances, None)
    kwargs = {"k": n}
    out = native.apply_playbook(*args, **kwargs)
    assert out.counts["boosted"] == n
    assert twin.outcome_json(out) == twin.outcome_json(twin.apply_playbook(*args, **kwargs))
