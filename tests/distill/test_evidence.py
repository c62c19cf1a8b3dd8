"""The materializer: the sixteen transforms, sig_hash, line offsets, idempotency, the day
partition, bad lines, the receipt, and the schema-version hard reject."""

from __future__ import annotations

import hashlib
import json

import orjson
import pytest

from lakehouse.distill.common import Layout, iter_jsonl
from lakehouse.distill.evidence import (
    EVIDENCE_SCHEMA_VERSION,
    SOURCES,
    SkipRow,
    decode_evidence,
    load_evidence,
    materialize,
    source_paths,
    transform,
)

T = "2026-05-01T10:00:00Z"
#: one usable row per source, and the task / text each must give
ROWS = {
    "distilled_facts": ({"question": "q", "fact": "f", "confidence": 0.9, "created_at": T}, "q", "f"),
    "distilled_procedures": ({"title": "t", "steps": ["a", "b"], "created_at": T}, "t", '["a","b"]'),
    "distilled_config_hints": ({"key": "k", "hint": "h", "created_at": T}, "k", "h"),
    "contract_analyses": ({"contract": "c-1", "analysis": "a", "contractor": "acme", "created_at": T}, "c-1", "a"),
    "mode_experiments": ({"task": "t", "response": "r", "score": 0.9, "model": "m", "created_at": T}, "t", "r"),
    "scrum_reviews": ({"subject": "PR 1", "review": "ok", "verdict": "approved", "created_at": T}, "PR 1", "ok"),
    "observer_escalations": ({"endpoint": "/x", "reason": "slow", "created_at": T}, "/x", "slow"),
    "audit_facts": ({"subject": "s", "fact": "f", "passed": True, "created_at": T}, "s", "f"),
    "auto_apply": ({"task": "t", "patch": "p", "applied": True, "created_at": T}, "t", "p"),
    "observer_reviews": ({"subject": "s", "review": "r", "verdict": "pass", "created_at": T}, "s", "r"),
    "audits": ({"subject": "s", "summary": "x", "severity": "low", "created_at": T}, "s", "x"),
    "outcomes": ({"task": "t", "result": "r", "success": True, "created_at": T}, "t", "r"),
    "iterate_sessions": (
        {"schema": "session.iterate.v1", "session_id": "sess", "timestamp": T, "prompt": "p",
         "final_verdict": "accepted", "artifact": {"fills": []}, "model": "m", "attempts": [{}]},
        "p", '{"fills":[]}',
    ),
    "observer_ops": (
        {"endpoint": "/v1/sql", "input_summary": "q", "output_summary": "3 rows", "success": True,
         "timestamp": T, "source": "mcp"},
        "/v1/sql q", "3 rows",
    ),
    "pathway_traces": (
        {"op": "add", "trace": {"uid": "u1", "content": {"task": "t", "confidence": 0.9},
                                "created_at_ns": 1_777_000_000_000_000_000, "tags": ["x"]}},
        "t", '{"confidence":0.9,"task":"t"}',
    ),
    "replay_runs": (
        {"schema": "replay_run.v1", "recorded_at": T, "recorded_run_id": "rr", "task": "t",
         "response": "r", "model_used": "m", "escalation_path": ["m"],
         "validation": {"passed": True, "reasons": []}, "retrieved": [{"rag_id": "x"}]},
        "t", "r",
    ),
}


