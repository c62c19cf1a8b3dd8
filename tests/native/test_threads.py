"""Many threads mixing add, search and delete: no crash, no wrong answer, consistent end state."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lakehouse import VectorIndex

DIMS = 16


def run_mixed(seconds: float, threads: int, threshold: int) -> None:
    ix = VectorIndex(DIMS, distance="euclidean", brute_force_threshold=threshold, threads=2)
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3000, DIMS)).astype(np.float32)
    ix.add([f"b{i}" for i in range(len(base))], base)
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []
    # Each writer owns its id range, so the final state is predictable per writer.
    final: dict[int, dict[str, np.ndarray]] = {}

    def writer(w: int) -> None:
        r = np.random.default_rng(w + 1)
        mine: dict[str, np.ndarray] = {}
        try:
            while time.monotonic() < stop:
                n = int(r.integers(1, 40))
                ids = [f"w{w}-{int(i)}" for i in r.integers(0, 300, n)]
                vecs = r.standard_normal((n, DIMS)).astype(np.float32)
                ix.add(ids, vecs)
                for i, v in zip(ids, vecs, strict=True):
                    mine[i] = v
                dels = [f"w{w}-{int(i)}" for i in r.integers(0, 300, int(r.integers(0, 20)))]
                ix.delete(dels)
                for i in dels:
                    mine.pop(i, None)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        final[w] = mine

    def reader(seed: int) -> None:
        r = np.random.default_rng(100 + seed)
        try:
            while time.monotonic() < stop:
                q = r.standard_normal(DIMS).astype(np.float32)
                hits = ix.search(q, k=10)
                d = [h.distance for h in hits]
                assert d == sorted(d) and len(hits) == 10
                for h in hits:
                    if h.id.startswith("b"):  # base items never change: distance must be exact
                        exact = float(np.linalg.norm(base[int(h.id[1:])] - q))
                        assert abs(exact - h.distance) < 1e-3
                found, dist = ix.search_batch(r.standard_normal((8, DIMS)).astype(np.float32), k=5)
                assert all(len(row) == 5 and "" not in row for row in found)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    workers += [threading.Thread(target=reader, args=(r,)) for r in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors[:3]
    expected = {f"b{i}" for i in range(len(base))}
    for mine in final.values():
        expected |= set(mine)
    assert sorted(ix.ids()) == sorted(expected)
    # The store is exact: every surviving item reads back its last vector. The graph is
    # approximate: under this much concurrent churn a very rare node can be left hard to
    # reach (HNSW's known failure; measured here at a few per 10,000), so self-search is held
    # to recall, not perfection.
    checked = found = 0
    for mine in final.values():
        for i, v in mine.items():
            np.testing.assert_array_equal(ix.get(i)[0], v)
            checked += 1
            found += ix.search(v, k=1)[0].id == i
    assert found >= 0.99 * checked, (found, checked)
    # the saved form of a churned index loads and answers the same
    clone = VectorIndex.from_bytes(ix.to_bytes())
    q = np.ones(DIMS, np.float32)
    assert [h.id for h in clone.search(q, k=5)] == [h.id for h in ix.search(q, k=5)]


@pytest.mark.parametrize("threshold", [0, 100_000])
def test_threads_mix_add_search_delete(threshold):
    run_mixed(seconds=3.0, threads=3, threshold=threshold)


@pytest.mark.slow
def test_threads_soak():
    run_mixed(seconds=60.0, threads=6, threshold=0)
