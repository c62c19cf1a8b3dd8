"""Self-recall: is every live item found by its own vector? (issue 18's measurement)

    python -m bench.selfrecall                  # 20,000 x 64 clustered, then the three scenarios
    python -m bench.selfrecall --n 5000 --libs lakehouse

Scenarios, each beside hnswlib at the same M / ef_construction / ef:
- ``new-clusters``: build over n points of a Gaussian mixture, then add n/10 points of
  clusters the graph has never seen, in batches of 100 (as a live system does);
- ``churn``: then delete every second original item and add n/2 points of further new
  clusters (hnswlib: ``replace_deleted``);
- ``rebuild``: ours only, after ``rebuild()``.
After each, every live item is queried with its own vector (k=1, the default ef); a miss is
an answer that is neither the item nor an item at the same distance (an identical vector).
hnswlib's misses are counted the same way. Results: bench/results/selfrecall.json and a
table on stdout. Progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, log, machine, write_json


def mixture(n: int, dims: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32) * 4
    labels = rng.integers(0, clusters, n)
    return (centers[labels] + rng.standard_normal((n, dims))).astype(np.float32)


def own_distance(x: np.ndarray, distance: str) -> np.ndarray:
    """Each vector's distance to itself, as the index reports it."""
    if distance == "dot":
        return 1.0 - (x.astype(np.float64) ** 2).sum(1)
    return np.zeros(len(x))


class Ours:
    name = "lakehouse"

    def __init__(self, dims: int, distance: str, m: int, efc: int, ef: int) -> None:
        from lakehouse import VectorIndex

        self.ix = VectorIndex(dims, distance=distance, m=m, ef_construction=efc, ef_search=ef)

    def add(self, keys: np.ndarray, x: np.ndarray) -> None:
        self.ix.add([str(k) for k in keys], x)

    def delete(self, keys: np.ndarray) -> None:
        self.ix.delete([str(k) for k in keys])

    def top1(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids, dist = self.ix.search_batch(x, k=1)
        return np.array([int(r[0]) if r[0] else -1 for r in ids]), dist[:, 0]

    def rebuild(self) -> bool:
        self.ix.rebuild()
        return True

    def unreachable(self) -> int | None:
        return self.ix.stats().get("unreachable")


class Hnswlib:
    name = "hnswlib"

    def __init__(self, dims: int, distance: str, m: int, efc: int, ef: int) -> None:
        import hnswlib

        space = {"euclidean": "l2", "cosine": "cosine", "dot": "ip"}[distance]
        self.ix = hnswlib.Index(space=space, dim=dims)
        self.ix.init_index(max_elements=16, M=m, ef_construction=efc, allow_replace_deleted=True)
        self.ix.set_ef(ef)
        self.l2 = distance == "euclidean"

    def add(self, keys: np.ndarray, x: np.ndarray) -> None:
        need = self.ix.get_current_count() + len(keys)
        if need > self.ix.get_max_elements():
            self.ix.resize_index(max(need, self.ix.get_max_elements() * 3 // 2))
        self.ix.add_items(x, keys, replace_deleted=True)

    def delete(self, keys: np.ndarray) -> None:
        for k in keys:
            self.ix.mark_deleted(int(k))

    def top1(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, dist = self.ix.knn_query(x, k=1)
        return labels[:, 0].astype(np.int64), np.sqrt(dist[:, 0]) if self.l2 else dist[:, 0]

    def rebuild(self) -> bool:
        return False

    def unreachable(self) -> int | None:
        return None


def misses(lib: Any, keys: np.ndarray, x: np.ndarray, distance: str) -> int:
    found, dist = lib.top1(x)
    own = own_distance(x, distance)
    ok = (found == keys) | (dist <= own + 1e-5)
    return int((~ok).sum())


def run(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.selfrecall", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dims", type=int, default=64)
    p.add_argument("--distance", default="euclidean", choices=["euclidean", "cosine", "dot"])
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--libs", default="lakehouse,hnswlib")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "selfrecall.json"), help="where the JSON goes")
    a = p.parse_args(argv)
    n, d = a.n, a.dims
    base = mixture(n, d, max(10, n // 1000), a.seed)
    fresh = mixture(n // 10, d, 10, a.seed + 1000)
    churn = mixture(n // 2, d, 10, a.seed + 2000)
    rows = []
    for name in a.libs.split(","):
        cls = {"lakehouse": Ours, "hnswlib": Hnswlib}[name]
        lib = cls(d, a.distance, a.m, a.efc, a.ef)
        t0 = time.perf_counter()
        log(f"[{name}] build {n:,} x {d} ...")
        lib.add(np.arange(n), base)
        keys = np.arange(n)
        vecs = base
        log(f"[{name}] bulk: self-search ...")
        rows.append({"library": name, "scenario": "bulk", "live": len(keys),
                     "misses": misses(lib, keys, vecs, a.distance), "unreachable": lib.unreachable()})
        fk = np.arange(n, n + len(fresh))
        log(f"[{name}] adding {len(fresh):,} points of new clusters in batches of 100 ...")
        for s in range(0, len(fresh), 100):
            lib.add(fk[s : s + 100], fresh[s : s + 100])
        rows.append({"library": name, "scenario": "new-clusters", "live": len(fk),
                     "misses": misses(lib, fk, fresh, a.distance), "unreachable": lib.unreachable()})
        log(f"[{name}] churn: deleting every second original item, adding {len(churn):,} ...")
        lib.delete(np.arange(0, n, 2))
        ck = np.arange(n + len(fresh), n + len(fresh) + len(churn))
        for s in range(0, len(churn), 100):
            lib.add(ck[s : s + 100], churn[s : s + 100])
        keys = np.concatenate([np.arange(1, n, 2), fk, ck])
        vecs = np.concatenate([base[1::2], fresh, churn])
        rows.append({"library": name, "scenario": "churn", "live": len(keys),
                     "misses": misses(lib, keys, vecs, a.distance), "unreachable": lib.unreachable()})
        if lib.rebuild():
            rows.append({"library": name, "scenario": "churn + rebuild", "live": len(keys),
                         "misses": misses(lib, keys, vecs, a.distance), "unreachable": lib.unreachable()})
        log(f"[{name}] done in {time.perf_counter() - t0:.0f} s")
    report = {"benchmark": "selfrecall", "params": {k: v for k, v in vars(a).items() if k != "out"}, "machine": machine(), "rows": rows}
    write_json(Path(a.out), report)
    return report


def table(report: dict[str, Any]) -> str:
    out = ["| library | scenario | items queried | misses | unreachable |", "|---|---|---:|---:|---:|"]
    for r in report["rows"]:
        u = "" if r["unreachable"] is None else str(r["unreachable"])
        out.append(f"| {r['library']} | {r['scenario']} | {r['live']:,} | {r['misses']} | {u} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(run(sys.argv[1:])))
