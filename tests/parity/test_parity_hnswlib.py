"""The index-vs-hnswlib probe at small n (the full probe uses n = 5000)."""

from __future__ import annotations

import sys

import parity.hnsw as hnsw
import pytest


def test_native_agrees_with_hnswlib_and_with_the_exact_twin():
    pytest.importorskip("hnswlib", reason="the hnswlib probe needs hnswlib (the bench extra)")
    report = hnsw.run(n=2500, dims=16, queries=40, small_n=250)
    assert report.ok, report.render()
    for distance in ("cosine", "euclidean"):
        assert report.figures[f"{distance}_overlap"] >= hnsw.OVERLAP_BAR
    for distance in ("cosine", "euclidean", "dot"):
        assert report.figures[f"{distance}_exact_differ"] == 0
    assert "top-10 overlap" in report.render()


def test_missing_hnswlib_is_reported_and_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # import now raises ImportError
    report = hnsw.run(n=100, queries=2, small_n=10)
    assert report.status == "missing" and not report.ok
    assert "MISSING" in report.render() and "did not run" in report.render()
