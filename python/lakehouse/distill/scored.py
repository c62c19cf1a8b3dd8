"""Scored runs (contract 14.1): every evidence record scored once per scorer version, under
``scored-runs/YYYY/MM/DD/scored.jsonl`` (the day of the evidence), deduplicated by
``sig_hash:scorer_version``: a second run writes nothing new, and a new scorer version
scores everything again beside the old rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Layout, Receipt, append_jsonl, day_dir, iter_jsonl, now_rfc3339, parse_time
from .evidence import load_evidence
from .scoring import CATEGORIES, SCORER_VERSION, dedup_key, score_record

__all__ = ["SCORED_SCHEMA_VERSION", "score", "load_scored"]

SCORED_SCHEMA_VERSION = 1


def load_scored(root: Path | str, *, scorer_version: str | None = SCORER_VERSION) -> dict[str, dict[str, Any]]:
    """Scored rows by dedup key (``scorer_version=None``: every version). Rows that are not
    objects, or lack a known category, are left out."""
    layout = Layout.of(root)
    out: dict[str, dict[str, Any]] = {}
    for path in layout.day_files(layout.scored):
        for _, row, err in iter_jsonl(path):
            if err or not isinstance(row, dict) or row.get("category") not in CATEGORIES:
                continue
            if not isinstance(row.get("sig_hash"), str):
                continue
            if scorer_version is not None and row.get("scorer_version") != scorer_version:
                continue
            out.setdefault(f"{row['sig_hash']}:{row.get('scorer_version')}", row)
    return out


def score(
    root: Path | str,
    *,
    progress: Callable[[int, int], None] | None = None,
    save_receipt: bool = True,
) -> Receipt:
    """Score every evidence record not yet scored by this scorer version; the receipt
    (``counts``: written per category, and the totals over all scored rows)."""
    layout = Layout.of(root)
    receipt = Receipt("score")
    evidence = load_evidence(layout.root, receipt=receipt)
    # evidence lines read are this stage's input; a duplicate sig (same row twice) is unchanged
    done = load_scored(layout.root)
    scored_at = now_rfc3339()
    out: dict[Path, list[dict[str, Any]]] = {}
    written_by_cat = dict.fromkeys(CATEGORIES, 0)
    unchanged = receipt.read - receipt.skipped - len(evidence)
    total = len(evidence)
    for i, (sig, rec) in enumerate(sorted(evidence.items(), key=lambda kv: (kv[1].timestamp, kv[0]))):
        if progress is not None and i % 500 == 0:
            progress(i, total)
        key = dedup_key(sig)
        if key in done:
            unchanged += 1
            continue
        when = parse_time(rec.timestamp)
        if when is None:
            receipt.skip("evidence: timestamp is not a time", rec.provenance.source_file)
            continue
        s = score_record(rec.to_json())
        row = {
            "schema_version": SCORED_SCHEMA_VERSION,
            "run_id": rec.run_id,
            "sig_hash": sig,
            "dedup_key": key,
            "source": rec.source,
            "timestamp": rec.timestamp,
            "scored_at": scored_at,
            **s.to_json(),
        }
        out.setdefault(day_dir(layout.scored, when) / "scored.jsonl", []).append(row)
        written_by_cat[s.category] += 1
    for target, rows in sorted(out.items()):
        receipt.written += append_jsonl(target, rows)
        receipt.add_output(target)
    totals = dict.fromkeys(CATEGORIES, 0)
    for row in load_scored(layout.root).values():
        totals[row["category"]] += 1
    receipt.counts = {
        "unchanged": unchanged,
        "scorer_version": SCORER_VERSION,
        "written_by_category": written_by_cat,
        "totals": totals,
    }
    if save_receipt:
        receipt.save(layout)
    return receipt
