"""Scored runs and the exports: dedup by sig_hash:scorer_version, the SFT firewall (a
property over arbitrary evidence), partial only with the flag, the empty-pair guard, RAG
and preference invariants."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.distill import export as export_mod
from lakehouse.distill.common import Layout, day_dir, iter_jsonl, parse_time
from lakehouse.distill.evidence import (
    SOURCES,
    EvidenceRecord,
    Provenance,
    materialize,
    source_paths,
)
from lakehouse.distill.export import SftContamination, export
from lakehouse.distill.scored import load_scored, score
from lakehouse.distill.scoring import CATEGORIES, SCORER_VERSION, SFT_NEVER

T = "2026-05-01T10:00:00Z"


def rows(path: Path) -> list[dict]:
    return [r for _, r, err in iter_jsonl(path) if not err]


def seed(root: Path, outcomes: list[dict], sessions: list[dict] = ()) -> None:
    paths = source_paths(root)
    for source, lines in (("outcomes", outcomes), ("iterate_sessions", sessions)):
        if lines:
            paths[source].parent.mkdir(parents=True, exist_ok=True)
            paths[source].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    materialize(root)


OUTCOMES = [
    {"task": "fill welders", "result": "w-1", "success": True, "created_at": T},
    {"task": "fill welders", "result": "w-9", "success": False, "created_at": T},
    {"task": "fill welders", "result": "w-1", "outcome": "partial", "created_at": T, "n": 2},
    {"task": "   ", "result": "w-2", "success": True, "created_at": T},
    {"task": "fill cooks", "result": "  ", "success": True, "created_at": T},
    {"task": "fill cooks", "result": "c-1", "created_at": T},
]


def test_score_is_deduplicated_by_sig_and_scorer_version(tmp_path):
    seed(tmp_path, OUTCOMES)
    first = score(tmp_path)
    assert first.written == 6 and first.validation_pass
    assert first.counts["totals"] == {"accepted": 3, "partially_accepted": 1, "rejected": 1, "needs_human_review": 1}
    again = score(tmp_path)
    assert again.written == 0 and again.counts["unchanged"] == 6
    scored = load_scored(tmp_path)
    assert all(k == f"{r['sig_hash']}:{SCORER_VERSION}" == r["dedup_key"] for k, r in scored.items())
    (path,) = Layout.of(tmp_path).day_files(Layout.of(tmp_path).scored)
    assert str(path.parent).endswith("2026/05/01")


def test_sft_firewall_partial_flag_and_empty_guard(tmp_path):
    seed(tmp_path, OUTCOMES)
    score(tmp_path)
    layout = Layout.of(tmp_path)
    r = export(tmp_path, "sft")
    sft = rows(layout.sft)
    assert [(s["instruction"], s["response"]) for s in sft] == [("fill welders", "w-1")]
    assert all(s["quality_score"] == "accepted" and s["context"] == "" for s in sft)
    assert sft[0]["provenance"]["line_offset"] == 0 and sft[0]["schema_version"] == 1
    reasons = sorted(q["reason"] for q in rows(layout.quarantine("sft")))
    assert reasons == [
        "empty instruction or response",
        "empty instruction or response",
        "firewall: never exported (needs_human_review)",
        "firewall: never exported (rejected)",
        "partial without --include-partial (partially_accepted)",
    ]
    assert r.written == 1 and r.skipped == 5 and r.validation_pass
    export(tmp_path, "sft", include_partial=True)
    assert sorted(s["quality_score"] for s in rows(layout.sft)) == ["accepted", "partially_accepted"]


def test_the_sft_writer_refuses_a_forbidden_sample(tmp_path, monkeypatch):
    bad = {"id": "x", "instruction": "i", "response": "r", "quality_score": "rejected"}
    monkeypatch.setattr(export_mod, "sft_samples", lambda *a, **k: ([bad], []))
    with pytest.raises(SftContamination, match="rejected"):
        export(tmp_path, "sft")
    assert not Layout.of(tmp_path).sft.exists()
    blank = dict(bad, quality_score="accepted", response=" \n")
    monkeypatch.setattr(export_mod, "sft_samples", lambda *a, **k: ([blank], []))
    with pytest.raises(SftContamination, match="empty"):
        export(tmp_path, "sft")


def test_rag_and_preference(tmp_path):
    seed(tmp_path, OUTCOMES)
    score(tmp_path)
    layout = Layout.of(tmp_path)
    export(tmp_path, "rag")
    rag = rows(layout.rag)
    got = sorted((s["content"], s["success_score"]) for s in rag)
    assert got == [("w-1", "accepted"), ("w-1", "partially_accepted"), ("w-2", "accepted")]
    # a run without a task is titled by its source and run id
    assert next(s for s in rag if s["content"] == "w-2")["title"].startswith("outcomes outcomes:")
    assert all(s["success_score"] in ("accepted", "partially_accepted") for s in rag)
    assert all(set(s) == {"id", "title", "content", "tags", "source_run_id", "success_score", "source_category"} for s in rag)
    export(tmp_path, "preference")
    (pair,) = rows(layout.preference)
    assert (pair["chosen"], pair["rejected"]) == ("w-1", "w-9")
    assert pair["chosen_run_id"] != pair["rejected_run_id"]
    # with partial runs as chosen: the partial "w-1" duplicates no text of the rejected one
    export(tmp_path, "preference", include_partial=True)
    pairs = rows(layout.preference)
    assert len(pairs) == 2 and all(p["chosen"] != p["rejected"] for p in pairs)
    with pytest.raises(ValueError, match="export kind"):
        export(tmp_path, "csv")


def test_preference_refuses_same_text(tmp_path):
    seed(tmp_path, [
        {"task": "t", "result": "same", "success": True, "created_at": T},
        {"task": "t", "result": "same", "success": False, "created_at": T, "x": 1},
    ])
    score(tmp_path)
    r = export(tmp_path, "preference")
    assert r.written == 0 and r.skip_reasons == {"same text": 1}


# -- the firewall as a property --------------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from("ab \t\n.-_"), max_size=6)
VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(0, 1), TEXT,
                  st.sampled_from(["approved", "reject", "pass", "lgtm", "partial", "success",
                                   "failure", "accepted", "max_iter_exhausted", "high", "low"]))
METADATA = st.dictionaries(
    st.sampled_from(["verdict", "success", "outcome", "score", "confidence", "passed", "severity",
                     "applied", "final_verdict", "dry_run", "error", "escalated", "validation", "tags"]),
    VALUE, max_size=5,
)
RECORD = st.fixed_dictionaries({
    "source": st.sampled_from(SOURCES),
    "task": TEXT,
    "text": TEXT,
    "metadata": METADATA,
})


def write_evidence(root: Path, records: list[dict]) -> None:
    layout = Layout.of(root)
    for i, r in enumerate(records):
        rec = EvidenceRecord(
            schema_version=1, run_id=f"run-{i % 3}", source=r["source"], model_role="unknown",
            timestamp=T, provenance=Provenance("f", i, f"{i:064x}", T),
            task=r["task"], text=r["text"], metadata=r["metadata"],
        )
        path = day_dir(layout.evidence, parse_time(T)) / f"{r['source']}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(orjson.dumps(rec.to_json()) + b"\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(RECORD, max_size=12), include_partial=st.booleans())
def test_no_rejected_or_human_review_record_ever_reaches_sft(records, include_partial):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_evidence(root, records)
        score(root, save_receipt=False)
        category = {r["sig_hash"]: r["category"] for r in load_scored(root).values()}
        export(root, "sft", include_partial=include_partial, save_receipt=False)
        sft = rows(Layout.of(root).sft)
        allowed = {"accepted", "partially_accepted"} if include_partial else {"accepted"}
        for s in sft:
            cat = category[s["provenance"]["sig_hash"]]
            assert cat not in SFT_NEVER and cat in allowed and s["quality_score"] == cat
            assert s["instruction"].strip() and s["response"].strip()
        # and everything held back is accounted for
        held = rows(Layout.of(root).quarantine("sft"))
        assert len(sft) + len(held) == len(category)
        assert {h["sig_hash"] for h in held} | {s["provenance"]["sig_hash"] for s in sft} == set(category)


@settings(max_examples=30, deadline=None)
@given(cats=st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=8), include_partial=st.booleans())
def test_sft_firewall_holds_whatever_the_scored_runs_say(cats, include_partial):
    """Even a scored-runs file written by someone else (any categories) cannot leak."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_evidence(root, [{"source": "outcomes", "task": "t", "text": f"r{i}", "metadata": {}}
                              for i in range(len(cats))])
        layout = Layout.of(root)
        path = day_dir(layout.scored, parse_time(T)) / "scored.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"".join(
            orjson.dumps({"sig_hash": f"{i:064x}", "scorer_version": SCORER_VERSION, "category": c,
                          "run_id": f"run-{i}", "timestamp": T}) + b"\n"
            for i, c in enumerate(cats)))
        export(root, "sft", include_partial=include_partial, save_receipt=False)
        got = sorted(s["quality_score"] for s in rows(layout.sft))
        want = sorted(c for c in cats if c == "accepted" or (include_partial and c == "partially_accepted"))
        assert got == want
