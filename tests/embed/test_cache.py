"""The per-text LRU cache and the Embedder in front of a provider (contract section 8)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.embed import (
    Embedder,
    EmbedTimeout,
    HashProvider,
    InvalidTexts,
    ProviderError,
    VectorCache,
    cache_key,
    hash_embed,
)


class Recording:
    """A provider that records every call and answers hash vectors (or fails, or stalls)."""

    name = "recording"
    default_model = "rec-default"

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.calls: list[tuple[list[str], str]] = []
        self.fail: Exception | None = None
        self.stall = 0.0

    async def embed(self, texts: Sequence[str], model: str) -> np.ndarray:
        self.calls.append((list(texts), model))
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.fail is not None:
            raise self.fail
        return hash_embed(texts, self.dim)


def embedder(capacity: int = 100, **kw) -> tuple[Embedder, Recording]:
    provider = Recording()
    return Embedder(provider, VectorCache(capacity), **kw), provider


def test_cache_key_is_model_colon_sha256_hex():
    digest = hashlib.sha256(b"forklift").hexdigest()
    assert cache_key("nomic-embed-text", "forklift") == f"nomic-embed-text:{digest}"
    assert cache_key("m", "é") == "m:" + hashlib.sha256("é".encode()).hexdigest()


async def test_mixed_batch_fetches_only_its_misses_in_order():
    emb, provider = embedder()
    await emb.embed(["b", "d"])
    provider.calls.clear()
    result = await emb.embed(["a", "b", "c", "d", "e"])
    assert provider.calls == [(["a", "c", "e"], "rec-default")]
    np.testing.assert_array_equal(result.vectors, hash_embed(["a", "b", "c", "d", "e"], 8))
    assert result.model == "rec-default" and result.dimension == 8


async def test_all_hit_batch_never_calls_upstream():
    emb, provider = embedder()
    await emb.embed(["x", "y"], "m")
    provider.fail = ProviderError("must not be called")
    result = await emb.embed(["y", "x", "y"], "m")
    assert len(provider.calls) == 1
    np.testing.assert_array_equal(result.vectors, hash_embed(["y", "x", "y"], 8))


async def test_a_repeated_miss_is_fetched_once():
    emb, provider = embedder()
    await emb.embed(["p", "q", "p"])
    assert provider.calls == [(["p", "q"], "rec-default")]
    assert emb.cache.stats()["misses"] == 3  # each position counts


async def test_default_model_substitution_for_the_key():
    emb, provider = embedder()
    await emb.embed(["t"])  # no model: the default
    await emb.embed(["t"], "")  # empty: the default as well
    await emb.embed(["t"], "rec-default")
    assert len(provider.calls) == 1
    assert cache_key("rec-default", "t") in emb.cache
    await emb.embed(["t"], "other")  # another model is another entry
    assert provider.calls[-1] == (["t"], "other")


async def test_configured_default_model_wins_over_the_providers():
    emb, provider = embedder(default_model="mine")
    assert (await emb.embed(["t"])).model == "mine"
    assert provider.calls == [(["t"], "mine")]


async def test_size_bound_evicts_the_least_recently_used():
    emb, provider = embedder(capacity=3)
    await emb.embed(["a", "b", "c"])
    await emb.embed(["a"])  # a becomes the most recent: b is now the oldest
    await emb.embed(["d"])
    assert len(emb.cache) == 3
    assert cache_key("rec-default", "b") not in emb.cache
    provider.calls.clear()
    await emb.embed(["a", "c", "d", "b"])
    assert provider.calls == [(["b"], "rec-default")]


async def test_stats_counters():
    emb, _ = embedder()
    assert emb.cache.stats() == {
        "hits": 0,
        "misses": 0,
        "hit_rate": 0.0,
        "size": 0,
        "capacity": 100,
    }
    await emb.embed(["a", "b"])
    await emb.embed(["a", "b", "c", "a"])
    assert emb.cache.stats() == {
        "hits": 3,
        "misses": 3,
        "hit_rate": 0.5,
        "size": 3,
        "capacity": 100,
    }


async def test_capacity_zero_is_a_pass_through():
    emb, provider = embedder(capacity=0)
    await emb.embed(["a", "b"])
    await emb.embed(["a", "b"])
    assert [c[0] for c in provider.calls] == [["a", "b"], ["a", "b"]]
    assert emb.cache.stats() == {"hits": 0, "misses": 4, "hit_rate": 0.0, "size": 0, "capacity": 0}


async def test_provider_failure_caches_nothing_and_propagates():
    emb, provider = embedder()
    provider.fail = ProviderError("ollama answered 500: boom")
    with pytest.raises(ProviderError, match="boom"):
        await emb.embed(["a", "b"])
    assert len(emb.cache) == 0
    provider.fail = None
    await emb.embed(["a", "b"])
    assert len(provider.calls) == 2


async def test_one_timeout_around_the_whole_batch():
    emb, provider = embedder(timeout=0.05)
    provider.stall = 5.0
    with pytest.raises(EmbedTimeout, match="within 0.05s"):
        await emb.embed(["slow"])
    assert len(emb.cache) == 0


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "must not be empty"),
        (["a", ""], r"texts\[1\]: empty"),
        (["a", 3], r"texts\[1\]"),
        ("abc", "list of strings"),
        (["x"] * 5, "at most 4"),
    ],
)
async def test_invalid_input_is_a_value_error_and_changes_nothing(texts, message):
    emb, provider = embedder(max_texts=4)
    with pytest.raises(InvalidTexts, match=message):
        await emb.embed(texts)
    assert provider.calls == [] and emb.cache.stats()["misses"] == 0


async def test_answers_do_not_alias_the_cache():
    emb, _ = embedder()
    first = await emb.embed(["a"])
    first.vectors[:] = 7.0
    again = await emb.embed(["a"])
    np.testing.assert_array_equal(again.vectors, hash_embed(["a"], 8))


async def test_a_wrong_shape_from_the_provider_is_a_provider_error():
    class Short(Recording):
        async def embed(self, texts, model):
            return hash_embed(list(texts)[:-1], 8)

    emb = Embedder(Short(), VectorCache(10))
    with pytest.raises(ProviderError, match="shape"):
        await emb.embed(["a", "b"])


async def test_hash_provider_ignores_the_model_name_but_keys_by_it():
    emb = Embedder(HashProvider(16), VectorCache(10))
    a = await emb.embed(["forklift"], "nomic-embed-text")
    b = await emb.embed(["forklift"])
    assert (a.model, b.model) == ("nomic-embed-text", "hash")
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert emb.cache.stats()["size"] == 2
    # big batches go through a worker thread and give the same vectors
    texts = [f"row {i} forklift operator " * 20 for i in range(50)]
    np.testing.assert_array_equal((await emb.embed(texts)).vectors, hash_embed(texts, 16))


@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6),
            st.sampled_from([None, "m1", "m2"]),
        ),
        min_size=1,
        max_size=12,
    ),
    capacity=st.integers(0, 6),
)
def test_cache_behaves_like_a_model_lru(batches, capacity):
    async def run() -> None:
        emb, provider = embedder(capacity)
        model_lru: list[str] = []  # most recent last
        fetched_total = 0
        for texts, model in batches:
            resolved = model or "rec-default"
            keys = [cache_key(resolved, t) for t in texts]
            expected_misses = list(
                dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in model_lru)
            )
            provider.calls.clear()
            result = await emb.embed(texts, model)
            np.testing.assert_array_equal(result.vectors, hash_embed(texts, 8))
            assert provider.calls == ([(expected_misses, resolved)] if expected_misses else [])
            fetched_total += len(texts)
            for k in keys:  # hits refresh, then misses are stored in order
                if k in model_lru:
                    model_lru.remove(k)
                    model_lru.append(k)
            for t in expected_misses:
                k = cache_key(resolved, t)
                if capacity:
                    model_lru.append(k)
                    del model_lru[:-capacity]
            assert len(emb.cache) == len(model_lru) <= capacity
            assert all(k in emb.cache for k in model_lru)
        stats = emb.cache.stats()
        assert stats["hits"] + stats["misses"] == fetched_total

    asyncio.run(run())
