"""validatord over HTTP: /validate's wire bodies, and /iterate against a real chatd in front
of the fake Ollama (retries, exhaustion, chat down, trace ids, the session log)."""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from lakehouse.config import ConfigError
from lakehouse.fakes import FakeOllama, Reply
from lakehouse.services import chatd, validatord
from lakehouse.validation.session_log import SessionLog
from lakehouse.web import TRACE_HEADER

ROSTER = [
    {"candidate_id": "W-1", "name": "Donald Green", "role": "Welder", "city": "Toledo", "state": "OH",
     "status": "active"},
    {"candidate_id": "W-2", "name": "Ana Ruiz", "role": "Welder", "city": "Toledo", "state": "OH",
     "status": "active"},
    {"candidate_id": "W-3", "name": "Lee Park", "role": "Welder", "city": "Louisville", "state": "KY",
     "status": "active"},
]
CTX = {"target_count": 2, "city": "Toledo", "state": "OH", "role": "Welder"}
GOOD = '{"fills": [{"candidate_id": "W-1", "name": "Donald Green"}, {"candidate_id": "W-2", "name": "Ana Ruiz"}]}'
PHANTOM = '{"fills": [{"candidate_id": "W-FAKE-99999", "name": "Nobody"}, {"candidate_id": "W-2", "name": "Ana Ruiz"}]}'
WRONG_CITY = '{"fills": [{"candidate_id": "W-1", "name": "Donald Green"}, {"candidate_id": "W-3", "name": "Lee Park"}]}'
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def write_roster(path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROSTER))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    client: object  # TestClient on validatord
    ollama: FakeOllama
    log: SessionLog

    async def iterate(self, status: int, headers: dict | None = None, **body):
        r = await self.client.post("/iterate", json=body, headers=headers or {})
        data = await r.json()
        assert r.status == status, data
        return data, r

    def rows(self) -> list[dict]:
        return self.log.read()


async def make_stack(aiohttp_client, aiohttp_server, config, tmp_path, *, chat_timeout=5.0,
                     chatd_url=None, **validatord_changes) -> Stack:
    fake = FakeOllama()
    fake_url = str((await aiohttp_server(fake.app())).make_url("")).rstrip("/")
    if chatd_url is None:
        chat_cfg = config.replace("chatd", ollama_url=fake_url, timeout_secs=chat_timeout)
        chatd_url = str((await aiohttp_server(chatd.create_app(chat_cfg))).make_url("")).rstrip("/")
    changes = {
        "roster_path": str(write_roster(tmp_path / "roster.jsonl")),
        "chatd_url": chatd_url,
        "session_log_path": "sessions.jsonl",
        **validatord_changes,
    }
    cfg = config.replace("validatord", **changes)
    client = await aiohttp_client(validatord.create_app(cfg))
    return Stack(client, fake, SessionLog(cfg.path(cfg.validatord.session_log_path)))


@pytest.fixture
async def stack(aiohttp_client, aiohttp_server, config, tmp_path) -> Stack:
    return await make_stack(aiohttp_client, aiohttp_server, config, tmp_path)


# -- /validate ----------------------------------------------------------------------------------

PLAYBOOK = {"operation": "fill: Welder x1 in Toledo, OH", "endorsed_names": ["Donald Green"],
            "target_count": 1, "fingerprint": "fp"}

PARITY = [
    ("playbook_missing_fingerprint", "playbook", {**PLAYBOOK, "fingerprint": None},
     '{"Schema":{"field":"fingerprint","reason":"missing — required for Phase 25 validity window"}}'),
    ("playbook_wrong_prefix", "playbook", {**PLAYBOOK, "operation": "sms_draft: hello"},
     '{"Schema":{"field":"operation","reason":"expected `fill: ...` prefix, got \\"sms_draft: hello\\""}}'),
    ("playbook_empty_endorsed", "playbook", {**PLAYBOOK, "endorsed_names": []},
     '{"Completeness":{"reason":"endorsed_names must be non-empty"}}'),
    ("playbook_overfull", "playbook", {**PLAYBOOK, "endorsed_names": ["A", "B", "C"]},
     '{"Completeness":{"reason":"endorsed_names (3) exceeds target_count × 2 (2)"}}'),
    ("fill_phantom", "fill", {"fills": [{"candidate_id": "W-FAKE-99999", "name": "Nobody"}]},
     '{"Consistency":{"reason":"fills[0].candidate_id \'W-FAKE-99999\' does not exist in worker roster"}}'),
]


