"""Audit baselines (load / append), the drift table, and the audit over a data root."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.distill.audit import (
    DEFAULT_DRIFT_WARN_THRESHOLD,
    RUST_COMPAT_METRICS,
    AuditBaseline,
    append_baseline,
    build_drift_table,
    collect_metrics,
    format_drift_table,
    load_last_baseline,
    run_audit,
)
from lakehouse.distill.common import Layout


def test_threshold_and_flags():
    assert DEFAULT_DRIFT_WARN_THRESHOLD == 0.20
    prior = {"a": 100, "b": 100, "c": 100, "d": 0, "e": 0, "g": 10}
    current = {"g": 12, "a": 120, "b": 121, "c": 79, "d": 0, "e": 3, "f": 5}
    rows = {r.metric: r for r in build_drift_table(prior, current)}
    assert [r.metric for r in build_drift_table(prior, current)] == sorted(current)
    assert rows["a"].flag == "ok" and rows["a"].pct_change == pytest.approx(0.20)  # not above
    assert rows["b"].flag == "warn" and rows["c"].flag == "warn"  # up and down
    assert (rows["d"].pct_change, rows["d"].flag) == (None, "ok")  # 0 -> 0
    assert (rows["e"].pct_change, rows["e"].flag) == (None, "warn")  # 0 -> more
    assert (rows["f"].prior, rows["f"].flag) == (None, "first_run")
    assert rows["g"].flag == "ok"
    assert all(r.flag == "first_run" for r in build_drift_table(None, current))
    with pytest.raises(ValueError):
        build_drift_table(prior, current, threshold=float("nan"))


@given(prior=st.integers(1, 10**6), current=st.integers(0, 10**6))
def test_flag_is_warn_exactly_when_the_relative_change_exceeds_the_threshold(prior, current):
    (row,) = build_drift_table({"m": prior}, {"m": current})
    assert (row.flag == "warn") == (abs(current - prior) / prior > 0.20)


def test_load_and_append(tmp_path):
    path = tmp_path / "_kb" / "audit_baselines.jsonl"
    assert load_last_baseline(path) is None
    append_baseline(path, AuditBaseline("2026-04-27T04:47:30.220Z", {"p2_evidence_rows": 12}))
    append_baseline(path, AuditBaseline("2026-04-27T15:43:38.019Z", {"p2_evidence_rows": 82}, "a" * 40))
    with open(path, "ab") as f:
        f.write(b"\n\n")
    last = load_last_baseline(path)
    assert last.metrics == {"p2_evidence_rows": 82} and last.git_commit == "a" * 40
    first_line = orjson.loads(path.read_bytes().splitlines()[0])
    assert "git_commit" not in first_line  # omitempty
    rows = build_drift_table(load_last_baseline(path), {"p2_evidence_rows": 82})
    assert rows[0].flag == "ok"
    with open(path, "ab") as f:
        f.write(b'{"recorded_at": "2026')
    with pytest.raises(ValueError, match="truncated"):
        load_last_baseline(path)
    # appending after a torn line starts a line of its own
    append_baseline(path, AuditBaseline("2026-04-28T00:00:00Z", {"x": 1}))
    assert load_last_baseline(path).metrics == {"x": 1}


def test_the_roundtrip_report_example():
    rows = {r.metric: r for r in build_drift_table(
        {"p2_evidence_rows": 12, "p3_accepted": 0, "p4_rag_rows": 448},
        {"p2_evidence_rows": 82, "p3_accepted": 386, "p4_rag_rows": 448})}
    assert rows["p2_evidence_rows"].flag == "warn"
    assert rows["p2_evidence_rows"].pct_change == pytest.approx(5.833, abs=1e-3)
    assert rows["p3_accepted"].flag == "warn" and rows["p4_rag_rows"].flag == "ok"
    text = format_drift_table(list(rows.values()))
    assert "p2_evidence_rows                 12         82    +583.3%  warn" in text
    lines = text.splitlines()
    assert len({len(line) for line in lines[2:]}) <= 2  # fixed width (flag length varies)


def test_audit_on_an_empty_root_then_a_forbidden_sft_row(tmp_path):
    metrics, checks = collect_metrics(tmp_path)
    assert set(RUST_COMPAT_METRICS) <= set(metrics) and not any(metrics.values())
    assert all(ok for ok, _ in checks.values())
    first = run_audit(tmp_path)
    assert first.prior is None and all(r.flag == "first_run" for r in first.drift)
    layout = Layout.of(tmp_path)
    layout.sft.parent.mkdir(parents=True)
    layout.sft.write_bytes(orjson.dumps({"quality_score": "rejected"}) + b"\n")
    layout.replay_runs.parent.mkdir(parents=True, exist_ok=True)
    layout.replay_runs.write_bytes(b'{"schema": "replay_run.v1", "validation": {"passed": true}}\n{"torn')
    second = run_audit(tmp_path)
    assert not second.passed
    assert not second.checks["sft_firewall"][0] and not second.checks["replay_log"][0]
    assert {r.metric: r.flag for r in second.drift}["p4_sft_rows"] == "warn"
    assert second.baseline.metrics["p7_replay_runs"] == 1
    assert len(layout.baselines.read_bytes().splitlines()) == 2
    run_audit(tmp_path, record=False)
    assert len(layout.baselines.read_bytes().splitlines()) == 2


def test_a_bad_receipt_fails_its_check(tmp_path):
    bad = Layout.of(tmp_path).reports / "r1" / "score.json"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(orjson.dumps({"git_sha": "abc", "validation_pass": True}))
    metrics, checks = collect_metrics(tmp_path)
    assert metrics["p5_receipt_failures"] == 1 and "40 hex" in checks["receipts"][1]
