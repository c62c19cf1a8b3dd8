"""VectorIndex API: results, metadata rules, upserts, deletes and every bad-input case."""

from __future__ import annotations

import numpy as np
import pytest

from lakehouse import Hit, VectorIndex

from .conftest import brute_force


def small(distance="cosine", n=50, dims=8, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dims)).astype(np.float32)
    ix = VectorIndex(dims, distance=distance, **kw)
    ids = [f"w-{i:03d}" for i in range(n)]
    ix.add(ids, x)
    return ix, ids, x


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "dot"])
def test_exact_search_matches_brute_force(distance):
    ix, ids, x = small(distance, n=200, dims=12)
    q = np.random.default_rng(9).standard_normal((20, 12)).astype(np.float32)
    idx, dist = brute_force(x, q, 10, distance)
    for i in range(len(q)):
        hits = ix.search(q[i], k=10)
        assert [h.id for h in hits] == [ids[j] for j in idx[i]]
        np.testing.assert_allclose([h.distance for h in hits], dist[i], rtol=1e-5, atol=1e-5)
        assert all(isinstance(h, Hit) for h in hits)


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "dot"])
def test_graph_search_is_near_exact_with_true_distances(distance):
    # Above the threshold HNSW is approximate: a node can lose every in-link to pruning and
    # become unreachable from the top layers (rare, hnswlib shares it), so the graph path is
    # held to recall, and every distance it reports must be the true one.
    ix, ids, x = small(distance, n=200, dims=12, brute_force_threshold=0, ef_search=200)
    q = np.random.default_rng(9).standard_normal((20, 12)).astype(np.float32)
    idx, _ = brute_force(x, q, 10, distance)
    found = 0
    for i in range(len(q)):
        hits = ix.search(q[i], k=10)
        assert len(hits) == 10
        found += len({h.id for h in hits} & {ids[j] for j in idx[i]})
        all_idx, all_dist = brute_force(x, q[i : i + 1], len(x), distance)
        exact = {ids[j]: d for j, d in zip(all_idx[0], all_dist[0], strict=True)}
        for h in hits:
            assert h.distance == pytest.approx(exact[h.id], rel=1e-5, abs=1e-5)
    assert found / (10 * len(q)) >= 0.97


def test_distances_are_the_documented_ones():
    ix = VectorIndex(2, distance="euclidean")
    ix.add(["o", "p"], np.array([[0, 0], [3, 4]], np.float32))
    assert ix.search(np.array([0, 0], np.float32), k=2)[1].distance == pytest.approx(5.0)
    ix = VectorIndex(2, distance="dot")
    ix.add(["a"], np.array([[2, 0]], np.float32))
    assert ix.search(np.array([3, 0], np.float32), k=1)[0].distance == pytest.approx(1 - 6)
    ix = VectorIndex(2, distance="cosine")
    ix.add(["a", "b"], np.array([[5, 0], [0, 1]], np.float32))
    hits = ix.search(np.array([1, 0], np.float32), k=2)
    assert [h.distance for h in hits] == pytest.approx([0.0, 1.0], abs=1e-6)
    np.testing.assert_allclose(ix.get("a")[0], [1, 0])  # stored normalised


def test_metadata_none_keeps_empty_dict_clears():
    ix = VectorIndex(2)
    v = np.array([[1, 0]], np.float32)
    ix.add(["a"], v, [{"role": "picker"}])
    assert ix.get("a")[1] == {"role": "picker"}
    ix.add(["a"], v, [None])
    assert ix.get("a")[1] == {"role": "picker"}
    ix.add(["a"], np.array([[0, 1]], np.float32))  # new vector, metadata omitted: kept
    assert ix.get("a")[1] == {"role": "picker"}
    ix.add(["a"], v, [{}])
    assert ix.get("a")[1] is None
    ix.add(["a"], v, [b"raw\x00bytes"])
    assert ix.get("a")[1] == b"raw\x00bytes"
    assert ix.search(v[0], k=1)[0].metadata == b"raw\x00bytes"


def test_upsert_counts_and_last_duplicate_wins():
    ix = VectorIndex(2, distance="euclidean")
    assert ix.add(["a", "b"], np.array([[0, 0], [1, 1]], np.float32)) == (2, 0)
    added, updated = ix.add(
        ["b", "c", "b"], np.array([[5, 5], [2, 2], [9, 9]], np.float32), [{"n": 1}, None, {"n": 2}]
    )
    assert (added, updated) == (1, 1)
    vec, meta = ix.get("b")
    np.testing.assert_array_equal(vec, [9, 9])
    assert meta == {"n": 2}
    assert sorted(ix.ids()) == ["a", "b", "c"]
    assert len(ix) == 3


