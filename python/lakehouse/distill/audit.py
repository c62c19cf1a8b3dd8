"""Audit baselines and the audit itself (contract 14.5).

:func:`run_audit` runs the audit-full phases that apply to this project over a data root:

=====  ==================  ===========================================================
phase  what                metrics / checks
=====  ==================  ===========================================================
2      evidence tally      ``p2_evidence_rows`` (valid rows), ``p2_evidence_skips``
                           (undecodable rows and schema-version rejects)
3      scoring tally       ``p3_accepted``, ``p3_partial``, ``p3_rejected``, ``p3_human``
                           (current scorer version)
4      exports             ``p4_sft_rows``, ``p4_rag_rows``, ``p4_pref_pairs``,
                           ``p4_total_quarantined``; check: no SFT row of a never-category
5      receipts            ``p5_receipts``, ``p5_receipt_failures``; check: each receipt
                           has a 40-hex ``git_sha`` (or null), sha256 file refs and a
                           boolean ``validation_pass``
7      replay log          ``p7_replay_runs``, ``p7_replay_passed``; check: every row of
                           ``_kb/replay_runs.jsonl`` parses and is ``replay_run.v1``
=====  ==================  ===========================================================

Then it appends an :class:`AuditBaseline` to ``_kb/audit_baselines.jsonl`` and builds the
drift table against the previous baseline (:func:`build_drift_table`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .common import Layout, Receipt, git_sha, iter_jsonl, now_rfc3339
from .evidence import load_evidence
from .scored import load_scored
from .scoring import ACCEPTED, NEEDS_HUMAN_REVIEW, PARTIALLY_ACCEPTED, REJECTED, SFT_NEVER

__all__ = [
    "AuditBaseline",
    "DriftRow",
    "DEFAULT_DRIFT_WARN_THRESHOLD",
    "RUST_COMPAT_METRICS",
    "load_last_baseline",
    "append_baseline",
    "build_drift_table",
    "format_drift_table",
    "run_audit",
    "AuditReport",
]

DEFAULT_DRIFT_WARN_THRESHOLD = 0.20
RUST_COMPAT_METRICS = (
    "p2_evidence_rows",
    "p2_evidence_skips",
    "p3_accepted",
    "p3_partial",
    "p3_rejected",
    "p3_human",
    "p4_rag_rows",
    "p4_sft_rows",
    "p4_pref_pairs",
    "p4_total_quarantined",
)
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class AuditBaseline:
    recorded_at: str
    metrics: dict[str, int]
    git_commit: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recorded_at": self.recorded_at}
        if self.git_commit:  # omitempty
            out["git_commit"] = self.git_commit
        out["metrics"] = dict(self.metrics)
        return out

    @classmethod
    def from_json(cls, value: Any) -> AuditBaseline:
        if not isinstance(value, Mapping):
            raise ValueError("an audit baseline must be a JSON object")
        recorded_at = value.get("recorded_at")
        metrics = value.get("metrics")
        if not isinstance(recorded_at, str) or not isinstance(metrics, Mapping):
            raise ValueError("an audit baseline needs recorded_at (string) and metrics (object)")
        out: dict[str, int] = {}
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"metric {k!r}: expected an integer")
            out[str(k)] = v
        commit = value.get("git_commit") or ""
        return cls(recorded_at, out, commit if isinstance(commit, str) else "")


def load_last_baseline(path: Path) -> AuditBaseline | None:
    """The most recent baseline (the last non-blank line). A missing file -> None; blank
    lines are tolerated; a last line that does not parse (truncated) -> ``ValueError``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if not lines:
        return None
    try:
        value = orjson.loads(lines[-1])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: the last baseline line is not JSON (truncated?)") from exc
    return AuditBaseline.from_json(value)


