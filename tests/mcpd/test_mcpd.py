"""mcpd over both transports, with the SDK's own client, against a real stack (one per module).

Checks: the tool list and its schemas (against parity/fixtures/mcp/tools.json), every tool
called with its answer checked against the daemon asked directly, the error paths (4xx with
the daemon's message, 5xx naming the daemon, unknown arguments, an unreachable gateway),
truncation with a paging note, the observerd witness with the trace id, auth on HTTP, stdio.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import numpy as np
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from lakehouse.config import load_config
from lakehouse.configfile import dump_toml
from lakehouse.mcp import TOOL_NAMES, TRACE_META_KEY
from lakehouse.services import DAEMONS
from lakehouse.stack import health, running_stack
from testkit import free_port

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "parity" / "fixtures" / "mcp" / "tools.json"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ROWS = 30


def http(url: str, body: object = None, method: str | None = None, headers=None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with NO_PROXY.open(req, timeout=60) as resp:
            return resp.status, orjson.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcpd")
    fake_port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "lakehouse", "fake-ollama", "--port", str(fake_port),
         "--rule", 'MCP-ITERATE=>{"operation": "fill: Welder x1 in Toledo, OH", '
                   '"endorsed_names": ["Donald Green"], "target_count": 1, "fingerprint": "fp"}'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    config = load_config(env={}, data_dir=str(tmp / "data"))
    for name in DAEMONS:
        config = config.replace(name, port=0)
    config = config.replace("chatd", ollama_url=f"http://127.0.0.1:{fake_port}")
    config = config.replace("validatord", roster_path=str(ROOT / "parity" / "fixtures" / "roster.jsonl"))
    config = config.replace("mcpd", sql_max_rows=10, max_answer_chars=6000)
    try:
        deadline = time.monotonic() + 30
        while health(f"http://127.0.0.1:{fake_port}") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        with running_stack(config, startup_timeout=90) as st:
            gw = st.urls["gateway"]
            csv = "worker_id,name,role,city\n" + "".join(
                f"w-{i:03d},Name {i},{'Welder' if i % 2 else 'Picker'},Toledo\n" for i in range(ROWS)
            )
            status, _ = http(f"{gw}/v1/ingest?name=workers", raw=csv.encode(), headers={"Content-Type": "text/csv"})
            assert status == 200
            status, job = http(f"{gw}/v1/matrix/corpus/build", {
                "name": "workers", "sql": "SELECT * FROM workers", "id_column": "worker_id",
                "text_columns": ["role", "city"], "metadata_columns": ["role"]})
            assert status == 200 and job["status"] == "done", job
            yield st
    finally:
        fake.kill()
        fake.wait()


def url(stack) -> str:
    return stack.urls["mcpd"] + "/mcp"


def text(result) -> str:
    assert len(result.content) == 1
    return result.content[0].text


def answer(result):
    assert not result.is_error, text(result)
    return orjson.loads(text(result))


def fixture_tools() -> list[dict]:
    return orjson.loads(FIXTURE.read_bytes())["fixtures"]


def wire(tool) -> dict:
    return tool.model_dump(by_alias=True, exclude_none=True, mode="json")


async def test_tool_list_and_schemas_match_the_parity_fixture(stack):
    async with Client(url(stack)) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == list(TOOL_NAMES)
    expected = {f["tool"]: f for f in fixture_tools()}
    for tool in tools:
        w = wire(tool)
        assert "\n" not in w["description"] and w["description"].endswith(".")
        schema = w["inputSchema"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        fx = expected[tool.name]
        assert sorted(schema["properties"]) == sorted(fx["expect"]["properties"]), tool.name
        assert sorted(schema.get("required", [])) == sorted(fx["expect"]["required"]), tool.name
        for name, prop in schema["properties"].items():
            assert prop.get("description"), (tool.name, name)


async def test_every_tool_over_http(stack):
    gw = stack.urls["gateway"]
    async with Client(url(stack)) as c:
        datasets = answer(await c.call_tool("list_datasets", {}))
        assert [d["name"] for d in datasets["datasets"]] == ["workers"] and datasets["datasets"][0]["row_count"] == ROWS
        indexes = answer(await c.call_tool("list_indexes", {}))
        assert {i["name"]: i["count"] for i in indexes["indexes"]}["workers"] == ROWS

        page = answer(await c.call_tool("sql", {"sql": "SELECT worker_id FROM workers ORDER BY worker_id"}))
        assert [r[0] for r in page["rows"]] == [f"w-{i:03d}" for i in range(10)]
        assert page["next_offset"] == 10 and "offset=10" in page["note"]
        last = answer(await c.call_tool("sql", {"sql": "SELECT worker_id FROM workers ORDER BY worker_id", "offset": 20}))
        assert [r[0] for r in last["rows"]] == [f"w-{i:03d}" for i in range(20, 30)] and "next_offset" not in last

        found = answer(await c.call_tool("matrix_search", {"query_text": "Welder Toledo", "corpora": ["workers"], "k": 3,
                                                            "exclude_ids": ["w-001"]}))
        _, direct = http(f"{gw}/v1/matrix/search", {"query_text": "Welder Toledo", "corpora": ["workers"], "k": 3,
                                                     "exclude_ids": ["w-001"]})
        assert [r["id"] for r in found["results"]] == [r["id"] for r in direct["results"]] and len(direct["results"]) == 3

        rec = answer(await c.call_tool("playbook_record", {"query_text": "Welder Toledo", "answer_id": "w-003",
                                                            "answer_corpus": "workers", "role": "Welder"}))
        assert len(rec["playbook_id"]) == 32
        book = await c.read_resource(f"lakehouse://playbook/{rec['playbook_corpus']}")
        entries = orjson.loads(book.contents[0].text)["entries"]
        assert [(e["playbook_id"], e["answer_id"]) for e in entries] == [(rec["playbook_id"], "w-003")]

        emb = answer(await c.call_tool("embed", {"texts": ["forklift operator"]}))
        _, direct = http(f"{gw}/v1/embed", {"texts": ["forklift operator"]})
        assert emb["dimension"] == 768 and np.allclose(emb["vectors"], direct["vectors"], atol=1e-6)
        by_text = answer(await c.call_tool("vector_search", {"index": "workers", "text": "role: Picker\ncity: Toledo", "k": 2}))
        by_vec = answer(await c.call_tool("vector_search", {"index": "workers", "vector": direct["vectors"][0], "k": 2}))
        assert len(by_text["results"]) == 2 and len(by_vec["results"]) == 2
        assert by_text["results"][0]["metadata"]["role"] == "Picker"

        ok = answer(await c.call_tool("validate", {"kind": "fill", "artifact": {"fills": [
            {"candidate_id": "W-1", "name": "Donald Green"}]}, "context": {"target_count": 1}}))
        assert "findings" in ok
        it = answer(await c.call_tool("iterate", {"kind": "playbook", "prompt": "MCP-ITERATE please", "model": "local_fast"}))
        assert it["artifact"]["endorsed_names"] == ["Donald Green"] and it["iterations"] == 1

        added = answer(await c.call_tool("memory_add", {"content": {"note": "mcp memory"}, "tags": ["mcp"]}))
        revised = http(f"{gw}/v1/pathway/revise", {"predecessor_uid": added["uid"], "content": {"note": "v2"}, "tags": ["mcp"]})[1]
        hits = answer(await c.call_tool("memory_search", {"tags": ["mcp"]}))
        _, direct = http(f"{gw}/v1/pathway/search", {"tags": ["mcp"]})
        assert [t["uid"] for t in hits["traces"]] == [t["uid"] for t in direct["traces"]]
        assert hits["traces"][0]["uid"] == revised["uid"]
        hist = answer(await c.call_tool("memory_history", {"uid": revised["uid"]}))
        assert [t["uid"] for t in hist["traces"]] == [revised["uid"], added["uid"]]

        msg = answer(await c.call_tool("inbox_record", {"type": "sms", "body": "need 2 welders", "priority": "high"}))
        _, inbox = http(f"{gw}/v1/observer/inbox")
        assert any(m.get("body") == "need 2 welders" for m in inbox["messages"]), (msg, inbox)
        obs = await c.call_tool("observe", {"endpoint": "fill:contract-1", "success": True, "source": "scenario"})
        assert answer(obs)["source"] == "scenario"

        reply = answer(await c.call_tool("chat", {"messages": [{"role": "user", "content": "hello there"}]}))
        assert reply["model"] == "qwen3.5:latest" and "hello there" in reply["content"]

        stats = orjson.loads((await c.read_resource("lakehouse://observer/stats")).contents[0].text)
        assert stats["by_source"]["mcp"] >= 14
        cat = orjson.loads((await c.read_resource("lakehouse://datasets")).contents[0].text)
        assert cat[0]["name"] == "workers"


async def test_each_call_is_witnessed_with_its_trace_id(stack):
    async with Client(url(stack)) as c:
        ok = await c.call_tool("list_indexes", {})
        bad = await c.call_tool("sql", {"sql": "DROP TABLE workers"})
    ops_file = Path(stack.config.data_dir) / "observer" / "ops.jsonl"
    ops = [orjson.loads(line) for line in ops_file.read_bytes().splitlines() if line.strip()]
    by_trace = {op["trace_id"]: op for op in ops if op.get("source") == "mcp"}
    good = by_trace[ok.meta[TRACE_META_KEY]]
    assert good["endpoint"] == "mcp:list_indexes" and good["success"] is True
    failed = by_trace[bad.meta[TRACE_META_KEY]]
    assert failed["endpoint"] == "mcp:sql" and failed["success"] is False and "queryd" in failed["error"]


async def test_error_paths(stack):
    async with Client(url(stack)) as c:
        refused = await c.call_tool("sql", {"sql": "DROP TABLE workers"})
        assert refused.is_error and text(refused).startswith("queryd refused the call (400): ")
        failed = await c.call_tool("matrix_search", {"query_text": "x", "corpora": ["no_such_corpus"]})
        assert failed.is_error and text(failed).startswith("matrixd refused the call (404): ") and "no_such_corpus" in text(failed)
        unknown = await c.call_tool("matrix_search", {"query": "x", "corpora": ["workers"]})
        assert unknown.is_error and "query" in text(unknown)
        invalid = await c.call_tool("validate", {"kind": "fill", "artifact": {"fills": [
            {"candidate_id": "W-FAKE-9", "name": "Nobody"}]}, "context": {"target_count": 1}})
        assert invalid.is_error and text(invalid).startswith("validatord refused the call (422): ")
        assert "Consistency" in text(invalid)
        both = await c.call_tool("vector_search", {"index": "workers"})
        assert both.is_error and "exactly one of text and vector" in text(both)
        cut = await c.call_tool("embed", {"texts": ["a b", "c d", "e f"]})
        doc = answer(cut)
        assert len(text(cut)) <= 6000 and doc["_truncated"]["field"] == "vectors"
        assert doc["_truncated"]["total"] == 3 and doc["_truncated"]["returned"] < 3
        for r in (refused, failed, invalid):
            assert "Traceback" not in text(r)
        with pytest.raises(Exception):  # noqa: B017 - the SDK's own error type for a missing resource
            await c.read_resource("lakehouse://playbook/no_such_playbook")


def _config_file(stack, tmp_path, **mcpd) -> Path:
    cfg = stack.config
    if mcpd:
        cfg = cfg.replace("mcpd", **mcpd)
    path = tmp_path / "lakehouse.toml"
    path.write_text(dump_toml(cfg))
    return path


async def test_stdio_transport(stack, tmp_path):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lakehouse", "mcp", "--config", str(_config_file(stack, tmp_path))]
    )
    async with Client(params) as c:
        assert [t.name for t in (await c.list_tools()).tools] == list(TOOL_NAMES)
        page = answer(await c.call_tool("sql", {"sql": "SELECT count(*) AS n FROM workers"}))
        assert page["rows"] == [[ROWS]]
        refused = await c.call_tool("sql", {"sql": "DELETE FROM workers"})
        assert refused.is_error and refused.content[0].text.startswith("queryd refused the call (400)")


async def test_an_unreachable_gateway_is_named(stack, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lakehouse", "mcp", "--config", str(_config_file(stack, tmp_path)), "--gateway", dead],
    )
    async with Client(params) as c:
        r = await c.call_tool("list_datasets", {})
    assert r.is_error and f"the gateway at {dead} could not be reached" in text(r)


@contextlib.contextmanager
def _mcpd_with_token(stack, tmp_path, token: str):
    port = free_port()
    cfg = stack.config.replace("mcpd", port=port, gateway_url=stack.urls["gateway"])
    path = tmp_path / "auth.toml"
    path.write_text(dump_toml(cfg))
    env = {**os.environ, "AUTH_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "lakehouse", "serve", "mcpd", "--config", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while health(base) != "mcpd" and time.monotonic() < deadline:
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_http_auth_is_the_gateways(stack, tmp_path):
    with _mcpd_with_token(stack, tmp_path, "s3cret-token") as base:
        status, body = http(f"{base}/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert status == 401 and body["error"]["message"] == "missing bearer token"
        status, body = http(f"{base}/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                            headers={"Authorization": "Bearer wrong"})
        assert status == 401 and body["error"]["message"] == "invalid bearer token"
        assert health(base) == "mcpd"  # /health stays open
        async with (
            httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret-token"}) as hc,
            Client(streamable_http_client(f"{base}/mcp", http_client=hc)) as c,
        ):
            assert len((await c.list_tools()).tools) == len(TOOL_NAMES)
            assert answer(await c.call_tool("list_datasets", {}))["count"] == 1
