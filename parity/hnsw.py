"""The native index against hnswlib, and against the exact twin, on the same data.

Two claims, each with its bar stated here:

* **above the brute-force threshold** (the graph answers): at ``ef`` = 256, M = 16,
  ef_construction = 200 in both libraries, the mean top-10 overlap between the native
  index and hnswlib is at least :data:`OVERLAP_BAR` (0.95), for cosine and euclidean.
  Recall@10 of each against exact ground truth is reported beside it (the overlap says
  "the two graphs agree", the recall says "and they are right").
* **at or below the threshold** (exact scans): for cosine, euclidean and dot, every query
  gives the same normalised answer from the native index and from
  :class:`parity.reference.index.BruteForceIndex` (ids byte-equal, distances within 1e-5,
  ties as sets). hnswlib at ``ef`` = n is reported there too, not gated: a graph search is
  not exhaustive by construction, even at a width equal to the item count.

hnswlib's spaces map as cosine -> ``cosine``, euclidean -> ``l2`` (squared: its distances are
square-rooted before comparing), dot -> ``ip``. When hnswlib is not installed the probe's
status is ``missing``, which counts as a failure: it never passes without having run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parity.library import FUNCTIONS, compare

__all__ = ["OVERLAP_BAR", "HnswReport", "run"]

OVERLAP_BAR = 0.95
K = 10
M = 16
EF_CONSTRUCTION = 200
EF_SEARCH = 256
_SPACES = {"cosine": "cosine", "euclidean": "l2", "dot": "ip"}


@dataclass
class HnswReport:
    status: str  # "ok" | "failed" | "missing"
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def render(self) -> str:
        head = {"ok": "ok", "failed": "FAILED", "missing": "MISSING"}[self.status]
        return "\n".join([f"index vs hnswlib: {head}", *("  " + line for line in self.lines)])


def clustered(n: int, dims: int, seed: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic Gaussian mixture (as bench/core.py uses) and queries drawn from it."""
    rng = np.random.default_rng(seed)
    clusters = max(8, n // 200)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32) * 4
    data = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dims)).astype(np.float32)
    q = centers[rng.integers(0, clusters, queries)] + rng.standard_normal((queries, dims)).astype(np.float32)
    return data.astype(np.float32), q.astype(np.float32)


def _truth(data: np.ndarray, q: np.ndarray, distance: str, k: int) -> np.ndarray:
    if distance == "euclidean":
        a, b = data.astype(np.float64), q.astype(np.float64)
        d = (b * b).sum(1)[:, None] - 2.0 * b @ a.T + (a * a).sum(1)[None, :]
    else:
        a, b = data.astype(np.float64), q.astype(np.float64)
        if distance == "cosine":
            a = a / np.linalg.norm(a, axis=1, keepdims=True)
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
        d = 1.0 - b @ a.T
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _hnswlib_index(hnswlib: Any, data: np.ndarray, distance: str, ef: int) -> Any:
    ix = hnswlib.Index(space=_SPACES[distance], dim=data.shape[1])
    ix.init_index(max_elements=len(data), M=M, ef_construction=EF_CONSTRUCTION, random_seed=1)
    ix.add_items(data, np.arange(len(data)))
    ix.set_ef(ef)
    return ix


def _overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / K for x, y in zip(a, b, strict=True)]))


def run(n: int = 5000, dims: int = 32, queries: int = 100, small_n: int = 400, seed: int = 1) -> HnswReport:
    """Both claims (see the module docstring) on ``n`` (graph) and ``small_n`` (exact) items."""
    try:
        import hnswlib
    except ImportError:
        return HnswReport("missing", [
            "hnswlib is not installed (pip install hnswlib, or the project's 'bench' extra):",
            "the probe did not run, so it cannot pass",
        ])
    from lakehouse import VectorIndex

    report = HnswReport("ok")
    ids = [f"v{i}" for i in range(n)]
    data, q = clustered(n, dims, seed, queries)

    # 1. above the threshold: native graph vs hnswlib graph, same parameters, same data
    for distance in ("cosine", "euclidean"):
        native = VectorIndex(dims, distance=distance, m=M, ef_construction=EF_CONSTRUCTION,
                             ef_search=EF_SEARCH, brute_force_threshold=min(256, n - 1), seed=seed)
        native.add(ids, data)
        got, _ = native.search_batch(q, k=K, ef=EF_SEARCH)
        if not native.stats()["graph_built"]:
            report.status = "failed"
            report.lines.append(f"{distance}: the native index built no graph at n={n}; nothing was compared")
            continue
        theirs = _hnswlib_index(hnswlib, data, distance, EF_SEARCH)
        labels, _ = theirs.knn_query(q, k=K)
        other = [[ids[int(j)] for j in row] for row in labels]
        truth = [[ids[int(j)] for j in row] for row in _truth(data, q, distance, K)]
        overlap = _overlap(got, other)
        report.figures[f"{distance}_overlap"] = overlap
        line = (f"{distance:<9} n={n} dims={dims} ef={EF_SEARCH}: top-{K} overlap native/hnswlib "
                f"{overlap:.3f} (bar {OVERLAP_BAR}); recall@{K} native {_overlap(got, truth):.3f}, "
                f"hnswlib {_overlap(other, truth):.3f}")
        if overlap < OVERLAP_BAR:
            report.status = "failed"
            line += "  <-- below the bar"
        report.lines.append(line)

    # 2. at or below the threshold: native exact scan vs the twin, query by query
    small = data[:small_n]
    fn = FUNCTIONS["index.search"]
    for distance in ("cosine", "euclidean", "dot"):
        native = VectorIndex(dims, distance=distance, brute_force_threshold=small_n)
        native.add(ids[:small_n], small)
        twin_rows = _twin_rows(small, ids[:small_n], q, distance)
        differ = 0
        for i, row in enumerate(q):
            hits = native.search(row, k=K)
            mine = [{"id": h.id, "distance": float(h.distance), "metadata": None} for h in hits]
            a, b = compare(fn, mine, twin_rows[i])
            differ += a != b
        theirs = _hnswlib_index(hnswlib, small, distance, small_n)
        labels, _ = theirs.knn_query(q, k=K)
        exact = [[r["id"] for r in rows] for rows in twin_rows]
        h_overlap = _overlap([[ids[int(j)] for j in row] for row in labels], exact)
        line = (f"{distance:<9} n={small_n} (exact): native == reference on "
                f"{queries - differ}/{queries} queries; hnswlib at ef={small_n}: overlap {h_overlap:.3f} (reported)")
        report.figures[f"{distance}_exact_differ"] = differ
        if differ:
            report.status = "failed"
            line += "  <-- native differs from the exact twin"
        report.lines.append(line)
    return report


def _twin_rows(data: np.ndarray, ids: list[str], q: np.ndarray, distance: str) -> list[list[dict[str, Any]]]:
    """The twin's answers for every query (one index, many searches)."""
    from parity.reference.index import BruteForceIndex

    ix = BruteForceIndex(data.shape[1], distance)
    ix.add(ids, data)
    return [
        [{"id": i, "distance": d, "metadata": None} for i, d, _ in ix.search(row, k=K)]
        for row in q
    ]