@pytest.mark.parametrize("name, kind, artifact, body", PARITY, ids=[p[0] for p in PARITY])
async def test_validate_parity_bodies_are_byte_exact(stack, name, kind, artifact, body):
    artifact = {k: v for k, v in artifact.items() if v is not None}
    r = await stack.client.post("/validate", json={"kind": kind, "artifact": artifact})
    assert r.status == 422
    assert r.headers["Content-Type"].startswith("application/json")
    assert await r.read() == body.encode("utf-8")


async def test_validate_playbook_happy_is_a_report(stack):
    r = await stack.client.post("/validate", json={"kind": "playbook", "artifact": PLAYBOOK})
    assert r.status == 200
    report = await r.json()
    assert report["validator"] == "staffing.playbook" and report["findings"] == []
    assert isinstance(report["elapsed_ms"], int)


async def test_validate_warnings_and_context_injection(stack):
    artifact = {"fills": [{"candidate_id": "w-1", "name": "Anyone"}]}
    r = await stack.client.post(
        "/validate", json={"kind": "fill", "artifact": artifact, "context": {"target_count": 1, "city": "Toledo"}}
    )
    report = await r.json()
    assert r.status == 200
    assert report["findings"] == [{"severity": "Warning", "field": "fills[0].name",
                                   "message": "fills[0].name 'Anyone' differs from roster name 'Donald Green'"}]
    # the same context embedded by the caller, and a request context that overrides it
    embedded = {**artifact, "_context": {"target_count": 1, "city": "Louisville"}}
    r = await stack.client.post("/validate", json={"kind": "fill", "artifact": embedded})
    assert r.status == 422 and (await r.json()) == {
        "Consistency": {"reason": "fills[0] city 'Toledo' doesn't match contract city 'Louisville'"}}
    r = await stack.client.post("/validate", json={"kind": "fill", "artifact": embedded,
                                                   "context": {"city": "Toledo"}})
    assert r.status == 200


async def test_validate_email_policy(stack):
    artifact = {"to": "ana@example.com", "body": "Your SSN 123-45-6789 is on file"}
    r = await stack.client.post("/validate", json={"kind": "email", "artifact": artifact})
    assert r.status == 422 and list(await r.json()) == ["Policy"]


async def test_validate_bad_requests_are_400(stack):
    cases = [
        {"kind": "nonsense", "artifact": {}},
        {"kind": "fill"},
        {"artifact": {}},
        {"kind": "fill", "artifact": []},
        {"kind": "fill", "artifact": "x"},
        {"kind": "fill", "artifact": {}, "context": []},
        {"kind": "fill", "artifact": {}, "extra": 1},
    ]
    for body in cases:
        r = await stack.client.post("/validate", json=body)
        assert r.status == 400, body
        assert (await r.json())["error"]["code"] == "bad_request"
    for raw in (b"", b"{", b"\xff", b'{"kind": "\xff", "artifact": {}}'):
        r = await stack.client.post("/validate", data=raw)
        assert r.status == 400, raw
    r = await stack.client.post("/validate", json={"kind": "nonsense", "artifact": {}})
    assert "unknown kind 'nonsense'" in (await r.json())["error"]["message"]


async def test_health(stack):
    r = await stack.client.get("/health")
    assert await r.json() == {"status": "ok", "service": "validatord"}


# -- /iterate -------------------------------------------------------------------------------------


