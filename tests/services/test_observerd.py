"""observerd over HTTP: events, stats, the inbox, and workflow runs against fake matrixd/chatd."""

from __future__ import annotations

import json

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.observerd import ObserverdClient
from lakehouse.services.observerd import OBSERVER, create_app


class FakeDaemon:
    """A tiny matrixd + chatd stand-in that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.chat_content = '{"role": "forklift operator", "count": 3}'

    def app(self) -> web.Application:
        app = web.Application()

        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            self.requests.append((request.path, body))
            if request.path == "/matrix/search":
                if "query_text" not in body:
                    return web.json_response({"error": {"code": "bad_request", "message": "query_text required"}}, status=400)
                return web.json_response({"results": [{"id": "w-00001", "corpus": "workers", "distance": 0.1}]})
            if request.path == "/matrix/relevance":
                return web.json_response({"kept": [{"source": body["chunks"][0]["source"], "score": 0.68}]})
            if request.path == "/matrix/downgrade":
                weak = body.get("model") in body.get("weak_models", [])
                if body["mode"] == "codereview_lakehouse" and not weak and not body["forced_mode"]:
                    return web.json_response({"mode": "codereview_isolation", "downgraded_from": body["mode"]})
                return web.json_response({"mode": body["mode"]})
            if request.path == "/chat":
                return web.json_response({"model": body["model"], "provider": "ollama", "content": self.chat_content,
                                          "finish_reason": "stop", "usage": {"total_tokens": 7}})
            return web.json_response({"error": "no route"}, status=404)

        app.router.add_post("/{tail:.*}", handle)
        return app


@pytest.fixture
async def fake(aiohttp_server):
    f = FakeDaemon()
    server = await aiohttp_server(f.app())
    f.url = str(server.make_url("")).rstrip("/")
    return f


@pytest.fixture
def obs_config(config, fake):
    return config.replace("observerd", matrixd_url=fake.url, chatd_url=fake.url)


@pytest.fixture
async def ob(aiohttp_client, obs_config):
    return await aiohttp_client(create_app(obs_config))


async def call(client, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    r = await client.request(method, path, data=data)
    return r.status, await r.json()


async def stats(client):
    return (await call(client, "GET", "/observer/stats"))[1]


async def test_health_routes(ob):
    assert (await call(ob, "GET", "/health")) == (200, {"status": "ok", "service": "observerd"})
    s, h = await call(ob, "GET", "/observer/health")
    assert s == 200 and h["status"] == "ok" and h["ring_size"] == 0 and h["ring_capacity"] == 2000


async def test_event_defaults_and_validation(ob):
    s, op = await call(ob, "POST", "/observer/event", {"endpoint": "/matrix/search", "success": True,
                                                      "duration_ms": 12})
    assert s == 200 and op["source"] == "mcp" and op["timestamp"].endswith("Z") and op["duration_ms"] == 12.0
    s, op = await call(ob, "POST", "/observer/event", {"endpoint": "/x", "source": "scenario",
                                                      "timestamp": "2026-05-01T10:00:00Z", "scenario": "surge"})
    assert s == 200 and op["timestamp"] == "2026-05-01T10:00:00Z"
    for bad in ({}, {"endpoint": ""}, {"endpoint": "  "}, {"endpoint": "/x", "bogus": 1},
                {"endpoint": "/x", "success": "yes"}, {"endpoint": "/x", "timestamp": "noon"},
                {"endpoint": "/x", "duration_ms": -5}, b"{nope"):
        s, err = await call(ob, "POST", "/observer/event", bad)
        assert s == 400 and set(err["error"]) == {"code", "message"}, bad
    st_ = await stats(ob)
    assert st_["total"] == 2 and st_["successes"] == 1 and st_["failures"] == 1
    assert st_["by_source"] == {"mcp": 1, "scenario": 1}
    assert [o["scenario"] for o in st_["recent_scenario_ops"]] == ["surge"]


async def test_ring_evicts_at_2000_over_http(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace("observerd", persist_path="")))
    for i in range(2001):
        r = await client.post("/observer/event", data=orjson.dumps({"endpoint": f"/e/{i}"}))
        assert r.status == 200
    assert (await call(client, "GET", "/observer/health"))[1]["ring_size"] == 2000
    assert (await stats(client))["total"] == 2000
    ops = client.app[OBSERVER].ops()
    assert ops[0].endpoint == "/e/1" and ops[-1].endpoint == "/e/2000"


async def test_inbox_rules(ob):
    s, err = await call(ob, "POST", "/observer/inbox", {"type": "email", "body": "x" * (8 * 1024 + 1)})
    assert s == 413 and err["error"]["code"] == "payload_too_large"
    s, msg = await call(ob, "POST", "/observer/inbox", {"type": "email", "body": "x" * (8 * 1024)})
    assert s == 200 and msg["priority"] == "medium"
    for bad in ({"type": "fax", "body": "hi"}, {"body": "hi"}, {"type": "sms"}, {"type": "sms", "body": ""},
                {"type": "sms", "body": "hi", "priority": "asap"}, {"type": "sms", "body": "hi", "cc": "x"}):
        s, _ = await call(ob, "POST", "/observer/inbox", bad)
        assert s == 400, bad
    s, msg = await call(ob, "POST", "/observer/inbox", {
        "type": "sms", "body": "need 2 pickers", "priority": "urgent",
        "sender": "+1 414 555 0100\r\n", "subject": "s\nubject", "tag": "t" * 300})
    assert s == 200 and msg["sender"] == "+1 414 555 0100" and msg["subject"] == "subject"
    assert len(msg["tag"]) == 256
    st_ = await stats(ob)
    assert st_["by_source"] == {"inbox": 2}  # refused messages were not recorded


async def test_inbox_listing(ob):
    for prio, body in [("low", "a"), ("", "b"), ("urgent", "c"), ("high", "d"), ("urgent", "e")]:
        assert (await call(ob, "POST", "/observer/inbox", {"type": "email", "body": body, "priority": prio}))[0] == 200
    s, listed = await call(ob, "GET", "/observer/inbox")
    assert s == 200 and listed["count"] == 5
    assert [(m["priority"], m["body"]) for m in listed["messages"]] == [
        ("urgent", "c"), ("urgent", "e"), ("high", "d"), ("medium", "b"), ("low", "a")]
    assert set(listed["messages"][0]) == {"id", "received_at", "type", "priority", "sender", "subject", "tag", "body"}
    s, listed = await call(ob, "GET", "/observer/inbox?priority=urgent&limit=1")
    assert [m["body"] for m in listed["messages"]] == ["c"]
    for bad in ("?priority=asap", "?type=fax", "?limit=zero", "?limit=0", "?order=asc"):
        assert (await call(ob, "GET", f"/observer/inbox{bad}"))[0] == 400, bad


async def test_persistence_and_corrupt_log(aiohttp_client, config):
    log = config.path(config.observerd.persist_path)
    log.parent.mkdir(parents=True)
    log.write_bytes(b'{"endpoint":"/a","source":"scenario","success":true}\n'
                    b"garbage\n"
                    b'{"endpoint":"/b","success":false}\n'
                    b'{"endpoint":"/c","succ')
    client = await aiohttp_client(create_app(config))
    st_ = await stats(client)
    assert st_["total"] == 2 and st_["replayed"] == 2 and st_["replay_skipped"] == 2
    await call(client, "POST", "/observer/event", {"endpoint": "/d", "success": True})
    await client.close()
    again = await aiohttp_client(create_app(config))
    assert [o.endpoint for o in again.app[OBSERVER].ops()] == ["/a", "/b", "/d"]


# -- workflows ----------------------------------------------------------------------------------


async def run_wf(client, workflow):
    return await call(client, "POST", "/observer/workflow/run", workflow)


@pytest.mark.parametrize(
    "workflow, message",
    [
        ({"name": "w", "nodes": [{"id": "a", "mode": "fixture.echo", "depends_on": ["b"]},
                                 {"id": "b", "mode": "matrix.search", "depends_on": ["a"], "inputs": {"query_text": "x"}}]},
         "cycle"),
        ({"name": "w", "nodes": [{"id": "a", "mode": "matrix.search", "inputs": {"query_text": "x"}},
                                 {"id": "b", "mode": "no.such.mode"}]}, "unknown mode"),
        ({"name": "w", "nodes": [{"id": "a", "mode": "fixture.echo"}, {"id": "a", "mode": "fixture.echo"}]}, "duplicate"),
        ({"name": "w", "nodes": [{"id": "a", "depends_on": ["zz"]}]}, "unknown node"),
        ({"name": "", "nodes": [{"id": "a"}]}, "name"),
        ({"name": "w", "nodes": []}, "at least one"),
        ({"name": "w", "nodes": [{"id": "a", "mode": "fixture.echo", "inputs": {"x": "$b.output.y"}},
                                 {"id": "b", "mode": "fixture.echo"}]}, "does not depend"),
        ({"name": "w"}, "nodes"),
        ({"name": "w", "nodes": [{"id": "a", "command": "rm -rf /"}]}, "command"),
    ],
)
async def test_invalid_workflow_is_400_before_any_node_runs(ob, fake, workflow, message):
    s, err = await run_wf(ob, workflow)
    assert s == 400 and message in err["error"]["message"]
    assert fake.requests == []  # matrixd was never called
    assert (await stats(ob))["total"] == 0  # no op recorded


async def test_failing_node_skips_dependants_only(ob, fake):
    s, result = await run_wf(ob, {"name": "skip-demo", "nodes": [
        {"id": "echo", "mode": "fixture.echo", "inputs": {"text": "forklift"}},
        {"id": "bad", "mode": "matrix.search", "depends_on": ["echo"], "inputs": {"wrong": 1}},
        {"id": "after_bad", "mode": "fixture.upper", "depends_on": ["bad"], "inputs": {"text": "x"}},
        {"id": "sibling", "mode": "fixture.upper", "depends_on": ["echo"], "inputs": {"text": "$echo.output.text"}},
    ]})
    assert s == 200 and result["success"] is False
    nodes = {n["id"]: n for n in result["nodes"]}
    assert nodes["bad"]["status"] == "failed" and "query_text required" in nodes["bad"]["error"]
    assert nodes["after_bad"]["status"] == "skipped" and nodes["after_bad"]["error"] == "upstream node bad failed"
    assert nodes["sibling"]["status"] == "succeeded" and nodes["sibling"]["output"] == {"text": "FORKLIFT"}
    assert result["order"] == ["echo", "bad", "after_bad", "sibling"]
    assert result["counts"] == {"succeeded": 2, "failed": 1, "skipped": 1}
    assert all(n["started_at"].endswith("Z") and n["duration_ms"] >= 0 for n in result["nodes"])
    # one op per node, source workflow, recorded after the run
    st_ = await stats(ob)
    assert st_["by_source"] == {"workflow": 4} and st_["successes"] == 2 and st_["failures"] == 2
    ops = ob.app[OBSERVER].ops()
    assert [o.metadata["node_id"] for o in ops] == result["order"]
    assert {o.metadata["run_id"] for o in ops} == {result["run_id"]}


async def test_every_mode_end_to_end(ob, fake, obs_config):
    s, result = await run_wf(ob, {"name": "all-modes", "description": "each built-in mode once", "nodes": [
        {"id": "parse", "prompt": "Parse: need 3 forklift operators", "inputs": {"format": "json", "max_tokens": 50}},
        {"id": "search", "mode": "matrix.search", "depends_on": ["parse"],
         "inputs": {"query_text": "$parse.output.json.role", "corpora": ["workers"], "k": "$parse.output.json.count"}},
        {"id": "relevance", "mode": "matrix.relevance", "inputs": {
            "focus": {"path": "crates/queryd/src/db.go", "defined_symbols": ["Connector"]},
            "chunks": [{"source": "crates/queryd/src/db.go", "text": "type Connector struct"}], "threshold": 0.3}},
        {"id": "downgrade", "mode": "matrix.downgrade", "inputs": {"mode": "codereview_lakehouse", "model": "gpt-5"}},
        {"id": "weak", "mode": "matrix.downgrade", "inputs": {"mode": "codereview_lakehouse", "model": "qwen3:latest"}},
        {"id": "score", "mode": "distillation.score", "inputs": {"record": {"source": "outcomes", "success": True}}},
        {"id": "drift", "mode": "drift.scorer", "inputs": {"expected": [1, 2, 3, 4], "actual": [3, 4, 5, 6], "buckets": 2}},
        {"id": "echo", "mode": "fixture.echo", "depends_on": ["search", "score"],
         "inputs": {"top": "$search.output.results.0.id", "category": "$score.output.category"}},
        {"id": "upper", "mode": "fixture.upper", "depends_on": ["echo"], "prompt": "top: $echo.output.top"},
    ]}, )
    assert s == 200, result
    out = {n["id"]: n for n in result["nodes"]}
    assert result["success"], [(n["id"], n["error"]) for n in result["nodes"] if n["error"]]
    assert out["parse"]["mode"] == "llm.chat" and out["parse"]["output"]["json"]["count"] == 3
    assert out["search"]["output"]["results"][0]["id"] == "w-00001"
    assert out["relevance"]["output"]["kept"][0]["score"] == 0.68
    assert out["downgrade"]["output"] == {"mode": "codereview_isolation", "downgraded_from": "codereview_lakehouse"}
    assert out["weak"]["output"] == {"mode": "codereview_lakehouse"}
    assert out["score"]["output"]["category"] == "accepted"
    assert out["drift"]["output"]["tier"] == "major"
    assert out["upper"]["output"] == {"text": "TOP: W-00001"}
    sent = dict(fake.requests)
    assert sent["/chat"]["model"] == obs_config.models.local_fast  # the default model tier
    assert sent["/chat"]["messages"] == [{"role": "user", "content": "Parse: need 3 forklift operators"}]
    assert sent["/chat"]["format"] == "json" and sent["/chat"]["max_tokens"] == 50
    assert "temperature" not in sent["/chat"]
    assert sent["/matrix/search"] == {"query_text": "forklift operator", "corpora": ["workers"], "k": 3}
    assert sent["/matrix/relevance"]["focus"]["imported_symbols"] == []
    downgrades = [b for p, b in fake.requests if p == "/matrix/downgrade"]
    assert all(b["weak_models"] == list(obs_config.models.weak_models) for b in downgrades)
    assert all("force_full_enrichment" not in b for b in downgrades)


async def test_unreachable_upstream_fails_the_node_not_the_request(aiohttp_client, config):
    from testkit import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    client = await aiohttp_client(create_app(config.replace("observerd", matrixd_url=dead, chatd_url=dead)))
    s, result = await run_wf(client, {"name": "w", "nodes": [
        {"id": "chat", "prompt": "hi"},
        {"id": "search", "mode": "matrix.search", "inputs": {"query_text": "x"}},
        {"id": "ok", "mode": "fixture.echo"}]})
    assert s == 200
    status = {n["id"]: (n["status"], n["error"]) for n in result["nodes"]}
    assert status["chat"][0] == "failed" and "chatd" in status["chat"][1]
    assert status["search"][0] == "failed" and "unreachable" in status["search"][1]
    assert status["ok"] == ("succeeded", "")


async def test_client_round_trip(aiohttp_server, obs_config):
    server = await aiohttp_server(create_app(obs_config))
    async with aiohttp.ClientSession() as session:
        c = ObserverdClient(session, str(server.make_url("")))
        assert (await c.event("/matrix/search", source="scenario", success=True))["source"] == "scenario"
        await c.inbox("sms", "need a welder", priority="high", sender="bob")
        assert (await c.list_inbox(priority="high"))["count"] == 1
        r = await c.run_workflow({"name": "w", "nodes": [{"id": "a", "mode": "fixture.upper", "prompt": "x"}]})
        assert r["nodes"][0]["output"] == {"text": "X"}
        assert (await c.stats())["total"] == 3
        with pytest.raises(UpstreamError) as exc:
            await c.inbox("email", "x" * 9000)
        assert exc.value.status == 413


fuzz = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["endpoint", "source", "type", "body", "priority", "name", "nodes", "id", "mode",
                         "depends_on", "inputs", "prompt"]) | st.text(max_size=3), kids, max_size=5),
    max_leaves=12,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/observer/event", "/observer/inbox", "/observer/workflow/run"]), body=fuzz)
async def test_no_body_gives_a_500(ob, path, body):
    r = await ob.post(path, data=json.dumps(body))  # stdlib: integers of any width
    assert r.status in (200, 400, 413), await r.text()