def test_delete_and_reuse():
    ix, ids, x = small("euclidean", n=30, brute_force_threshold=0)
    assert ix.delete(ids[:10] + ["nope"]) == 10
    assert len(ix) == 20 and ids[0] not in ix and ids[10] in ix
    hits = ix.search(x[0], k=30)
    assert {h.id for h in hits} == set(ids[10:])
    assert ix.stats()["tombstones"] == 10
    ix.add(["new"], x[:1])
    assert ix.stats()["tombstones"] == 9 and ix.stats()["slots"] == 30  # a slot was reused
    assert ix.search(x[0], k=1)[0].id == "new"
    with pytest.raises(KeyError):
        ix.get(ids[0])


@pytest.mark.parametrize("threshold", [2048, 0])
def test_exclude_ids_still_returns_k(threshold):
    ix, ids, x = small("cosine", n=100, brute_force_threshold=threshold, ef_search=10)
    excluded = ids[:90]
    hits = ix.search(x[0], k=10, exclude_ids=excluded)
    assert len(hits) == 10
    assert {h.id for h in hits} == set(ids[90:])
    found, dist = ix.search_batch(x[:3], k=10, exclude_ids=excluded)
    assert all(set(r) == set(ids[90:]) for r in found)


def test_search_batch_pads_short_rows():
    ix, ids, x = small("euclidean", n=3)
    found, dist = ix.search_batch(x[:2], k=5)
    assert dist.shape == (2, 5) and dist.dtype == np.float32
    for row, drow in zip(found, dist, strict=True):
        assert row[3:] == ["", ""] and np.isinf(drow[3:]).all() and np.isfinite(drow[:3]).all()
    assert len(ix.search(x[0], k=5)) == 3


@pytest.mark.parametrize("threshold", [0, 10_000])  # graph search, exact scan
def test_search_batch_hits_carry_each_hits_metadata(threshold):
    ix, ids, x = small("cosine", n=120, brute_force_threshold=threshold)
    ix.add(ids[:60], x[:60], [{"n": i} if i % 3 else None for i in range(60)])
    ix.add(ids[60:], x[60:], [b"raw-" + str(i).encode() for i in range(60, 120)])
    excluded = ids[:5]
    rows = ix.search_batch_hits(x[:7], k=8, exclude_ids=excluded)
    found, dist = ix.search_batch(x[:7], k=8, exclude_ids=excluded)
    assert len(rows) == 7
    for hits, row_ids, row_d in zip(rows, found, dist, strict=True):
        assert [h.id for h in hits] == row_ids
        assert [h.distance for h in hits] == [float(d) for d in row_d]
        assert all(isinstance(h, Hit) for h in hits)
        for h in hits:
            assert h.metadata == ix.get(h.id)[1]
    # each item's own vector finds it first, with its metadata: a dict, none, raw bytes
    own = ix.search_batch_hits(x[[10, 12, 70]], k=1)
    assert [(h.id, h.metadata) for [h] in own] == [(ids[10], {"n": 10}), (ids[12], None), (ids[70], b"raw-70")]


def test_search_batch_hits_drop_padding():
    ix, ids, x = small("euclidean", n=3)
    rows = ix.search_batch_hits(x[:2], k=5)
    assert [len(r) for r in rows] == [3, 3]
    assert [h.id for h in rows[0]] == [h.id for h in ix.search(x[0], k=5)]
    assert VectorIndex(3).search_batch_hits(np.ones((2, 3), np.float32), k=2) == [[], []]
    with pytest.raises(ValueError):
        ix.search_batch_hits(x[0], k=2)  # one vector, not a batch


def test_empty_index():
    ix = VectorIndex(3)
    assert ix.search(np.ones(3, np.float32), k=3) == []
    assert ix.ids() == [] and len(ix) == 0
    found, dist = ix.search_batch(np.ones((2, 3), np.float32), k=2)
    assert found == [["", ""], ["", ""]]
    assert ix.add([], np.zeros((0, 3), np.float32)) == (0, 0)


