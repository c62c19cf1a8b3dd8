"""observerd's distill.* workflow nodes: the stages chained in one workflow run."""

from __future__ import annotations

import orjson
from aiohttp import web

from lakehouse.distill.common import Layout, iter_jsonl
from lakehouse.distill.modes import MODE_NAMES
from lakehouse.matrix.ranking import playbook_id
from lakehouse.services.observerd import create_app

SESSION = {
    "schema": "session.iterate.v1", "session_id": "s-1", "timestamp": "2026-05-03T07:30:00Z",
    "kind": "fill", "model": "qwen3.5:latest", "prompt": "need 1 welder in Toledo",
    "iterations": 1, "max_iterations": 3, "final_verdict": "accepted", "attempts": [],
    "artifact": {"fills": [{"candidate_id": "w-00001", "name": "James Young"}]},
    "grounded_in_roster": True,
}


def fake_matrixd_chatd(seen: list) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.path, body))
        if request.path == "/matrix/search":
            return web.json_response({"results": [{"id": "r1", "distance": 0.05, "metadata": {
                "id": "r1", "title": "need 1 welder in Toledo", "content": "w-00001",
                "source_run_id": "s-1", "success_score": "accepted", "tags": "iterate_sessions"}}]})
        if request.path == "/matrix/playbooks/bulk":
            return web.json_response({"results": [
                {"index": i, "playbook_id": playbook_id(e["query_text"], e["answer_id"], e["answer_corpus"]),
                 "playbook_corpus": body["playbook_corpus"]} for i, e in enumerate(body["entries"])],
                "recorded": len(body["entries"]), "failed": 0})
        if request.path == "/chat":
            return web.json_response({"model": body["model"], "provider": "ollama", "content": "w-00001",
                                      "finish_reason": "stop", "usage": {}})
        return web.json_response({"error": "no route"}, status=404)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


async def test_a_workflow_runs_the_distill_stages(aiohttp_client, aiohttp_server, config):
    seen: list = []
    server = await aiohttp_server(fake_matrixd_chatd(seen))
    url = str(server.make_url("")).rstrip("/")
    root = Layout.of(config.data_dir)
    (root.root / "validator").mkdir(parents=True)
    (root.root / "validator" / "sessions.jsonl").write_bytes(orjson.dumps(SESSION) + b"\n")
    client = await aiohttp_client(create_app(config.replace("observerd", matrixd_url=url, chatd_url=url)))
    wf = {"name": "distill-loop", "nodes": [
        {"id": "mat", "mode": "distill.materialize", "inputs": {"sources": ["iterate_sessions"]}},
        {"id": "score", "mode": "distill.score", "depends_on": ["mat"]},
        {"id": "rag", "mode": "distill.export", "depends_on": ["score"], "inputs": {"kind": "rag"}},
        {"id": "replay", "mode": "distill.replay", "depends_on": ["rag"],
         "inputs": {"task": "need 1 welder in Toledo"}},
        {"id": "promote", "mode": "distill.promote", "depends_on": ["score"],
         "inputs": {"answer_corpus": "workers", "playbook_corpus": "pb"}},
        {"id": "audit", "mode": "distill.audit", "depends_on": ["promote", "replay"]},
        {"id": "bad", "mode": "distill.export", "inputs": {"kind": "nope"}},
    ]}
    r = await client.post("/observer/workflow/run", data=orjson.dumps(wf))
    result = await r.json()
    assert r.status == 200
    out = {n["id"]: n for n in result["nodes"]}
    assert [k for k, n in out.items() if not n["success"]] == ["bad"]
    assert "export kind must be one of" in out["bad"]["error"]
    assert out["mat"]["output"]["written"] == 1
    assert out["score"]["output"]["counts"]["totals"]["accepted"] == 1
    assert out["rag"]["output"]["written"] == 1
    assert out["replay"]["output"]["validation"] == {"passed": True, "reasons": []}
    assert out["replay"]["output"]["retrieved"][0]["rag_id"] == "r1"
    assert out["promote"]["output"]["counts"]["recorded"] == 1
    assert out["audit"]["output"]["baseline"]["metrics"]["p7_replay_runs"] == 1
    assert sorted(p for p, _ in seen) == ["/chat", "/matrix/playbooks/bulk", "/matrix/search"]
    assert [r for _, r, _ in iter_jsonl(root.replay_runs)][0]["task"] == "need 1 welder in Toledo"
    assert set(MODE_NAMES) <= {n["mode"] for n in result["nodes"]}


async def test_distill_nodes_without_a_data_dir_fail_the_node(config):
    from lakehouse.distill.modes import register_distill_modes
    from lakehouse.memory.workflow import ModeServices, Node, Workflow, builtin_registry, plan, run

    reg = register_distill_modes(builtin_registry())
    p = plan(Workflow(name="w", nodes=[Node(id="s", mode="distill.score")]), reg)
    res = await run(p, reg, ModeServices())
    assert res.nodes[0].status == "failed" and "no data directory" in res.nodes[0].error
