"""Replay against a scripted backend, and promotion against a recording bulk route."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from lakehouse.clients.base import UpstreamError
from lakehouse.distill.common import Layout, iter_jsonl, parse_time
from lakehouse.distill.evidence import materialize, source_paths
from lakehouse.distill.promote import promote
from lakehouse.distill.replay import PREVIEW_CHARS, ReplayRequest, replay
from lakehouse.distill.scored import score
from lakehouse.matrix.ranking import playbook_id

FILL = '{"fills": [{"candidate_id": "w-1", "name": "A"}]}'


class Backend:
    def __init__(self, replies=(), search_error=None, verdicts=()):
        self.replies = list(replies)
        self.verdicts = list(verdicts)
        self.search_error = search_error
        self.calls: list[tuple] = []

    async def search(self, body):
        self.calls.append(("search", body))
        if self.search_error:
            raise self.search_error
        return {"results": [{"id": "r1", "distance": 0.1, "metadata": {
            "id": "r1", "title": "old task", "content": "x" * 500, "source_run_id": "s-1",
            "success_score": "accepted", "tags": "a;b"}}]}

    async def chat(self, model, messages, max_tokens):
        self.calls.append(("chat", model, messages))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def validate(self, kind, artifact, context):
        self.calls.append(("validate", kind, artifact, context))
        return self.verdicts.pop(0) if self.verdicts else (True, [])


def kinds(backend):
    return [c[0] for c in backend.calls]


async def test_a_passing_replay_is_logged_with_its_provenance(tmp_path):
    b = Backend([FILL])
    row = await replay(b, ReplayRequest("need w", local_model="m", kind="fill", context={"target_count": 1}), tmp_path)
    assert kinds(b) == ["search", "chat", "validate"]
    assert b.calls[0][1] == {"query_text": "need w", "corpora": ["rag"], "k": 5}
    assert "old task" in b.calls[1][2][1]["content"] and "Task: need w" in b.calls[1][2][1]["content"]
    assert b.calls[2][1:] == ("fill", orjson.loads(FILL), {"target_count": 1})
    assert row["validation"] == {"passed": True, "reasons": []} and row["artifact"] == orjson.loads(FILL)
    art = row["retrieved"][0]
    assert art == {"rag_id": "r1", "source_run_id": "s-1", "title": "old task", "content_preview": "x" * PREVIEW_CHARS,
                   "success_score": "accepted", "tags": ["a", "b"], "score": 0.1}
    assert row["recorded_run_id"] == hashlib.sha256(row["recorded_at"].encode()).hexdigest()
    assert row["task_hash"] == hashlib.sha256(b"need w").hexdigest()
    assert parse_time(row["recorded_at"]) is not None and len(row["recorded_at"].split(".")[1]) == 10
    logged = [r for _, r, _ in iter_jsonl(Layout.of(tmp_path).replay_runs)]
    assert logged == [row]


async def test_model_failure_is_a_failed_validation_then_escalation(tmp_path):
    b = Backend([UpstreamError("gateway", 502, "boom"), FILL])
    req = ReplayRequest("t", local_model="small", escalation_model="big", allow_escalation=True)
    row = await replay(b, req, tmp_path)
    assert row["escalation_path"] == ["small", "big"] and row["model_used"] == "big"
    assert row["validation"]["passed"] is True
    b = Backend([UpstreamError("gateway", 502, "boom")])
    row = await replay(b, ReplayRequest("t", local_model="small"), tmp_path)
    assert row["validation"] == {"passed": False, "reasons": ["local call failed: gateway 502: boom"]}


async def test_validation_failure_escalates_unless_local_only(tmp_path):
    b = Backend([FILL, FILL], verdicts=[(False, ['{"Consistency":{"reason":"x"}}']), (True, [])])
    req = ReplayRequest("t", local_model="s", escalation_model="b", allow_escalation=True, kind="fill")
    row = await replay(b, req, tmp_path)
    assert row["validation"]["passed"] and row["escalation_path"] == ["s", "b"]
    b = Backend(["no json here"])
    req = ReplayRequest("t", local_model="s", escalation_model="b", allow_escalation=True, local_only=True, kind="fill")
    row = await replay(b, req, tmp_path)
    assert row["escalation_path"] == ["s"]
    assert row["validation"] == {"passed": False, "reasons": ["local: no JSON object in the response"]}
    row = await replay(Backend(["  "]), ReplayRequest("t", local_model="s"), tmp_path)
    assert row["validation"]["reasons"] == ["local: empty response"]


async def test_dry_run_no_retrieval_and_retrieval_failure(tmp_path):
    b = Backend()
    row = await replay(b, ReplayRequest("t", dry_run=True), tmp_path)
    assert kinds(b) == ["search"] and row["dry_run"] and row["validation"]["reasons"] == ["dry run: no model called"]
    b = Backend(["answer"])
    row = await replay(b, ReplayRequest("t", local_model="m", no_retrieval=True), tmp_path)
    assert kinds(b) == ["chat"] and row["retrieved"] == [] and row["validation"]["passed"]
    assert b.calls[0][2][1]["content"] == "Task: t"
    b = Backend(["never asked"], search_error=UpstreamError("gateway", 502, "matrixd: missing corpus"))
    row = await replay(b, ReplayRequest("t", local_model="m"), tmp_path)
    assert kinds(b) == ["search"]  # never bypasses retrieval
    assert row["validation"]["reasons"][0].startswith("retrieval failed:")
    assert len(list(iter_jsonl(Layout.of(tmp_path).replay_runs))) == 3
    with pytest.raises(ValueError, match="task"):
        await replay(b, ReplayRequest("  ", local_model="m"), tmp_path)
    with pytest.raises(ValueError, match="model"):
        await replay(b, ReplayRequest("t"), tmp_path)


SESSION = {
    "schema": "session.iterate.v1", "session_id": "s-{i}", "timestamp": "2026-05-03T07:30:00Z",
    "kind": "fill", "prompt": "need welders", "final_verdict": "accepted", "attempts": [],
    "artifact": {"fills": [{"candidate_id": "w-1", "name": "A"}, {"candidate_id": "w-2", "name": "B"}]},
}


async def test_promote_is_idempotent_by_playbook_id(tmp_path):
    sessions = [dict(SESSION, session_id="s-1"), dict(SESSION, session_id="s-2"),  # same answer twice
                dict(SESSION, session_id="s-3", final_verdict="max_iter_exhausted", prompt="other")]
    path = source_paths(tmp_path)["iterate_sessions"]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in sessions))
    materialize(tmp_path)
    score(tmp_path)
    sent: list = []

    async def bulk(entries, corpus):
        sent.append((entries, corpus))
        results = [{"index": i, "playbook_id": playbook_id(e["query_text"], e["answer_id"], e["answer_corpus"])}
                   for i, e in enumerate(entries)]
        if entries[-1]["answer_id"] == "w-2" and len(sent) == 1:
            results[-1] = {"index": len(entries) - 1, "error": "embedd down"}
        return {"results": results}

    r = await promote(tmp_path, bulk, answer_corpus="workers", playbook_corpus="pb", role="Welder")
    (entries, corpus), = sent
    assert corpus == "pb" and [e["answer_id"] for e in entries] == ["w-1", "w-2"]
    assert entries[0] == {"query_text": "need welders", "answer_id": "w-1", "answer_corpus": "workers",
                          "score": 1.0, "tags": ["distill", "iterate_sessions"], "role": "Welder"}
    assert r.counts["recorded"] == 1 and r.counts["failed"] == 1 and not r.validation_pass
    assert r.skip_reasons == {"not accepted (rejected)": 1}
    # the failed one is tried again; the recorded one is not
    r = await promote(tmp_path, bulk, answer_corpus="workers", playbook_corpus="pb")
    assert [e["answer_id"] for e in sent[1][0]] == ["w-2"] and r.counts["recorded"] == 1
    r = await promote(tmp_path, bulk, answer_corpus="workers", playbook_corpus="pb")
    assert len(sent) == 2 and r.counts["already_promoted"] == 2 and r.counts["recorded"] == 0
    # another playbook corpus is another playbook
    dry = await promote(tmp_path, None, answer_corpus="workers", playbook_corpus="pb2", dry_run=True)
    assert dry.counts["to_promote"] == 2 and len(sent) == 2
    with pytest.raises(ValueError):
        await promote(tmp_path, None, answer_corpus="", playbook_corpus="pb")