def _bad_calls(ix, dims):
    good = np.ones((2, dims), np.float32)
    nan = good.copy()
    nan[1, 0] = np.nan
    inf = good.copy()
    inf[0, 1] = np.inf
    zero = good.copy()
    zero[1] = 0
    return [
        ("wrong dims", lambda: ix.add(["a", "b"], np.ones((2, dims + 1), np.float32))),
        ("NaN", lambda: ix.add(["a", "b"], nan)),
        ("inf", lambda: ix.add(["a", "b"], inf)),
        ("zero under cosine", lambda: ix.add(["a", "b"], zero)),
        ("empty id", lambda: ix.add(["a", ""], good)),
        ("non-string id", lambda: ix.add(["a", 7], good)),
        ("single string as ids", lambda: ix.add("ab", good)),
        ("count mismatch", lambda: ix.add(["a"], good)),
        ("metadata count", lambda: ix.add(["a", "b"], good, [None])),
        ("metadata type", lambda: ix.add(["a", "b"], good, [None, 5])),
        ("not numeric", lambda: ix.add(["a", "b"], [["x"] * dims] * 2)),
        ("k zero", lambda: ix.search(good[0], k=0)),
        ("k negative", lambda: ix.search(good[0], k=-1)),
        ("k bool", lambda: ix.search(good[0], k=True)),
        ("ef zero", lambda: ix.search(good[0], k=1, ef=0)),
        ("query dims", lambda: ix.search(np.ones(dims + 1, np.float32))),
        ("query NaN", lambda: ix.search(nan[1])),
        ("query zero", lambda: ix.search(zero[1])),
        ("batch NaN", lambda: ix.search_batch(nan)),
        ("batch shape", lambda: ix.search_batch(good[0])),
        ("exclude type", lambda: ix.search(good[0], exclude_ids=[1])),
        ("exclude string", lambda: ix.search(good[0], exclude_ids="a")),
        ("delete non-string", lambda: ix.delete([None])),
    ]


def test_bad_input_raises_value_error_and_changes_nothing():
    ix, ids, x = small("cosine", n=40, dims=6, brute_force_threshold=10)
    before = (sorted(ix.ids()), ix.to_bytes())
    for name, call in _bad_calls(ix, 6):
        with pytest.raises(ValueError):
            call()
        assert (sorted(ix.ids()), ix.to_bytes()) == before, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dims": 0},
        {"dims": -1},
        {"dims": 70000},
        {"dims": 4, "distance": "manhattan"},
        {"dims": 4, "m": 1},
        {"dims": 4, "m": 1000},
        {"dims": 4, "ef_construction": 0},
        {"dims": 4, "ef_search": 0},
        {"dims": 4, "threads": -1},
        {"dims": 4, "brute_force_threshold": -5},
        {"dims": 4.5},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        VectorIndex(**kwargs)


def test_get_missing_is_key_error():
    ix = VectorIndex(2)
    with pytest.raises(KeyError):
        ix.get("nope")
    with pytest.raises(KeyError):
        ix.get(3)  # type: ignore[arg-type]
    assert 3 not in ix


def test_stats_and_settings():
    ix, ids, x = small("euclidean", n=100, brute_force_threshold=10)
    s = ix.stats()
    for key in ("count", "dims", "distance", "m", "ef_construction", "ef_search", "tombstones",
                "rebuilds", "memory_bytes", "graph_built"):
        assert key in s
    assert s["count"] == 100 and s["graph_built"] and s["rebuilds"] == 0
    assert s["memory_bytes"] >= 100 * 8 * 4
    ix.ef_search = 99
    assert ix.ef_search == 99 and ix.stats()["ef_search"] == 99
    ix.rebuild()
    assert ix.stats()["rebuilds"] == 1
    with pytest.raises(ValueError):
        ix.ef_search = 0
    ix.set_threads(1)
    assert ix.stats()["threads"] == 1


def test_float64_and_list_input_are_accepted():
    ix = VectorIndex(3, distance="euclidean")
    ix.add(["a"], [[1.0, 2.0, 3.0]])
    ix.add(["b"], np.array([[1, 2, 4]], dtype=np.float64))
    assert ix.search([1, 2, 3], k=1)[0].id == "a"


def test_graph_failure_loses_nothing():
    ix, ids, x = small("euclidean", n=300, brute_force_threshold=50)
    ix._ix._inject_graph_failures(3)
    fresh = np.random.default_rng(5).standard_normal((5, 8)).astype(np.float32)
    assert ix.add([f"f{i}" for i in range(5)], fresh) == (5, 0)
    s = ix.stats()
    assert s["graph_failures"] >= 3 and s["rebuilds"] >= 1
    for i in range(5):
        assert ix.search(fresh[i], k=1)[0].id == f"f{i}"
    assert len(ix) == 305


def test_search_answers_are_hits_made_by_the_core():
    from lakehouse import _native

    ix, ids, x = small("cosine", n=5)
    ix.add(ids[:2], x[:2], [{"a": [1, "ü"]}, b"\x00raw"])
    by_id = {h.id: h for h in ix.search(x[0], k=5)}
    assert all(type(h) is Hit for h in by_id.values())
    assert by_id[ids[0]].metadata == {"a": [1, "ü"]} and by_id[ids[1]].metadata == b"\x00raw"
    assert by_id[ids[2]].metadata is None and by_id[ids[0]] == Hit(*by_id[ids[0]])
    with pytest.raises(TypeError):
        _native.set_hit_type(dict, lambda b: b)  # not a tuple type: refused, nothing changed
    assert type(ix.search(x[0], k=1)[0]) is Hit