def append_baseline(path: Path, baseline: AuditBaseline) -> None:
    """Append one baseline line (O_APPEND; the parent directory is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        line = orjson.dumps(baseline.to_json()) + b"\n"
        if size:
            # a file that does not end in a newline (torn write) gets one first
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class DriftRow:
    metric: str
    prior: int | None
    current: int
    #: relative change (current - prior) / prior; None when there is no prior or it is 0
    pct_change: float | None
    #: first_run | ok | warn
    flag: str

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "prior": self.prior,
            "current": self.current,
            "pct_change": self.pct_change,
            "flag": self.flag,
        }


def build_drift_table(
    prior: AuditBaseline | Mapping[str, int] | None,
    current: Mapping[str, int],
    threshold: float = DEFAULT_DRIFT_WARN_THRESHOLD,
) -> list[DriftRow]:
    """One row per current metric, sorted by name.

    No prior value -> ``first_run``; prior 0 -> pct_change None and ``ok`` when the current
    value is 0, ``warn`` when it is above; otherwise ``warn`` when ``|change| / prior`` is
    above ``threshold`` (strictly), else ``ok``.
    """
    if not threshold >= 0:
        raise ValueError("threshold must be >= 0")
    before = prior.metrics if isinstance(prior, AuditBaseline) else (prior or {})
    rows = []
    for name in sorted(current):
        cur = int(current[name])
        if name not in before:
            rows.append(DriftRow(name, None, cur, None, "first_run"))
            continue
        old = int(before[name])
        if old == 0:
            rows.append(DriftRow(name, 0, cur, None, "ok" if cur == 0 else "warn"))
            continue
        pct = (cur - old) / old
        rows.append(DriftRow(name, old, cur, pct, "warn" if abs(pct) > threshold else "ok"))
    return rows


def format_drift_table(rows: list[DriftRow]) -> str:
    """Fixed-width text: metric, prior, current, change, flag."""
    head = f"{'metric':<24} {'prior':>10} {'current':>10} {'change':>10}  flag"
    lines = [head, "-" * len(head)]
    for r in rows:
        prior = "-" if r.prior is None else str(r.prior)
        pct = "-" if r.pct_change is None else f"{r.pct_change * 100:+.1f}%"
        lines.append(f"{r.metric:<24} {prior:>10} {r.current:>10} {pct:>10}  {r.flag}")
    return "\n".join(lines)


@dataclass
class AuditReport:
    baseline: AuditBaseline
    prior: AuditBaseline | None
    drift: list[DriftRow]
    #: name -> (passed, detail)
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks.values())

    @property
    def warnings(self) -> int:
        return sum(r.flag == "warn" for r in self.drift)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "baseline": self.baseline.to_json(),
            "prior": self.prior.to_json() if self.prior else None,
            "drift": [r.to_json() for r in self.drift],
            "checks": {k: {"passed": ok, "detail": d} for k, (ok, d) in self.checks.items()},
        }


def _count_lines(path: Path) -> tuple[int, list[Any]]:
    rows = [v for _, v, err in iter_jsonl(path) if not err]
    return len(rows), rows


def _check_receipt(value: Any) -> str:
    """"" when a receipt is well formed, else what is wrong."""
    if not isinstance(value, dict):
        return "not a JSON object"
    sha = value.get("git_sha")
    if sha is not None and not (isinstance(sha, str) and _HEX40.match(sha)):
        return "git_sha is not 40 hex characters"
    if not isinstance(value.get("validation_pass"), bool):
        return "validation_pass is not a boolean"
    for ref in list(value.get("inputs") or []) + list(value.get("outputs") or []):
        if not isinstance(ref, dict) or not _HEX64.match(str(ref.get("sha256", ""))):
            return "a file reference lacks a sha256"
    if value.get("validation_pass") is False:
        return "validation_pass is false"
    return ""


def collect_metrics(root: Path | str) -> tuple[dict[str, int], dict[str, tuple[bool, str]]]:
    """The audit's metrics and checks over a data root (nothing written)."""
    layout = Layout.of(root)
    checks: dict[str, tuple[bool, str]] = {}
    # phase 2
    tally = Receipt("audit")
    evidence = load_evidence(layout.root, receipt=tally)
    metrics = {"p2_evidence_rows": len(evidence), "p2_evidence_skips": tally.skipped}
    # phase 3
    cats = {ACCEPTED: 0, PARTIALLY_ACCEPTED: 0, REJECTED: 0, NEEDS_HUMAN_REVIEW: 0}
    for row in load_scored(layout.root).values():
        cats[row["category"]] += 1
    metrics.update(
        p3_accepted=cats[ACCEPTED],
        p3_partial=cats[PARTIALLY_ACCEPTED],
        p3_rejected=cats[REJECTED],
        p3_human=cats[NEEDS_HUMAN_REVIEW],
    )
    # phase 4
    sft_n, sft_rows = _count_lines(layout.sft)
    rag_n, _ = _count_lines(layout.rag)
    pref_n, _ = _count_lines(layout.preference)
    quarantined = sum(_count_lines(layout.quarantine(k))[0] for k in ("sft", "rag", "preference"))
    metrics.update(
        p4_sft_rows=sft_n, p4_rag_rows=rag_n, p4_pref_pairs=pref_n, p4_total_quarantined=quarantined
    )
    bad = [r for r in sft_rows if not isinstance(r, dict) or r.get("quality_score") in SFT_NEVER
           or r.get("quality_score") not in (ACCEPTED, PARTIALLY_ACCEPTED)]
    checks["sft_firewall"] = (
        not bad,
        f"{len(bad)} SFT row(s) of a forbidden category" if bad else f"{sft_n} SFT row(s), none forbidden",
    )
    # phase 5
    receipts = sorted(layout.reports.glob("*/*.json")) if layout.reports.is_dir() else []
    failures = []
    for path in receipts:
        try:
            problem = _check_receipt(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            problem = "not readable JSON"
        if problem:
            failures.append(f"{path.parent.name}/{path.name}: {problem}")
    metrics.update(p5_receipts=len(receipts), p5_receipt_failures=len(failures))
    checks["receipts"] = (
        not failures,
        "; ".join(failures[:5]) if failures else f"{len(receipts)} receipt(s) well formed",
    )
    # phase 7
    runs = passed = 0
    problems = []
    for offset, row, err in iter_jsonl(layout.replay_runs):
        if err or not isinstance(row, dict) or row.get("schema") != "replay_run.v1":
            problems.append(f"line {offset}: {err or 'not a replay_run.v1 row'}")
            continue
        runs += 1
        v = row.get("validation")
        passed += bool(isinstance(v, dict) and v.get("passed") is True)
    metrics.update(p7_replay_runs=runs, p7_replay_passed=passed)
    checks["replay_log"] = (
        not problems,
        "; ".join(problems[:5]) if problems else f"{runs} replay run(s) parse",
    )
    return metrics, checks


def run_audit(
    root: Path | str,
    *,
    threshold: float = DEFAULT_DRIFT_WARN_THRESHOLD,
    record: bool = True,
    recorded_at: str | None = None,
) -> AuditReport:
    """Collect the metrics, compare with the last baseline, append the new one (``record``)."""
    layout = Layout.of(root)
    prior = load_last_baseline(layout.baselines)
    metrics, checks = collect_metrics(layout.root)
    baseline = AuditBaseline(recorded_at or now_rfc3339(), metrics, git_sha() or "")
    drift = build_drift_table(prior, metrics, threshold)
    if record:
        append_baseline(layout.baselines, baseline)
    return AuditReport(baseline, prior, drift, checks)