async def test_iterate_fails_twice_then_succeeds(stack):
    stack.ollama.script(PHANTOM, "Here it is:\n```json\n" + WRONG_CITY + "\n```", GOOD)
    out, resp = await stack.iterate(
        200, kind="fill", prompt="Fill 2 welders in Toledo", model="qwen2.5", context=CTX,
        system="You staff shifts.", trace_id="trace-abc",
    )
    assert out["iterations"] == 3 and out["trace_id"] == "trace-abc"
    assert out["artifact"] == orjson.loads(GOOD)  # as the model wrote it, without _context
    assert out["validation"]["validator"] == "staffing.fill"
    kinds = [h["status"]["kind"] for h in out["history"]]
    assert kinds == ["validation_failed", "validation_failed", "accepted"]
    phantom_error = ('{"Consistency":{"reason":"fills[0].candidate_id \'W-FAKE-99999\' does not exist '
                     'in worker roster"}}')
    assert out["history"][0]["status"]["error"] == phantom_error
    assert "Louisville" in out["history"][1]["status"]["error"]
    assert "error" not in out["history"][2]["status"]
    assert [h["iteration"] for h in out["history"]] == [1, 2, 3]
    assert out["history"][0]["raw"] == PHANTOM
    # each retry carried the previous error; the system prompt and the defaults went upstream
    calls = [c.json for c in stack.ollama.calls("/api/chat")]
    assert len(calls) == 3
    assert phantom_error in calls[1]["messages"][-1]["content"]
    assert "Louisville" in calls[2]["messages"][-1]["content"]
    assert calls[0]["messages"][0] == {"role": "system", "content": "You staff shifts."}
    assert calls[0]["options"] == {"temperature": 0.2, "num_predict": 4096}
    assert calls[0]["model"] == "qwen2.5"
    assert all(c.headers[TRACE_HEADER] == "trace-abc" for c in stack.ollama.calls("/api/chat"))
    # the session row
    (row,) = stack.rows()
    assert list(row) == ["schema", "session_id", "timestamp", "daemon", "kind", "model", "provider",
                         "prompt", "iterations", "max_iterations", "final_verdict", "attempts",
                         "artifact", "grounded_in_roster", "duration_ms"]
    assert row["schema"] == "session.iterate.v1" and row["session_id"] == "trace-abc"
    assert TIMESTAMP.match(row["timestamp"]) and row["daemon"] == "validatord"
    assert (row["kind"], row["model"], row["provider"]) == ("fill", "qwen2.5", "")
    assert row["prompt"] == "Fill 2 welders in Toledo"
    assert (row["iterations"], row["max_iterations"], row["final_verdict"]) == (3, 3, "accepted")
    assert [a["verdict_kind"] for a in row["attempts"]] == kinds
    assert [a["iteration"] for a in row["attempts"]] == [1, 2, 3]
    assert row["attempts"][0]["error"] == phantom_error and row["attempts"][2]["error"] is None
    assert len({a["span_id"] for a in row["attempts"]}) == 3
    assert row["artifact"] == out["artifact"] and row["grounded_in_roster"] is True
    assert isinstance(row["duration_ms"], int)


async def test_iterate_no_json_then_accepted(stack):
    stack.ollama.script("Sorry, I cannot produce that.", GOOD)
    out, _ = await stack.iterate(200, kind="fill", prompt="fill", context=CTX)
    assert [h["status"] for h in out["history"]] == [
        {"kind": "no_json", "error": "no JSON object found in the response"}, {"kind": "accepted"}]
    second = stack.ollama.calls("/api/chat")[1].json["messages"][-1]["content"]
    assert "wasn't valid JSON" in second
    assert stack.ollama.calls("/api/chat")[0].json["model"] == "qwen3.5:latest"  # [models].local_fast


async def test_iterate_exhausts(stack):
    stack.ollama.rule("fill", PHANTOM)
    out, _ = await stack.iterate(422, kind="fill", prompt="fill please", context=CTX, max_iterations=2,
                                 provider="ollama", model="qwen2.5")
    assert set(out) == {"error", "iterations", "history", "trace_id"}
    assert out["iterations"] == 2 and len(out["history"]) == 2
    assert out["error"].startswith("no accepted artifact after 2 iterations; last error: {\"Consistency\"")
    assert stack.ollama.calls("/api/chat")[0].json["model"] == "qwen2.5"  # ollama/qwen2.5 routed
    (row,) = stack.rows()
    assert row["final_verdict"] == "max_iter_exhausted" and row["max_iterations"] == 2
    assert "artifact" not in row and row["grounded_in_roster"] is False
    assert row["provider"] == "ollama" and row["session_id"] == out["trace_id"]


