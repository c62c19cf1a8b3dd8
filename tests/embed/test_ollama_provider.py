"""The Ollama provider against the fake Ollama (lakehouse.fakes.ollama)."""

from __future__ import annotations

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from lakehouse.embed import OLLAMA_DEFAULT_MODEL, OllamaProvider, ProviderError
from lakehouse.embed.providers import parse_ollama_embeddings
from lakehouse.fakes.ollama import FakeOllama, fake_embedding


@pytest.fixture
async def fake(aiohttp_server):
    fake = FakeOllama(models={"nomic-embed-text-v2-moe": 768, "small": 4})
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_batches_of_batch_size_in_order(fake, session):
    provider = OllamaProvider(session, fake.url, batch_size=3)
    texts = [f"worker {i}" for i in range(7)]
    vectors = await provider.embed(texts, "small")
    calls = fake.calls("/api/embed")
    assert [c.json for c in calls] == [
        {"model": "small", "input": texts[0:3]},
        {"model": "small", "input": texts[3:6]},
        {"model": "small", "input": texts[6:7]},
    ]
    assert vectors.dtype == np.float32 and vectors.shape == (7, 4)
    expected = np.array([fake_embedding(t, 4, normalize=True) for t in texts], dtype=np.float32)
    np.testing.assert_array_equal(vectors, expected)


async def test_default_model_and_768_dims(fake, session):
    provider = OllamaProvider(session, fake.url + "/")
    assert provider.default_model == OLLAMA_DEFAULT_MODEL == "nomic-embed-text-v2-moe"
    vectors = await provider.embed(["forklift operator"], provider.default_model)
    assert vectors.shape == (1, 768)


async def test_unknown_model_is_a_provider_error(fake, session):
    provider = OllamaProvider(session, fake.url)
    with pytest.raises(ProviderError, match=r'404: model "nope" not found'):
        await provider.embed(["x"], "nope")


async def test_injected_failure_is_a_provider_error(fake, session):
    fake.fail(500, times=1, paths=["/api/embed"])
    provider = OllamaProvider(session, fake.url, batch_size=1)
    with pytest.raises(ProviderError, match="500: injected failure"):
        await provider.embed(["a", "b"], "small")
    # the next call succeeds: the knob was used up
    assert (await provider.embed(["a"], "small")).shape == (1, 4)


async def test_a_non_json_error_body_is_quoted(fake, session):
    fake.fail(503, body="overloaded, try later", times=1)
    provider = OllamaProvider(session, fake.url)
    with pytest.raises(ProviderError, match="503: overloaded, try later"):
        await provider.embed(["a"], "small")


async def test_unreachable_is_a_provider_error(session):
    provider = OllamaProvider(session, "http://127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(ProviderError, match="unreachable"):
        await provider.embed(["a"], "small")


async def test_a_model_that_changes_size_between_batches_is_refused(aiohttp_server, session):
    sizes = iter([3, 4])

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        dim = next(sizes)
        return web.json_response({"embeddings": [[0.5] * dim for _ in body["input"]]})

    app = web.Application()
    app.router.add_post("/api/embed", handler)
    server = await aiohttp_server(app)
    provider = OllamaProvider(session, str(server.make_url("")), batch_size=1)
    with pytest.raises(ProviderError, match="different sizes"):
        await provider.embed(["a", "b"], "m")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "malformed"),
        (b"[]", "malformed"),
        (b'{"embedding": [1.0]}', "malformed"),  # the legacy route's shape
        (b'{"embeddings": [[1.0], [2.0]]}', "2 embeddings for 1"),
        (b'{"embeddings": [[]]}', "sizes"),
        (b'{"embeddings": [["1.0"]]}', "malformed"),
        (b'{"embeddings": [[true]]}', "malformed"),
        (b'{"embeddings": [[null]]}', "malformed"),
        (b'{"embeddings": [[1e300]]}', "not finite"),
    ],
)
def test_malformed_answers(payload, message):
    with pytest.raises(ProviderError, match=message):
        parse_ollama_embeddings(payload, 1)


def test_float64_answers_become_float32():
    vectors = parse_ollama_embeddings(b'{"model": "m", "embeddings": [[0.1, -2, 3.5]]}', 1)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, np.array([[0.1, -2.0, 3.5]], dtype=np.float32))
