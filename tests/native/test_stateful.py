"""A hypothesis state machine drives the index against a numpy brute-force model.

Invariants checked after every step: ids() equals the model; a search returns only live
ids, at most k, ascending, each with its true distance; at or below brute_force_threshold the
answer is exactly the brute-force one; k results come back whenever k eligible items exist.
Rules cover add (new and upsert, with in-batch duplicates), delete, search with exclusions,
batched searches (tiled exact scans at several tile widths, each row equal to the single
search of its query at or below the threshold), rebuild and a to_bytes/from_bytes round trip (which must answer identically).
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lakehouse import VectorIndex, _native

DIMS = 4
ID_POOL = [f"id{i}" for i in range(40)]

vec = st.lists(st.integers(-4, 4), min_size=DIMS, max_size=DIMS).filter(lambda v: any(v))


def model_distances(model: dict[str, np.ndarray], q: np.ndarray, distance: str) -> dict[str, float]:
    out = {}
    for k, v in model.items():
        a, b = v.astype(np.float64), q.astype(np.float64)
        if distance == "cosine":
            out[k] = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        elif distance == "dot":
            out[k] = 1 - a @ b
        else:
            out[k] = float(np.linalg.norm(a - b))
    return out


def reachable(ix: VectorIndex) -> set[str]:
    """Live ids reached from the entry point through level-0 links between live items."""
    entry, _ = ix._ix._graph_entry()
    seen, todo = {entry}, [entry]
    while todo:
        for nb in ix._ix._graph_neighbours(todo.pop(), 0):
            if nb and nb not in seen:
                seen.add(nb)
                todo.append(nb)
    return seen


class IndexMachine(RuleBasedStateMachine):
    distance = "euclidean"
    threshold = 10**9
    m = 4

    def __init__(self):
        super().__init__()
        self.ix = VectorIndex(DIMS, distance=self.distance, m=self.m, ef_construction=32,
                              ef_search=64, brute_force_threshold=self.threshold)
        self.model: dict[str, np.ndarray] = {}

    @rule(items=st.lists(st.tuples(st.sampled_from(ID_POOL), vec), min_size=1, max_size=8))
    def add(self, items):
        ids = [i for i, _ in items]
        vecs = np.array([v for _, v in items], np.float32)
        new_ids = set(ids) - set(self.model)
        added, updated = self.ix.add(ids, vecs)
        for i, v in items:
            self.model[i] = np.array(v, np.float32)
        assert added == len(new_ids)
        assert added + updated == len(set(ids))

    @rule(ids=st.lists(st.sampled_from(ID_POOL), max_size=6))
    def delete(self, ids):
        expected = len(set(ids) & set(self.model))
        assert self.ix.delete(ids) == expected
        for i in ids:
            self.model.pop(i, None)

    @rule(q=vec, k=st.integers(1, 12), exclude=st.lists(st.sampled_from(ID_POOL), max_size=10))
    def search(self, q, k, exclude):
        qv = np.array(q, np.float32)
        hits = self.ix.search(qv, k=k, exclude_ids=exclude)
        eligible = {i: d for i, d in model_distances(self.model, qv, self.distance).items() if i not in set(exclude)}
        assert len(hits) == min(k, len(eligible))
        dists = [h.distance for h in hits]
        assert dists == sorted(dists)
        for h in hits:
            assert h.id in eligible
            assert abs(h.distance - eligible[h.id]) < 1e-4
        if len(self.model) <= self.threshold:
            truth = sorted(eligible.values())[:k]
            np.testing.assert_allclose(dists, truth, atol=1e-4)

    @rule(queries=st.lists(vec, min_size=1, max_size=12), k=st.integers(1, 12),
          exclude=st.lists(st.sampled_from(ID_POOL), max_size=10), width=st.sampled_from([1, 3, 8]))
    def search_batch(self, queries, k, exclude, width):
        # Exact searches of a batch share one pass over the store per tile of `width`
        # queries (scan.h); each row must be what search answers for its query alone.
        qs = np.array(queries, np.float32)
        before = _native.scan_tile()
        _native.set_scan_tile(width)
        try:
            found, dist = self.ix.search_batch(qs, k=k, exclude_ids=exclude)
        finally:
            _native.set_scan_tile(before)
        for q, row_ids, row_d in zip(qs, found, dist, strict=True):
            eligible = {i: d for i, d in model_distances(self.model, q, self.distance).items() if i not in set(exclude)}
            n = min(k, len(eligible))
            assert "" not in row_ids[:n] and row_ids[n:] == [""] * (k - n)
            assert list(row_d[:n]) == sorted(row_d[:n]) and np.isinf(row_d[n:]).all()
            for item, d in zip(row_ids[:n], row_d[:n], strict=True):
                assert abs(d - eligible[item]) < 1e-4
            if len(self.model) <= self.threshold:
                np.testing.assert_allclose(row_d[:n], sorted(eligible.values())[:n], atol=1e-4)
                single = self.ix.search(q, k=k, exclude_ids=exclude)
                assert row_ids[:n] == [h.id for h in single]
                np.testing.assert_array_equal(row_d[:n], np.array([h.distance for h in single], np.float32))

    @rule()
    def rebuild(self):
        self.ix.rebuild()

    @precondition(lambda self: len(self.model) > 0)
    @rule(q=vec)
    def round_trip(self, q):
        clone = VectorIndex.from_bytes(self.ix.to_bytes())
        qv = np.array(q, np.float32)
        a = self.ix.search(qv, k=5)
        b = clone.search(qv, k=5)
        assert [(h.id, h.distance) for h in a] == [(h.id, h.distance) for h in b]
        self.ix = clone

    @invariant()
    def every_item_reachable(self):
        # a traversal of the bottom layer from the entry point reaches every live item, and
        # the anchor bookkeeping that guarantees it is consistent
        assert self.ix.stats()["unreachable"] == 0
        assert self.ix._ix._check_graph() == ""
        if self.ix.stats()["graph_built"] and len(self.model):
            assert reachable(self.ix) == set(self.model)

    @invariant()
    def ids_match_model(self):
        assert sorted(self.ix.ids()) == sorted(self.model)
        assert len(self.ix) == len(self.model)


class ExactEuclidean(IndexMachine):
    distance = "euclidean"
    threshold = 10**9


class GraphEuclidean(IndexMachine):
    distance = "euclidean"
    threshold = 0


class GraphCosine(IndexMachine):
    distance = "cosine"
    threshold = 3


class GraphSmallM(IndexMachine):
    """m=2: lists of 4, where a whole list can be taken by anchored nodes."""

    distance = "euclidean"
    threshold = 0
    m = 2


class ExactCosine(IndexMachine):
    distance = "cosine"
    threshold = 10**9


class ExactDot(IndexMachine):
    distance = "dot"
    threshold = 10**9


TestExactEuclidean = ExactEuclidean.TestCase
TestGraphEuclidean = GraphEuclidean.TestCase
TestGraphCosine = GraphCosine.TestCase
TestExactCosine = ExactCosine.TestCase
TestGraphSmallM = GraphSmallM.TestCase
TestExactDot = ExactDot.TestCase
for case in (TestExactEuclidean, TestGraphEuclidean, TestGraphCosine, TestExactCosine, TestGraphSmallM,
             TestExactDot):
    case.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