async def test_iterate_when_chat_is_down(aiohttp_client, aiohttp_server, config, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    stack = await make_stack(aiohttp_client, aiohttp_server, config, tmp_path, chatd_url=dead)
    out, _ = await stack.iterate(502, kind="fill", prompt="fill", context=CTX)
    assert out["iterations"] == 0 and out["history"] == []
    assert out["error"].startswith("chat call failed on iteration 1: chatd: unreachable")
    (row,) = stack.rows()
    assert row["final_verdict"] == "infra_error" and row["iterations"] == 0
    assert [a["verdict_kind"] for a in row["attempts"]] == ["infra_error"]
    assert row["grounded_in_roster"] is None and "artifact" not in row


async def test_iterate_keeps_history_when_the_provider_fails_midway(stack):
    stack.ollama.script(PHANTOM, Reply(status=500, body='{"error":"out of memory"}'))
    out, _ = await stack.iterate(502, kind="fill", prompt="fill", context=CTX)
    assert out["iterations"] == 1 and out["history"][0]["status"]["kind"] == "validation_failed"
    assert "out of memory" in out["error"] and "chatd 502" in out["error"]
    (row,) = stack.rows()
    assert [a["verdict_kind"] for a in row["attempts"]] == ["validation_failed", "infra_error"]
    assert row["grounded_in_roster"] is False  # judged on the last object seen


async def test_iterate_chat_timeout_is_504(aiohttp_client, aiohttp_server, config, tmp_path):
    stack = await make_stack(aiohttp_client, aiohttp_server, config, tmp_path, chat_timeout=0.2)
    stack.ollama.delay = 5.0
    out, _ = await stack.iterate(504, kind="fill", prompt="fill", context=CTX)
    assert "provider timeout" in out["error"]
    assert stack.rows()[0]["final_verdict"] == "infra_error"


async def test_iterate_trace_id_resolution(stack):
    stack.ollama.rule("fill", GOOD)
    # 1. the body wins over the header
    out, resp = await stack.iterate(200, headers={TRACE_HEADER: "from-header"}, kind="fill",
                                    prompt="fill", context=CTX, trace_id="from-body")
    assert out["trace_id"] == "from-body"
    assert resp.headers[TRACE_HEADER] == "from-body"  # header and body agree
    # 2. the header
    out, _ = await stack.iterate(200, headers={TRACE_HEADER: "from-header"}, kind="fill",
                                 prompt="fill", context=CTX)
    assert out["trace_id"] == "from-header"
    assert stack.ollama.calls("/api/chat")[-1].headers[TRACE_HEADER] == "from-header"
    # 3./4. minted (by the request middleware), time-ordered hex, and returned in the header
    out, resp = await stack.iterate(200, kind="fill", prompt="fill", context=CTX)
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{8}", out["trace_id"])
    assert resp.headers[TRACE_HEADER] == out["trace_id"]
    assert [r["session_id"] for r in stack.rows()] == ["from-body", "from-header", out["trace_id"]]


async def test_iterate_caps_raw_and_prompt(stack):
    stack.ollama.script("x" * 3000 + GOOD)
    prompt = "fill " + "é" * 5000
    out, _ = await stack.iterate(200, kind="fill", prompt=prompt, context=CTX)
    assert len(out["history"][0]["raw"]) == 2000
    row = stack.rows()[0]
    assert row["prompt"] == prompt[:4000]


async def test_iterate_email_is_not_grounded(stack):
    stack.ollama.script('{"to": "ana@example.com", "subject": "Shift", "body": "Hi Ana!"}')
    out, _ = await stack.iterate(200, kind="email", prompt="write to Ana", context={"candidate_id": "W-2"})
    assert out["validation"]["validator"] == "staffing.email"
    assert stack.rows()[0]["grounded_in_roster"] is None


async def test_iterate_bad_requests_are_400_and_call_nothing(stack):
    cases = [
        {"kind": "nonsense", "prompt": "x"},
        {"kind": "fill", "prompt": "  "},
        {"kind": "fill", "prompt": "x", "provider": "anthropic"},
        {"kind": "fill", "prompt": "x", "max_iterations": 21},
        {"kind": "fill", "prompt": "x", "max_iterations": -1},
        {"kind": "fill", "prompt": "x", "max_tokens": -5},
        {"kind": "fill", "prompt": "x", "temperature": -0.5},
        {"kind": "fill", "prompt": "x", "unknown": 1},
        {"kind": "fill"},
        {"kind": "fill", "prompt": "x", "context": "Toledo"},
    ]
    for body in cases:
        r = await stack.client.post("/iterate", json=body)
        assert r.status == 400, body
    assert stack.ollama.requests == [] and stack.rows() == []


async def test_concurrent_iterates_write_whole_rows(stack):
    # every odd request is refused once before being accepted, so rows differ in size
    stack.ollama.rule(r"odd-\d+(?!.*failed validation)", PHANTOM)
    stack.ollama.rule("fill", GOOD)
    n = 24
    big = "日本語 — × " * 300

    async def one(i: int):
        tag = "odd" if i % 2 else "even"
        return await stack.iterate(200, kind="fill", prompt=f"fill {tag}-{i} {big}", context=CTX,
                                   trace_id=f"t-{i}")

    results = await asyncio.gather(*(one(i) for i in range(n)))
    assert all(out["iterations"] == (2 if i % 2 else 1) for i, (out, _) in enumerate(results))
    raw = stack.log.path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == n
    rows = [orjson.loads(line) for line in raw.splitlines()]
    assert sorted(r["session_id"] for r in rows) == sorted(f"t-{i}" for i in range(n))
    assert all(r["final_verdict"] == "accepted" and big in r["prompt"] for r in rows)


async def test_session_log_disabled_with_an_empty_path(aiohttp_client, aiohttp_server, config, tmp_path):
    stack = await make_stack(aiohttp_client, aiohttp_server, config, tmp_path, session_log_path="")
    stack.ollama.script(GOOD)
    await stack.iterate(200, kind="fill", prompt="fill", context=CTX)
    assert not stack.log.enabled
    assert not list(Path(config.data_dir).glob("**/*.jsonl"))


async def test_no_roster_means_every_existence_check_fails(aiohttp_client, aiohttp_server, config, tmp_path):
    stack = await make_stack(aiohttp_client, aiohttp_server, config, tmp_path, roster_path="")
    r = await stack.client.post("/validate", json={"kind": "fill", "artifact": orjson.loads(GOOD)})
    assert r.status == 422 and "does not exist in worker roster" in (await r.json())["Consistency"]["reason"]


async def test_unreadable_roster_is_a_config_error(aiohttp_client, config, tmp_path):
    cfg = config.replace("validatord", roster_path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match=r"\[validatord\].roster_path"):
        await aiohttp_client(validatord.create_app(cfg))


async def test_odd_values_never_produce_a_500(stack):
    huge = 10**30
    bodies = [
        {"kind": "fill", "artifact": {"fills": [{"candidate_id": "W-1", "name": "x"}]},
         "context": {"target_count": huge}},
        {"kind": "playbook", "artifact": {**PLAYBOOK, "target_count": huge}},
        {"kind": "playbook", "artifact": {**PLAYBOOK, "target_count": -huge}},
        {"kind": "email", "artifact": {"to": ["a"], "body": {"x": huge}}},
        {"kind": "fill", "artifact": {"fills": [{"candidate_id": "W-1", "name": "x"}], "_context": [huge]}},
        {"kind": "fill", "artifact": {"fills": [[[[[]]]]]}},
    ]
    for body in bodies:
        r = await stack.client.post("/validate", json=body)
        assert r.status in (200, 422), (body, await r.text())
    for raw in [
        b'{"kind": "fill", "prompt": "x", "max_tokens": 1000000000000000000000000000000}',
        b'{"kind": "fill", "prompt": "x", "temperature": 1e400}',
        b'{"kind": "fill", "prompt": "x", "max_iterations": 1.5}',
        b'{"kind": "fill", "prompt": "x\\ud800"}',
    ]:
        r = await stack.client.post("/iterate", data=raw)
        assert r.status == 400, raw
    assert stack.ollama.requests == []


async def test_iterate_with_an_unknown_model_is_404_naming_it(stack):
    out, _ = await stack.iterate(404, kind="fill", prompt="fill", context=CTX, model="no-such-model")
    assert "model not found: 'no-such-model'" in out["error"]
    (row,) = stack.rows()
    assert row["final_verdict"] == "infra_error"


@pytest.mark.parametrize("tid", ["a\x00b", "tab\tbed", "x" * 129, "caf\u00e9", "two words"])
async def test_iterate_trace_id_that_cannot_be_a_header_is_400(stack, tid):
    out, r = await stack.iterate(400, kind="fill", prompt="fill", context=CTX, trace_id=tid)
    assert out["error"]["code"] == "bad_request" and out["error"]["message"].startswith("trace_id:")
    assert stack.rows() == []
