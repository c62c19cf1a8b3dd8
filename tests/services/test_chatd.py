"""chatd against the fake servers: every routing rule, every status code, the wire shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.chat import ChatRequest, build_registry, flatten_messages, route
from lakehouse.chat.registry import read_key_file, resolve_key
from lakehouse.clients.base import UpstreamError
from lakehouse.clients.chatd import ChatdClient, is_timeout
from lakehouse.fakes import FakeOllama, FakeOpenAI, Reply
from lakehouse.services.chatd import create_app
from lakehouse.web import TRACE_HEADER, ApiError, decode_json

KEYS = {
    "LH_TEST_CLOUD_KEY": "cloud-key",
    "LH_TEST_OPENROUTER_KEY": "or-key",
    "LH_TEST_OPENCODE_KEY": "oc-key",
    "LH_TEST_KIMI_KEY": "kimi-key",
}


@dataclass
class Stack:
    client: object  # aiohttp TestClient on chatd
    local: FakeOllama
    cloud: FakeOllama
    openrouter: FakeOpenAI
    opencode: FakeOpenAI
    kimi: FakeOpenAI

    async def chat(self, status: int = 200, headers: dict | None = None, **body):
        r = await self.client.post("/chat", json=body, headers=headers or {})
        data = await r.json()
        assert r.status == status, data
        return data


def url_of(server) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def stack(aiohttp_client, aiohttp_server, config, monkeypatch) -> Stack:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    local = FakeOllama()
    cloud = FakeOllama(api_key="cloud-key", models={"kimi-k2.6:cloud": 8, "deepseek-v3.2": 8})
    openrouter = FakeOpenAI(api_key="or-key")
    opencode = FakeOpenAI(api_key="oc-key")
    kimi = FakeOpenAI(api_key="kimi-key", models=["kimi-for-coding"])
    servers = {}
    for name, fake in [("local", local), ("cloud", cloud), ("openrouter", openrouter),
                       ("opencode", opencode), ("kimi", kimi)]:
        servers[name] = url_of(await aiohttp_server(fake.app()))
    cfg = config.replace(
        "chatd",
        ollama_url=servers["local"],
        ollama_cloud_url=servers["cloud"],
        openrouter_url=servers["openrouter"] + "/api/v1",
        opencode_url=servers["opencode"] + "/zen/v1",
        kimi_url=servers["kimi"] + "/coding/v1",
        ollama_cloud_key_env="LH_TEST_CLOUD_KEY",
        openrouter_key_env="LH_TEST_OPENROUTER_KEY",
        opencode_key_env="LH_TEST_OPENCODE_KEY",
        kimi_key_env="LH_TEST_KIMI_KEY",
        timeout_secs=5.0,
    )
    client = await aiohttp_client(create_app(cfg))
    return Stack(client, local, cloud, openrouter, opencode, kimi)


USER = [{"role": "user", "content": "hello"}]


# -- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, provider, upstream",
    [
        ("qwen3.5:latest", "ollama", "qwen3.5:latest"),
        ("ollama/qwen2.5", "ollama", "qwen2.5"),
        ("ollama/kimi-k2.6:cloud", "ollama", "kimi-k2.6:cloud"),  # explicit prefix wins
        ("hf.co/org/model:Q4", "ollama", "hf.co/org/model:Q4"),  # unknown vendor: bare
        ("ollama_cloud/deepseek-v3.2", "ollama_cloud", "deepseek-v3.2"),
        ("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6:cloud"),
        ("openrouter/anthropic/claude-opus-4-7", "openrouter", "anthropic/claude-opus-4-7"),
        ("opencode/claude-opus-4-7", "opencode", "claude-opus-4-7"),
        ("kimi/kimi-for-coding", "kimi", "kimi-for-coding"),
    ],
)
def test_route_table(model, provider, upstream):
    assert route(model) == (provider, upstream)


@pytest.mark.parametrize("model", ["", "   ", "ollama/", "openrouter/", "kimi/", "opencode/", "ollama_cloud/"])
def test_route_rejects_empty_names(model):
    with pytest.raises(ValueError):
        route(model)


@given(st.text(min_size=1).filter(lambda s: s.strip() and "/" not in s and not s.strip().endswith(":cloud")))
def test_route_bare_names_go_to_local_ollama_unchanged(name):
    assert route(name) == ("ollama", name.strip())


@given(st.sampled_from(["ollama", "ollama_cloud", "openrouter", "opencode", "kimi"]),
       st.text(min_size=1).filter(lambda s: s.strip() == s and s))
def test_route_strips_every_prefix(provider, rest):
    assert route(f"{provider}/{rest}") == (provider, rest)


async def test_each_route_reaches_its_provider_with_the_upstream_name(stack):
    cases = [
        ("qwen2.5", stack.local, "/api/chat", "qwen2.5"),
        ("ollama/qwen3.5:latest", stack.local, "/api/chat", "qwen3.5:latest"),
        ("ollama_cloud/deepseek-v3.2", stack.cloud, "/api/generate", "deepseek-v3.2"),
        ("kimi-k2.6:cloud", stack.cloud, "/api/generate", "kimi-k2.6:cloud"),
        ("openrouter/anthropic/claude-opus-4-7", stack.openrouter, "/api/v1/chat/completions",
         "anthropic/claude-opus-4-7"),
        ("opencode/claude-opus-4-7", stack.opencode, "/zen/v1/chat/completions", "claude-opus-4-7"),
        ("kimi/kimi-for-coding", stack.kimi, "/coding/v1/chat/completions", "kimi-for-coding"),
    ]
    providers = ["ollama", "ollama", "ollama_cloud", "ollama_cloud", "openrouter", "opencode", "kimi"]
    for (model, fake, path, upstream), provider in zip(cases, providers, strict=True):
        fake.script(f"answer from {provider}")
        out = await stack.chat(model=model, messages=USER)
        assert out["provider"] == provider and out["content"] == f"answer from {provider}"
        sent = fake.calls(path)[-1]
        assert sent.json["model"] == upstream, model
    # keys: cloud providers got their own bearer; local Ollama got none
    assert stack.cloud.calls("/api/generate")[-1].headers["Authorization"] == "Bearer cloud-key"
    assert stack.openrouter.requests[-1].headers["Authorization"] == "Bearer or-key"
    assert stack.kimi.requests[-1].headers["Authorization"] == "Bearer kimi-key"
    assert "Authorization" not in stack.local.calls("/api/chat")[-1].headers


# -- local Ollama ----------------------------------------------------------------------------


async def test_local_ollama_request_and_answer_shape(stack):
    stack.local.script(Reply("four words of reply", prompt_tokens=11, completion_tokens=4))
    out = await stack.chat(model="qwen2.5:latest", messages=USER, headers={TRACE_HEADER: "trace-7"})
    assert out == {
        "model": "qwen2.5:latest",
        "provider": "ollama",
        "content": "four words of reply",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }
    sent = stack.local.calls("/api/chat")[-1]
    assert sent.json == {"model": "qwen2.5:latest", "messages": USER, "stream": False, "think": False}
    assert "temperature" not in str(sent.json)  # unset -> omitted, not null
    assert sent.headers[TRACE_HEADER] == "trace-7"


async def test_local_ollama_options_format_and_done_reason(stack):
    stack.local.script("one two three four five")
    out = await stack.chat(
        model="qwen2.5", messages=USER, temperature=0.0, max_tokens=2, format="json"
    )
    sent = stack.local.calls("/api/chat")[-1].json
    assert sent["options"] == {"temperature": 0.0, "num_predict": 2}
    assert sent["format"] == "json"
    assert out["finish_reason"] == "length" and out["content"] == "one two"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    await stack.chat(model="qwen2.5", messages=USER, format=schema)
    assert stack.local.calls("/api/chat")[-1].json["format"] == schema
    await stack.chat(model="qwen2.5", messages=USER, format="")
    assert "format" not in stack.local.calls("/api/chat")[-1].json


async def test_trace_id_is_minted_and_returned_when_absent(stack):
    r = await stack.client.post("/chat", json={"model": "qwen2.5", "messages": USER})
    assert r.status == 200
    minted = r.headers[TRACE_HEADER]
    assert stack.local.calls("/api/chat")[-1].headers[TRACE_HEADER] == minted


# -- Ollama Cloud -----------------------------------------------------------------------------


async def test_ollama_cloud_uses_generate_with_flattened_messages(stack):
    stack.cloud.script(Reply("cloud says hi", finish_reason="stop"))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    out = await stack.chat(model="kimi-k2.6:cloud", messages=messages, temperature=0.3)
    assert out["content"] == "cloud says hi" and out["usage"]["completion_tokens"] == 3
    sent = stack.cloud.calls("/api/generate")[-1].json
    assert sent == {
        "model": "kimi-k2.6:cloud",
        "prompt": "hi",
        "stream": False,
        "system": "be brief",
        "options": {"temperature": 0.3},
    }


def test_flatten_messages():
    assert flatten_messages([{"role": "user", "content": "q"}]) == ("", "q")
    system, prompt = flatten_messages(
        [
            {"role": "system", "content": "s1"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "system", "content": "s2"},
            {"role": "user", "content": "c"},
        ]
    )
    assert system == "s1\n\ns2"
    assert prompt == "User: a\n\nAssistant: b\n\nUser: c\n\nAssistant:"


# -- OpenAI-compatible ------------------------------------------------------------------------


async def test_openai_adapter_request_and_answer(stack):
    stack.openrouter.script(Reply("{\"ok\": true}", prompt_tokens=7, completion_tokens=2))
    out = await stack.chat(
        model="openrouter/anthropic/claude-opus-4-7", messages=USER, max_tokens=10, format="json"
    )
    assert out == {
        "model": "anthropic/claude-opus-4-7",
        "provider": "openrouter",
        "content": "{\"ok\": true}",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    sent = stack.openrouter.requests[-1].json
    assert sent == {
        "model": "anthropic/claude-opus-4-7",
        "messages": USER,
        "stream": False,
        "max_tokens": 10,
        "response_format": {"type": "json_object"},
    }
    assert "temperature" not in sent  # Anthropic 4.7 rejects it: never sent unless asked
    await stack.chat(model="opencode/claude-opus-4-7", messages=USER, temperature=0.7)
    assert stack.opencode.requests[-1].json["temperature"] == 0.7


async def test_openai_adapter_length_and_missing_usage(stack):
    stack.kimi.omit_usage = True
    stack.kimi.script("a b c d")
    out = await stack.chat(model="kimi/kimi-for-coding", messages=USER, max_tokens=3)
    assert out["finish_reason"] == "length" and out["content"] == "a b c"
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


# -- statuses ------------------------------------------------------------------------------


async def test_unregistered_provider_is_404(aiohttp_client, config, monkeypatch):
    for name in ("OLLAMA_CLOUD_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    client = await aiohttp_client(create_app(config.replace("chatd", ollama_url="")))
    for model in ["openrouter/a/b", "opencode/x", "kimi/x", "ollama_cloud/x", "x:cloud", "qwen2.5"]:
        r = await client.post("/chat", json={"model": model, "messages": USER})
        err = (await r.json())["error"]
        assert r.status == 404 and err["code"] == "not_found", model
        assert err["message"].startswith("provider not found for model")
    assert (await (await client.get("/providers")).json()) == {"providers": [], "details": []}


async def test_disabled_provider_is_503_and_listed(aiohttp_client, aiohttp_server, config, monkeypatch):
    monkeypatch.setenv("LH_TEST_OPENROUTER_KEY", "k")
    fake = FakeOpenAI()
    cfg = config.replace(
        "chatd",
        openrouter_url=url_of(await aiohttp_server(fake.app())),
        openrouter_key_env="LH_TEST_OPENROUTER_KEY",
        disabled_providers=["openrouter"],
    )
    client = await aiohttp_client(create_app(cfg))
    r = await client.post("/chat", json={"model": "openrouter/a/b", "messages": USER})
    body = await r.json()
    assert r.status == 503 and body["error"]["message"].startswith("provider disabled (no auth key)")
    assert fake.requests == []
    listing = await (await client.get("/chat/providers")).json()
    details = {d["name"]: d for d in listing["details"]}
    assert details["openrouter"]["enabled"] is False and details["ollama"]["enabled"] is True


@pytest.mark.parametrize("target", ["local", "cloud", "openrouter"])
async def test_upstream_error_is_502_with_the_upstream_body(stack, target):
    model = {"local": "qwen2.5", "cloud": "kimi-k2.6:cloud", "openrouter": "openrouter/a/b"}[target]
    getattr(stack, target).fail(500, body='{"error":"GPU on fire"}', times=1)
    out = await stack.chat(status=502, model=model, messages=USER)
    assert out["error"]["code"] == "upstream_error"
    assert out["error"]["message"].startswith("provider upstream error")
    assert "HTTP 500" in out["error"]["message"] and "GPU on fire" in out["error"]["message"]
    getattr(stack, target).fail(429, body="rate limited", times=1)
    out = await stack.chat(status=502, model=model, messages=USER)
    assert "HTTP 429" in out["error"]["message"] and "rate limited" in out["error"]["message"]
    await stack.chat(model=model, messages=USER)  # the next call goes through


async def test_unknown_upstream_model_is_404_naming_it_and_zero_choices_502(stack):
    # the provider's 404 for a model it lacks is the caller's mistake: 404, not 502 (issue 17)
    out = await stack.chat(status=404, model="ollama/no-such-model", messages=USER)
    assert out["error"]["code"] == "not_found"
    assert out["error"]["message"].startswith("model not found: 'no-such-model' at ollama")
    out = await stack.chat(status=404, model="kimi/other-model", messages=USER)
    assert out["error"]["message"].startswith("model not found: 'other-model' at kimi")
    stack.openrouter.zero_choices = True
    out = await stack.chat(status=502, model="openrouter/a/b", messages=USER)
    assert "no choices" in out["error"]["message"]


async def test_wrong_key_upstream_is_502(stack):
    stack.cloud.api_key = "rotated"
    out = await stack.chat(status=502, model="kimi-k2.6:cloud", messages=USER)
    assert "HTTP 401" in out["error"]["message"]


async def test_timeout_is_504(aiohttp_client, aiohttp_server, config):
    fake = FakeOllama()
    fake.delay = 5.0
    cfg = config.replace("chatd", ollama_url=url_of(await aiohttp_server(fake.app())), timeout_secs=0.2)
    client = await aiohttp_client(create_app(cfg))
    r = await client.post("/chat", json={"model": "qwen2.5", "messages": USER})
    body = await r.json()
    assert r.status == 504 and body["error"]["code"] == "upstream_timeout"
    assert body["error"]["message"].startswith("provider timeout")


async def test_unreachable_upstream_is_502(aiohttp_client, config):
    cfg = config.replace("chatd", ollama_url="http://127.0.0.1:9")  # discard port: refused
    client = await aiohttp_client(create_app(cfg))
    r = await client.post("/chat", json={"model": "qwen2.5", "messages": USER})
    assert r.status == 502 and "unreachable" in (await r.json())["error"]["message"]


BAD_BODIES = [
    b"",
    b"{nope",
    b"[]",
    b'"text"',
    b"\xff\xfe",
    b'{"model": "\xff", "messages": []}',
    b'{"model": "m"}',
    b'{"messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "m", "messages": []}',
    b'{"model": "", "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "ollama/", "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "m", "messages": [{"role": "tool", "content": "x"}]}',
    b'{"model": "m", "messages": [{"role": "user"}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x", "name": "n"}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": 5}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10000000000000000000000}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1e400}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": -1}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "format": "xml"}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "format": 3}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "format": {"max": 10000000000000000000000}}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "provider": "ollama"}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}',
]


async def test_bad_bodies_are_400_and_reach_no_provider(stack):
    for raw in BAD_BODIES:
        r = await stack.client.post("/chat", data=raw)
        body = await r.json()
        assert r.status == 400, (raw, body)
        assert body["error"]["code"] == "bad_request"
    assert stack.local.requests == []
    r = await stack.client.post("/chat", data=b'{"model": "m", "messages": [], "x": "' + b"a" * (5 << 20) + b'"}')
    assert r.status == 413


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["model", "messages", "role", "content", "max_tokens", "temperature", "format", "x"]),
        inner, max_size=5),
    max_leaves=12,
))
def test_no_decodable_body_escapes_the_400_path(value):
    raw = json.dumps(value).encode()  # stdlib: big ints and Infinity become bytes too
    try:
        req = decode_json(raw, ChatRequest)
        req.check()
        route(req.model)
    except ApiError as exc:
        assert exc.status == 400
    except ValueError:
        pass


# -- providers listing, keys -----------------------------------------------------------------


async def test_providers_listing_never_shows_keys(stack):
    for path in ("/providers", "/chat/providers"):
        r = await stack.client.get(path)
        listing = await r.json()
        assert listing["providers"] == ["ollama", "ollama_cloud", "openrouter", "opencode", "kimi"]
        assert all(k not in str(listing) for k in KEYS.values())
        assert {d["kind"] for d in listing["details"]} == {"ollama", "ollama_cloud", "openai"}
    health = await stack.client.get("/health")
    assert await health.json() == {"status": "ok", "service": "chatd"}


def test_key_files(tmp_path: Path):
    f = tmp_path / "openrouter.env"
    f.write_text('# comment\nOTHER=x\nexport OPENROUTER_API_KEY="sk-or-1"\n')
    assert read_key_file(f, "OPENROUTER_API_KEY") == "sk-or-1"
    f.write_text("sk-bare\n")
    assert read_key_file(f, "OPENROUTER_API_KEY") == "sk-bare"
    f.write_text("OPENROUTER_API_KEY=\n")
    assert read_key_file(f, "OPENROUTER_API_KEY") == ""
    assert read_key_file(tmp_path / "missing.env", "X") == ""
    f.write_text("OPENROUTER_API_KEY=from-file")
    assert resolve_key("OPENROUTER_API_KEY", f, {"OPENROUTER_API_KEY": "from-env"}) == "from-env"
    assert resolve_key("OPENROUTER_API_KEY", f, {"OPENROUTER_API_KEY": "  "}) == "from-file"
    assert resolve_key("OPENROUTER_API_KEY", None, {}) == ""


def test_registry_from_key_dir(tmp_path: Path, config):
    (tmp_path / "kimi.env").write_text("KIMI_API_KEY=k1\n")
    (tmp_path / "opencode.env").write_text("")
    registry = build_registry(config.chatd, key_dir=tmp_path, env={})
    assert list(registry.providers) == ["ollama", "kimi"]
    assert registry.providers["kimi"].api_key == "k1"
    assert "no API key" in registry.missing["opencode"]


# -- the client -------------------------------------------------------------------------------


async def test_chatd_client(stack):
    base = url_of(stack.client.server)
    async with aiohttp.ClientSession() as session:
        client = ChatdClient(session, base)
        stack.local.script("plain answer", "second")
        answer = await client.chat("qwen2.5", USER, temperature=0.1, trace_id="t-9")
        assert answer["content"] == "plain answer" and answer["provider"] == "ollama"
        assert stack.local.calls("/api/chat")[-1].headers[TRACE_HEADER] == "t-9"
        text = await client.complete("qwen2.5", "q", system="sys", max_tokens=5)
        assert text == "second"
        assert stack.local.calls("/api/chat")[-1].json["messages"][0] == {"role": "system", "content": "sys"}
        assert (await client.providers())["providers"][0] == "ollama"
        with pytest.raises(UpstreamError) as info:
            await client.chat("kimi/unknown", USER)
        assert info.value.status == 404 and not is_timeout(info.value)
        stack.local.delay = 5.0
        with pytest.raises(UpstreamError) as info:
            await client.chat("qwen2.5", USER, timeout=0.2)
        assert info.value.status is None and is_timeout(info.value)


def test_chat_request_decoding_is_strict():
    req = msgspec.json.decode(
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}',
        type=ChatRequest,
        strict=True,
    )
    assert req.temperature == 0.0 and req.max_tokens is None
    req.check()
