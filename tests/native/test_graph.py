"""Structural invariants of the graph, read through the test hooks."""

from __future__ import annotations

import numpy as np
import pytest

from lakehouse import VectorIndex

from .conftest import clustered


def links(ix: VectorIndex, layer: int) -> dict[str, list[str]]:
    return {i: ix._ix._graph_neighbours(i, layer) for i in ix.ids()}


@pytest.mark.parametrize("m", [4, 16])
def test_lists_are_bounded_unique_and_never_self(m):
    x = clustered(3000, 16, seed=3)
    ids = [f"w-{i}" for i in range(len(x))]
    ix = VectorIndex(16, distance="euclidean", m=m, brute_force_threshold=0)
    ix.add(ids, x)
    entry, top = ix._ix._graph_entry()
    assert entry in ix and top == ix.stats()["max_level"] >= 1
    for layer, cap in ((0, 2 * m), (1, m)):
        for node, nbrs in links(ix, layer).items():
            assert len(nbrs) <= cap
            assert node not in nbrs
            live = [n for n in nbrs if n]
            assert len(live) == len(set(live))
    assert all(len(v) > 0 for v in links(ix, 0).values())


def test_deletes_are_repaired_and_rebuild_forgets_them():
    x = clustered(2000, 8, seed=5)
    ids = [f"w-{i}" for i in range(len(x))]
    ix = VectorIndex(8, distance="euclidean", brute_force_threshold=0)
    ix.add(ids, x)
    gone = set(ids[::3])
    ix.delete(sorted(gone))
    # a deleted node's former neighbours no longer list it ("" marks a link to a tombstone,
    # which may remain only from nodes that were not its neighbours)
    survivors = links(ix, 0)
    dangling = sum(1 for v in survivors.values() for n in v if n == "")
    assert dangling < 0.05 * sum(len(v) for v in survivors.values())
    entry, _ = ix._ix._graph_entry()
    assert entry not in gone
    ix.rebuild()
    assert all("" not in v for v in links(ix, 0).values())
    assert ix._ix._graph_neighbours(ids[0], 0) == []  # deleted: not in the graph


def test_no_graph_below_threshold():
    ix = VectorIndex(4, brute_force_threshold=100)
    ix.add(["a", "b"], np.eye(2, 4, dtype=np.float32))
    assert ix._ix._graph_entry() == ("", -1)
    assert ix._ix._graph_neighbours("a", 0) == []
