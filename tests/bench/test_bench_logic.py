"""The benchmark's own arithmetic: the headline figure, the ratios against hnswlib, the bar."""

from __future__ import annotations

import pytest

from bench import core, summary


def sweep(*points: tuple[int, float, int, int]) -> list[dict]:
    return [
        {"ef": ef, "recall": r, "batch_qps": b, "single_qps": s, "single_p50_us": 1000 / s, "single_p99_us": 2000 / s}
        for ef, r, b, s in points
    ]


def test_headline_is_the_best_rate_at_or_above_the_bar() -> None:
    h = core.headline(sweep((10, 0.90, 9000, 5000), (16, 0.95, 7000, 4000), (32, 0.99, 7500, 3000)))
    assert h["batch_qps_at_095"] == 7500 and h["batch_ef_at_095"] == 32
    assert h["single_qps_at_095"] == 4000 and h["single_ef_at_095"] == 16
    assert h["single_p50_us_at_095"] == pytest.approx(0.25)
    assert h["max_recall"] == 0.99


def test_headline_without_a_point_at_the_bar_is_none() -> None:
    h = core.headline(sweep((10, 0.80, 9000, 5000)))
    assert h["batch_qps_at_095"] is None and h["single_qps_at_095"] is None


def result(lib: str, build: float, batch: int, single: int, mem: float) -> dict:
    return {"library": lib, "version": "x", "build_s": build, "batch_qps_at_095": batch, "single_qps_at_095": single,
            "memory_mib": mem, "save_s": 0.1, "load_s": 0.1}


def test_ratios_are_oriented_so_that_above_one_means_ahead() -> None:
    r = core.ratios([result("lakehouse", 10, 2000, 900, 50), result("hnswlib", 20, 1000, 1000, 100)])
    assert r == {"build_speed": 2.0, "batch_qps": 2.0, "single_qps": 0.9, "memory_smaller": 2.0,
                 "save_speed": 1.0, "load_speed": 1.0}


def test_ratios_need_both_libraries() -> None:
    assert core.ratios([result("lakehouse", 1, 1, 1, 1), {"library": "hnswlib", "status": "missing", "error": "x"}]) is None


def test_bar_table_marks_each_item() -> None:
    ds = {"dataset": "d", "results": [result("lakehouse", 10, 2000, 900, 50), result("hnswlib", 20, 1000, 1000, 100)]}
    row = summary.bar_table({"datasets": [ds]})[-1]
    assert row.count("✅") == 3 and row.count("❌") == 1 and "0.90x" in row


def test_a_missing_peer_is_listed() -> None:
    report = {"benchmark": "core", "datasets": [{"dataset": "d", "results": [{"library": "usearch", "status": "missing", "error": "No module named 'usearch'"}]}]}
    assert summary.missing(report) == ["- core / d: **usearch missing** (No module named 'usearch')"]
    assert "missing: No module named" in core.table(report["datasets"][0]["results"])


def test_ratios_at_the_first_ef_reaching_the_bar() -> None:
    # ours reaches 0.95 at ef 16, hnswlib at ef 32: each is compared where it first gets there
    ours = result("lakehouse", 10, 2000, 900, 50) | core.headline(sweep((10, 0.90, 9000, 5000), (16, 0.95, 6000, 3000), (32, 0.99, 5000, 2000)))
    peer = result("hnswlib", 10, 2000, 900, 50) | core.headline(sweep((16, 0.94, 6000, 3000), (32, 0.96, 4000, 2500)))
    r = core.ratios([ours, peer])
    assert r["batch_qps_first_ef"] == 1.5 and r["single_qps_first_ef"] == 1.2 and r["first_ef"] == [16, 32]
    row = summary.bar_table({"datasets": [{"dataset": "d", "results": [ours, peer]}]})[-1]
    assert "✅ 1.50x (ef 16 vs 32)" in row


def test_first_ef_is_none_below_the_bar() -> None:
    assert core.headline(sweep((10, 0.80, 9000, 5000)))["first_ef_095"] is None