def reference_sig(row) -> str:
    """sha256 of canonical key-sorted compact JSON, computed without the project's code."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_source_has_a_transform_case():
    assert set(ROWS) == set(SOURCES) and len(SOURCES) == 16


@pytest.mark.parametrize("source", SOURCES)
def test_each_transform(source):
    row, task, text = ROWS[source]
    sig = reference_sig(row)
    rec = transform(source, row, source_file="f.jsonl", line_offset=0, recorded_at="R", sig=sig)
    assert (rec.source, rec.task, rec.text) == (source, task, text)
    assert rec.schema_version == EVIDENCE_SCHEMA_VERSION and rec.run_id
    out = rec.to_json()
    assert out["provenance"] == {"source_file": "f.jsonl", "line_offset": 0, "sig_hash": sig, "recorded_at": "R"}
    assert decode_evidence(orjson.dumps(out)) == rec  # round trip


def test_transforms_are_pure_and_skip_with_reasons():
    row = dict(ROWS["outcomes"][0])
    a = transform("outcomes", row, source_file="f", line_offset=3, recorded_at="R", sig="s")
    b = transform("outcomes", row, source_file="f", line_offset=3, recorded_at="R", sig="s")
    assert a == b and row == ROWS["outcomes"][0]
    with pytest.raises(SkipRow, match="missing created_at"):
        transform("outcomes", {"task": "t", "timestamp": T}, source_file="f", line_offset=0, recorded_at="R", sig="s")
    with pytest.raises(SkipRow, match="not a time"):
        transform("audits", {"created_at": "yesterday"}, source_file="f", line_offset=0, recorded_at="R", sig="s")
    with pytest.raises(SkipRow, match="not a JSON object"):
        transform("audits", [1, 2], source_file="f", line_offset=0, recorded_at="R", sig="s")
    with pytest.raises(SkipRow, match="session.iterate.v1"):
        transform("iterate_sessions", {"timestamp": T}, source_file="f", line_offset=0, recorded_at="R", sig="s")
    with pytest.raises(SkipRow, match="carries no new trace"):
        transform("pathway_traces", {"op": "retire", "uid": "u"}, source_file="f", line_offset=0, recorded_at="R", sig="s")
    with pytest.raises(ValueError, match="unknown source"):
        transform("nope", {}, source_file="f", line_offset=0, recorded_at="R", sig="s")


def write_sources(root, rows_by_source):
    paths = source_paths(root)
    for source, lines in rows_by_source.items():
        paths[source].parent.mkdir(parents=True, exist_ok=True)
        with open(paths[source], "wb") as f:
            for line in lines:
                f.write(line if isinstance(line, bytes) else orjson.dumps(line))
                f.write(b"\n")


def evidence_rows(root):
    layout = Layout.of(root)
    return {str(p.relative_to(layout.evidence)): [r for _, r, _ in iter_jsonl(p)] for p in layout.day_files(layout.evidence)}


def test_materialize_partitions_by_day_skips_bad_lines_and_is_idempotent(tmp_path):
    later = dict(ROWS["outcomes"][0], created_at="2026-05-02T23:59:59.5+00:00", task="t2")
    write_sources(tmp_path, {
        "outcomes": [ROWS["outcomes"][0], b"{not json", b"", later, {"task": "no time"}, b"[1]"],
        "scrum_reviews": [ROWS["scrum_reviews"][0]],
    })
    r = materialize(tmp_path)
    assert (r.read, r.written, r.skipped) == (6, 3, 3)
    assert r.skip_reasons == {"missing created_at": 1, "not a JSON object": 1, "not JSON": 1}
    assert any(e.endswith(":1: not JSON") for e in r.examples)
    assert r.validation_pass and r.counts["sources"]["outcomes"]["written"] == 2
    files = evidence_rows(tmp_path)
    assert sorted(files) == ["2026/05/01/outcomes.jsonl", "2026/05/01/scrum_reviews.jsonl", "2026/05/02/outcomes.jsonl"]
    first = files["2026/05/01/outcomes.jsonl"][0]
    # line_offset counts physical lines from 0, blank ones included
    assert first["provenance"]["line_offset"] == 0
    assert files["2026/05/02/outcomes.jsonl"][0]["provenance"]["line_offset"] == 3
    assert first["provenance"]["sig_hash"] == reference_sig(ROWS["outcomes"][0])
    before = {p: (tmp_path / "evidence" / p).read_bytes() for p in files}
    again = materialize(tmp_path)
    assert again.written == 0 and again.counts["unchanged"] == 3 and again.validation_pass
    assert {p: (tmp_path / "evidence" / p).read_bytes() for p in files} == before
    # a receipt per run, with input hashes
    receipts = sorted((tmp_path / "reports" / "distillation").glob("*/materialize.json"))
    assert len(receipts) == 2
    data = orjson.loads(receipts[0].read_bytes())
    assert data["inputs"] and all(len(i["sha256"]) == 64 for i in data["inputs"])
    assert data["git_sha"] is None or len(data["git_sha"]) == 40


def test_a_new_row_appended_later_is_the_only_one_written(tmp_path):
    write_sources(tmp_path, {"outcomes": [ROWS["outcomes"][0]]})
    materialize(tmp_path)
    path = source_paths(tmp_path)["outcomes"]
    with open(path, "ab") as f:
        f.write(orjson.dumps(dict(ROWS["outcomes"][0], task="another")) + b"\n")
    r = materialize(tmp_path)
    assert r.written == 1 and r.counts["unchanged"] == 1


def test_only_the_named_sources_and_unknown_names_refused(tmp_path):
    write_sources(tmp_path, {"outcomes": [ROWS["outcomes"][0]], "audits": [ROWS["audits"][0]]})
    assert materialize(tmp_path, sources=["audits"]).written == 1
    with pytest.raises(ValueError, match="unknown source"):
        materialize(tmp_path, sources=["bogus"])


def test_schema_version_mismatch_is_a_hard_reject(tmp_path):
    write_sources(tmp_path, {"outcomes": [ROWS["outcomes"][0]]})
    materialize(tmp_path)
    (path,) = Layout.of(tmp_path).day_files(Layout.of(tmp_path).evidence)
    good = orjson.loads(path.read_bytes().splitlines()[0])
    future = dict(good, schema_version=2, provenance=dict(good["provenance"], sig_hash="f" * 64))
    with open(path, "ab") as f:
        f.write(orjson.dumps(future) + b"\n")
    with pytest.raises(ValueError, match="hard reject"):
        decode_evidence(future)
    from lakehouse.distill.common import Receipt

    tally = Receipt("t")
    loaded = load_evidence(tmp_path, receipt=tally)
    assert list(loaded) == [good["provenance"]["sig_hash"]] and tally.skipped == 1
