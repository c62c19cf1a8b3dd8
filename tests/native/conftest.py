"""Helpers for the native-core tests: clustered data and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest


def clustered(n: int, dims: int, clusters: int = 20, seed: int = 0, spread: float = 1.0) -> np.ndarray:
    """A Gaussian mixture: the shape of real embedding data, where HNSW recall is earned."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32) * 4
    labels = rng.integers(0, clusters, n)
    return (centers[labels] + spread * rng.standard_normal((n, dims))).astype(np.float32)


def brute_force(data: np.ndarray, queries: np.ndarray, k: int, distance: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN (indices, distances) in float64, the distances as the index reports them."""
    x = data.astype(np.float64)
    q = queries.astype(np.float64)
    if distance == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1.0 - q @ x.T
    elif distance == "dot":
        d = 1.0 - q @ x.T
    else:
        d = np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :], 0))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def recall_at_k(found: list[list[str]], truth: np.ndarray, ids: list[str]) -> float:
    hits = 0
    for row, t in zip(found, truth, strict=True):
        hits += len(set(row) & {ids[j] for j in t})
    return hits / truth.size


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
