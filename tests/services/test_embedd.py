"""embedd over HTTP: contract section 8, with the hash provider and against the fake Ollama."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.embedd import EmbeddClient
from lakehouse.config import load_config
from lakehouse.embed import hash_embed
from lakehouse.fakes.ollama import FakeOllama, fake_embedding
from lakehouse.services.embedd import EMBEDDER, create_app


@pytest.fixture
async def embedd(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


@pytest.fixture
async def fake_ollama(aiohttp_server):
    fake = FakeOllama(models={"nomic-embed-text-v2-moe": 768, "small": 4})
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def ollama_embedd(aiohttp_client, config, fake_ollama):
    cfg = config.replace("embedd", provider="ollama", ollama_url=fake_ollama.url, batch_size=2)
    return await aiohttp_client(create_app(cfg))


async def post(client, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    r = await client.post("/embed", data=data, headers={"Content-Type": "application/json"})
    return r.status, await r.json()


async def test_health(embedd):
    r = await embedd.get("/health")
    assert r.status == 200 and await r.json() == {"status": "ok", "service": "embedd"}


async def test_embed_answers_model_dimension_vectors(embedd):
    texts = ["Forklift Operator, OSHA-30, Milwaukee WI", "registered nurse in Chicago"]
    status, body = await post(embedd, {"texts": texts})
    assert status == 200
    assert set(body) == {"model", "dimension", "vectors"}
    assert body["model"] == "hash" and body["dimension"] == 768
    vectors = np.array(body["vectors"], dtype=np.float32)
    # float32 values survive the JSON round trip exactly
    np.testing.assert_array_equal(vectors, hash_embed(texts, 768))


@pytest.mark.parametrize(
    ("model", "echoed"), [(None, "hash"), ("", "hash"), ("nomic-embed-text", "nomic-embed-text")]
)
async def test_the_resolved_model_is_echoed(embedd, model, echoed):
    status, body = await post(embedd, {"texts": ["x"], "model": model})
    assert status == 200 and body["model"] == echoed


async def test_dimension_comes_from_the_config(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace("embedd", dimension=7)))
    status, body = await post(client, {"texts": ["a", "b"]})
    assert status == 200 and body["dimension"] == 7 and len(body["vectors"][1]) == 7


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": []}, "must not be empty"),
        ({"texts": [""]}, r"texts[0]: empty text"),
        ({"texts": ["ok", ""]}, r"texts[1]: empty text"),
        # the project's own wording (lakehouse.bodycheck), not msgspec's
        ({"texts": ["ok", 3]}, "texts[1]: expected a string, got a number"),
        ({"texts": [None]}, "texts[0]: expected a string, got null"),
        ({"texts": "forklift"}, "texts: expected an array, got a string"),
        ({"texts": None}, "texts: expected an array, got null"),
        ({}, "missing required field 'texts'"),
        ({"input": ["x"]}, "unknown field 'input'"),
        ({"texts": ["x"], "model": 5}, "model: expected a string or null, got a number"),
        ({"texts": ["x"], "prompt": "x"}, "unknown field 'prompt'"),
        (["x"], "expected an object, got an array"),
        ({"texts": ["x"], "model": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}, "nested deeper than 64 levels"),
        (b"{bad json", "malformed JSON"),
        (b"", "empty body"),
        (b'{"texts": ["\xff\xfe"]}', "not UTF-8"),
        (b'{"texts": ["\\ud800"]}', "malformed JSON"),
    ],
)
async def test_bad_requests_are_400(embedd, body, message):
    status, answer = await post(embedd, body)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    assert message in answer["error"]["message"]


async def test_too_many_texts_is_400(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace("embedd", max_texts=3)))
    status, answer = await post(client, {"texts": ["a", "b", "c", "d"]})
    assert status == 400 and "at most 3 per request, got 4" in answer["error"]["message"]
    assert (await post(client, {"texts": ["a", "b", "c"]}))[0] == 200


async def test_default_max_texts_is_2048(embedd):
    assert (await post(embedd, {"texts": ["w"] * 2048}))[0] == 200
    assert (await post(embedd, {"texts": ["w"] * 2049}))[0] == 400


async def test_oversized_body_is_413(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace("embedd", max_body_bytes=1000)))
    status, answer = await post(client, {"texts": ["x" * 2000]})
    assert status == 413 and answer["error"]["code"] == "payload_too_large"


async def test_stats_count_texts(embedd):
    r = await embedd.get("/embed/stats")
    assert await r.json() == {
        "hits": 0,
        "misses": 0,
        "hit_rate": 0.0,
        "size": 0,
        "capacity": 10_000,
        "provider": "hash",
        "default_model": "hash",
    }
    await post(embedd, {"texts": ["a", "b"]})
    await post(embedd, {"texts": ["a", "b", "c"], "model": "hash"})  # default model: same keys
    await post(embedd, {"texts": [""]})  # rejected: counts nothing
    stats = await (await embedd.get("/embed/stats")).json()
    assert {k: stats[k] for k in ("hits", "misses", "hit_rate", "size")} == {
        "hits": 2,
        "misses": 3,
        "hit_rate": 0.4,
        "size": 3,
    }


async def test_cache_size_zero_is_pass_through(aiohttp_client, config):
    client = await aiohttp_client(create_app(config.replace("embedd", cache_size=0)))
    for _ in range(2):
        assert (await post(client, {"texts": ["a"]}))[0] == 200
    stats = await (await client.get("/embed/stats")).json()
    assert (stats["hits"], stats["misses"], stats["size"]) == (0, 2, 0)


# -- the ollama provider, against the fake ----------------------------------------------


async def test_ollama_batches_and_caches(ollama_embedd, fake_ollama):
    texts = [f"worker {i} forklift" for i in range(5)]
    status, body = await post(ollama_embedd, {"texts": texts})
    assert status == 200
    assert body["model"] == "nomic-embed-text-v2-moe" and body["dimension"] == 768
    expected = np.array([fake_embedding(t, 768, normalize=True) for t in texts], np.float32)
    np.testing.assert_array_equal(np.array(body["vectors"], dtype=np.float32), expected)
    assert [len(c.json["input"]) for c in fake_ollama.calls("/api/embed")] == [2, 2, 1]

    fake_ollama.requests.clear()
    status, body = await post(ollama_embedd, {"texts": [texts[4], "new one", texts[0]]})
    assert status == 200 and len(body["vectors"]) == 3
    assert [c.json["input"] for c in fake_ollama.calls("/api/embed")] == [["new one"]]

    fake_ollama.requests.clear()
    fake_ollama.fail(500)  # an all-hit batch must not notice
    assert (await post(ollama_embedd, {"texts": texts[:3]}))[0] == 200
    assert fake_ollama.calls("/api/embed") == []


async def test_ollama_unknown_model_is_502(ollama_embedd):
    status, answer = await post(ollama_embedd, {"texts": ["x"], "model": "nope"})
    assert status == 502 and answer["error"]["code"] == "upstream_error"
    assert 'model "nope" not found' in answer["error"]["message"]


async def test_ollama_failure_is_502_and_nothing_is_cached(ollama_embedd, fake_ollama):
    fake_ollama.fail(500, times=1, paths=["/api/embed"])
    status, answer = await post(ollama_embedd, {"texts": ["a", "b", "c"]})
    assert status == 502 and "500" in answer["error"]["message"]
    stats = await (await ollama_embedd.get("/embed/stats")).json()
    assert stats["size"] == 0


async def test_ollama_unreachable_is_502(aiohttp_client, config):
    cfg = config.replace("embedd", provider="ollama", ollama_url="http://127.0.0.1:1")
    client = await aiohttp_client(create_app(cfg))
    status, answer = await post(client, {"texts": ["x"]})
    assert status == 502 and "unreachable" in answer["error"]["message"]


async def test_one_timeout_for_the_whole_batch_is_502(aiohttp_client, config, fake_ollama):
    # 3 calls of 0.15 s each: every call is quick, the batch is not.
    fake_ollama.delay = 0.15
    cfg = config.replace(
        "embedd", provider="ollama", ollama_url=fake_ollama.url, batch_size=1, timeout=0.3
    )
    client = await aiohttp_client(create_app(cfg))
    start = time.monotonic()
    status, answer = await post(client, {"texts": ["a", "b", "c"]})
    assert status == 502 and answer["error"]["code"] == "upstream_timeout"
    assert "within 0.3s" in answer["error"]["message"]
    assert time.monotonic() - start < 2.0
    fake_ollama.delay = 0.0
    assert (await post(client, {"texts": ["a"]}))[0] == 200


# -- no input produces a 500 --------------------------------------------------------------

def to_json(value) -> bytes:
    # the standard library's encoder: orjson refuses integers beyond 64 bits
    return json.dumps(value).encode()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON.map(to_json),
    st.fixed_dictionaries(
        {"texts": st.lists(st.one_of(st.text(max_size=20), JSON), max_size=4)},
        optional={"model": st.one_of(st.none(), st.text(max_size=10), JSON)},
    ).map(to_json),
)


@settings(max_examples=25)
@given(bodies=st.lists(BODIES, min_size=1, max_size=10))
def test_no_body_produces_a_500(bodies):
    config = load_config(env={}, data_dir="/nonexistent-embedd-test")

    async def run() -> None:
        async with TestClient(TestServer(create_app(config))) as client:
            for body in bodies:
                r = await client.post("/embed", data=body)
                answer = await r.json()
                assert r.status in (200, 400), (body, r.status, answer)
                if r.status == 200:
                    assert len(answer["vectors"]) == len(orjson.loads(body)["texts"])

    asyncio.run(run())


# -- the client -----------------------------------------------------------------------------


def client_for(test_client, **kw) -> EmbeddClient:
    return EmbeddClient(test_client.session, str(test_client.make_url("")), **kw)


async def test_client_embed_and_stats(embedd):
    client = client_for(embedd, chunk_size=3)
    texts = [f"text {i}" for i in range(7)]
    model, dimension, vectors = await client.embed(texts)
    assert (model, dimension) == ("hash", 768)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, hash_embed(texts, 768))
    stats = await client.stats()
    assert (stats["misses"], stats["size"]) == (7, 7)
    model, _, _ = await client.embed(texts[:2], model="custom")
    assert model == "custom"


async def test_client_errors(embedd, ollama_embedd):
    client = client_for(embedd)
    with pytest.raises(ValueError, match="empty"):
        await client.embed([])
    with pytest.raises(ValueError, match="single string"):
        await client.embed("forklift")
    with pytest.raises(UpstreamError) as err:
        await client.embed(["ok", ""])
    assert err.value.status == 400 and "texts[1]" in err.value.message
    with pytest.raises(UpstreamError) as err:
        await client_for(ollama_embedd).embed(["x"], model="nope")
    assert err.value.status == 502


async def test_client_refuses_a_malformed_answer(aiohttp_client):
    from aiohttp import web

    async def wrong(request: web.Request) -> web.Response:
        return web.json_response({"model": "m", "dimension": 3, "vectors": [[1.0, 2.0]]})

    app = web.Application()
    app.router.add_post("/embed", wrong)
    client = client_for(await aiohttp_client(app))
    with pytest.raises(UpstreamError, match="shape"):
        await client.embed(["a"])


async def test_a_provider_bug_is_not_blamed_on_the_client(embedd, monkeypatch):
    # Only input validation is a 400: a ValueError from inside a provider is a bug (500).
    async def broken(texts, model):
        raise ValueError("provider bug")

    monkeypatch.setattr(embedd.app[EMBEDDER].provider, "embed", broken)
    r = await embedd.post("/embed", json={"texts": ["x"]})
    assert r.status == 500
