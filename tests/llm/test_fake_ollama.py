"""The fake Ollama: Ollama's wire shapes (checked with the official client), scripting, knobs."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import time

import aiohttp
import ollama
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.fakes import FakeOllama, Reply, fake_embedding
from lakehouse.fakes.ollama import FAKE_OLLAMA, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama(models={"nomic-embed-text": 768, "tiny-embed": 8, "qwen2.5": 768})


@pytest.fixture
async def url(aiohttp_server, fake) -> str:
    server = await aiohttp_server(fake.app())
    return str(server.make_url("")).rstrip("/")


# -- embeddings ------------------------------------------------------------------------------


@given(st.text(max_size=200), st.integers(min_value=1, max_value=300))
def test_fake_embedding_is_deterministic_bounded_and_prefix_stable(text, dim):
    vec = fake_embedding(text, dim)
    assert vec == fake_embedding(text, dim)
    assert len(vec) == dim and all(-1.0 <= x < 1.0 for x in vec)
    assert fake_embedding(text, dim + 5)[:dim] == vec
    unit = fake_embedding(text, dim, normalize=True)
    assert math.isclose(math.sqrt(sum(x * x for x in unit)), 1.0, rel_tol=1e-9)


def test_fake_embedding_differs_between_texts_and_rejects_bad_dimension():
    assert fake_embedding("a", 16) != fake_embedding("b", 16)
    with pytest.raises(ValueError):
        fake_embedding("a", 0)


async def test_official_client_embed_batch_and_legacy_embeddings(url):
    client = ollama.AsyncClient(host=url)
    resp = await client.embed(model="nomic-embed-text", input=["alpha", "beta", "alpha"])
    assert len(resp.embeddings) == 3 and all(len(v) == 768 for v in resp.embeddings)
    assert resp.embeddings[0] == resp.embeddings[2] != resp.embeddings[1]
    assert resp.embeddings[0] == pytest.approx(fake_embedding("alpha", 768, normalize=True))
    single = await client.embed(model="nomic-embed-text", input="alpha")
    assert single.embeddings == [resp.embeddings[0]]
    legacy = await client.embeddings(model="nomic-embed-text", prompt="alpha")
    assert list(legacy.embedding) == pytest.approx(fake_embedding("alpha", 768))
    # per-model dimension, and the `dimensions` truncation of /api/embed
    tiny = await client.embed(model="tiny-embed", input="alpha")
    assert len(tiny.embeddings[0]) == 8
    cut = await client.embed(model="nomic-embed-text", input="alpha", dimensions=4)
    assert cut.embeddings[0] == pytest.approx(fake_embedding("alpha", 4, normalize=True))


async def test_embed_errors(url, fake):
    async with aiohttp.ClientSession() as http:
        for path, body, status in [
            ("/api/embed", {"model": "nope", "input": ["x"]}, 404),
            ("/api/embeddings", {"model": "nope", "prompt": "x"}, 404),
            ("/api/embed", {"input": ["x"]}, 400),
            ("/api/embed", {"model": "tiny-embed", "input": [1]}, 400),
            ("/api/embed", {"model": "tiny-embed", "input": "x", "dimensions": 9}, 400),
        ]:
            async with http.post(url + path, json=body) as r:
                assert r.status == status, (path, body)
                assert isinstance((await r.json())["error"], str)
        async with http.post(url + "/api/embed", data=b"{nope") as r:
            assert r.status == 400
        # an empty legacy prompt gives an empty vector, as Ollama does
        async with http.post(url + "/api/embeddings", json={"model": "tiny-embed", "prompt": ""}) as r:
            assert (await r.json()) == {"embedding": []}
    with pytest.raises(ollama.ResponseError) as info:
        await ollama.AsyncClient(host=url).embed(model="missing", input="x")
    assert info.value.status_code == 404 and "not found" in info.value.error


async def test_tags_version_health_and_model_tags(url, fake):
    listing = await ollama.AsyncClient(host=url).list()
    names = {m.model for m in listing.models}
    assert names == {"nomic-embed-text:latest", "tiny-embed:latest", "qwen2.5:latest"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/health") as r:
            assert await r.json() == {"status": "ok", "service": "fake_ollama"}
        async with http.get(url + "/") as r:
            assert await r.text() == "Ollama is running"
        # a bare name means :latest, both ways
        async with http.post(url + "/api/embed", json={"model": "qwen2.5:latest", "input": "x"}) as r:
            assert r.status == 200
    fake.add_model("extra:7b", 3)
    assert fake.dimension("extra:7b") == 3
    fake.remove_model("extra:7b")
    assert fake.dimension("extra:7b") is None
    with pytest.raises(ValueError):
        fake.add_model("bad", 0)


# -- chat and generate ----------------------------------------------------------------------


async def test_chat_queue_rules_and_default(url, fake):
    client = ollama.AsyncClient(host=url)
    fake.script("first", Reply("second", finish_reason="length"))
    fake.rule(r"judge", "RATING: 5", times=1)
    msgs = [{"role": "user", "content": "hello there"}]
    r1 = await client.chat(model="qwen2.5", messages=msgs, think=False)
    assert (r1.message.content, r1.done_reason) == ("first", "stop")
    r2 = await client.chat(model="qwen2.5", messages=[{"role": "user", "content": "please judge"}])
    assert r2.message.content == "RATING: 5"  # the rule wins over the queue
    r3 = await client.chat(model="qwen2.5", messages=[{"role": "user", "content": "please judge"}])
    assert (r3.message.content, r3.done_reason) == ("second", "length")  # rule used up
    r4 = await client.chat(model="qwen2.5", messages=msgs)
    assert r4.message.content == "fake reply to: hello there"
    assert r4.prompt_eval_count == 2 and r4.eval_count == 5
    r5 = await client.chat(model="qwen2.5", messages=msgs, format="json")
    assert orjson.loads(r5.message.content) == {"reply": "hello there"}
    sent = fake.calls("/api/chat")[0].json
    assert sent["think"] is False and sent["stream"] is False


async def test_chat_streams_ndjson_by_default(url, fake):
    fake.script("one two three")
    parts = []
    async for chunk in await ollama.AsyncClient(host=url).chat(
        model="qwen2.5", messages=[{"role": "user", "content": "x"}], stream=True
    ):
        parts.append(chunk)
    assert "".join(p.message.content for p in parts) == "one two three"
    assert parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].eval_count == 3
    assert not any(p.done for p in parts[:-1])


async def test_reply_functions_num_predict_and_generate(url, fake):
    client = ollama.AsyncClient(host=url)
    fake.script(lambda call: Reply(call.model + "|" + call.last_user.upper()))
    r = await client.chat(model="qwen2.5", messages=[{"role": "user", "content": "abc"}])
    assert r.message.content == "qwen2.5|ABC"
    fake.script("a b c d e")
    r = await client.chat(
        model="qwen2.5", messages=[{"role": "user", "content": "x"}], options={"num_predict": 2}
    )
    assert (r.message.content, r.done_reason) == ("a b", "length")
    fake.rule(r"SYSTEM-RULES", "from generate")
    g = await client.generate(model="qwen2.5", prompt="go", system="SYSTEM-RULES")
    assert g.response == "from generate" and g.done and g.done_reason == "stop"
    empty = await client.generate(model="qwen2.5", prompt="")
    assert empty.done_reason == "load"


async def test_unknown_chat_model_is_404(url):
    with pytest.raises(ollama.ResponseError) as info:
        await ollama.AsyncClient(host=url).chat(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404


# -- knobs -------------------------------------------------------------------------------------


async def test_fail_knob_counts_paths_and_bodies(url, fake):
    fake.fail(500, times=2, paths=["/api/embed"])
    fake.fail(429, body="slow down", times=1, paths=["/api/chat"])
    async with aiohttp.ClientSession() as http:
        embed = {"model": "tiny-embed", "input": ["x"]}
        statuses = []
        for _ in range(3):
            async with http.post(url + "/api/embed", json=embed) as r:
                statuses.append(r.status)
        assert statuses == [500, 500, 200]
        async with http.post(url + "/api/tags") as r:
            assert r.status == 405  # failures are per path; others unaffected
        chat = {"model": "qwen2.5", "messages": [], "stream": False}
        async with http.post(url + "/api/chat", json=chat) as r:
            assert r.status == 429 and await r.text() == "slow down"
        async with http.post(url + "/api/chat", json=chat) as r:
            assert r.status == 200
        fake.fail(503)  # until cleared
        for _ in range(2):
            async with http.post(url + "/api/embed", json=embed) as r:
                assert r.status == 503
        fake.clear()
        async with http.post(url + "/api/embed", json=embed) as r:
            assert r.status == 200
    with pytest.raises(ValueError):
        fake.fail(200)


async def test_scripted_error_reply_and_delay(url, fake):
    fake.script(Reply(status=500, body='{"error":"model crashed"}'))
    async with aiohttp.ClientSession() as http:
        chat = {"model": "qwen2.5", "messages": [{"role": "user", "content": "x"}], "stream": False}
        async with http.post(url + "/api/chat", json=chat) as r:
            assert r.status == 500 and (await r.json()) == {"error": "model crashed"}
        fake.delay = 5.0
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(
                url + "/api/chat", json=chat, timeout=aiohttp.ClientTimeout(total=0.2)
            ) as r:
                await r.read()
        assert time.monotonic() - start < 2.0
        fake.delay = 0.0
        fake.script(Reply("late", delay=0.3))
        start = time.monotonic()
        async with http.post(url + "/api/chat", json=chat) as r:
            assert (await r.json())["message"]["content"] == "late"
        assert time.monotonic() - start >= 0.3


async def test_api_key_and_request_log(aiohttp_server):
    fake = FakeOllama(api_key="secret")
    server = await aiohttp_server(fake.app())
    url = str(server.make_url("")).rstrip("/")
    body = {"model": "kimi-k2.6:cloud", "prompt": "hi", "stream": False}
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/generate", json=body) as r:
            assert r.status == 401
        async with http.post(
            url + "/api/generate", json=body, headers={"Authorization": "Bearer secret", "X-Lakehouse-Trace-Id": "t-1"}
        ) as r:
            assert r.status == 200
        async with http.get(url + "/health") as r:
            assert r.status == 200  # never behind the key
    last = fake.calls("/api/generate")[-1]
    assert last.headers["X-Lakehouse-Trace-Id"] == "t-1" and last.json == body
    assert server.app[FAKE_OLLAMA] is fake


async def test_serve_on_a_real_socket():
    fake = FakeOllama(models=["m1"], default_dimension=5)
    async with fake.serve() as url:
        resp = await ollama.AsyncClient(host=url).embed(model="m1", input="x")
        assert len(resp.embeddings[0]) == 5
    assert isinstance(create_app(), object)


def test_cli_runs_a_fake_ollama():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "fake-ollama", "--port", str(port),
         "--model", "tiny=4", "--reply", "scripted"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        client = ollama.Client(host=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while True:
            try:
                names = [m.model for m in client.list().models]
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert names == ["tiny:latest"]
        assert len(client.embed(model="tiny", input="x").embeddings[0]) == 4
        assert client.chat(model="tiny", messages=[{"role": "user", "content": "q"}]).message.content == "scripted"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
