"""Embedding providers: where vectors come from when the cache misses.

A provider turns a list of texts into a ``float32`` array of shape ``(len(texts), d)`` for a
named model, or raises :class:`ProviderError` (which embedd answers as 502). Two exist:

- :class:`HashProvider`: the built-in feature-hashing embedder (:mod:`.hashing`); offline,
  deterministic, any model name accepted (the vectors do not depend on it).
- :class:`OllamaProvider`: Ollama's batch endpoint ``POST /api/embed`` with
  ``{"model", "input": [...]}``, ``batch_size`` texts per call, one call after another.
  Ollama answers float64 lists; they become float32 here, as in the reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import aiohttp
import msgspec
import numpy as np
import orjson

from .hashing import DEFAULT_DIMENSION, hash_embed

__all__ = [
    "EmbedProvider",
    "ProviderError",
    "HashProvider",
    "OllamaProvider",
    "HASH_DEFAULT_MODEL",
    "OLLAMA_DEFAULT_MODEL",
]

HASH_DEFAULT_MODEL = "hash"
#: the reference's default since the seed notes' upgrade (768-d, MoE)
OLLAMA_DEFAULT_MODEL = "nomic-embed-text-v2-moe"


class ProviderError(Exception):
    """The provider could not embed (unreachable, an error answer, a malformed answer)."""


class EmbedProvider(Protocol):
    """What the cache layer needs from a provider."""

    #: "hash" or "ollama"
    name: str
    #: the model used when a request names none
    default_model: str

    async def embed(self, texts: Sequence[str], model: str) -> np.ndarray:
        """Vectors for ``texts`` in order: float32, shape (len(texts), d), d the same for all."""
        ...


class HashProvider:
    """The built-in embedder: :func:`hash_embed` at a fixed dimension, whatever the model name."""

    name = "hash"

    #: below this many characters a batch is hashed on the event loop: a thread hop costs
    #: more than the work (about 30 us per short text)
    inline_chars = 4096

    def __init__(self, dimension: int = DEFAULT_DIMENSION, default_model: str = "") -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.dimension = dimension
        self.default_model = default_model or HASH_DEFAULT_MODEL

    async def embed(self, texts: Sequence[str], model: str) -> np.ndarray:
        texts = list(texts)
        if sum(map(len, texts)) <= self.inline_chars:
            return hash_embed(texts, self.dimension)
        return await asyncio.to_thread(hash_embed, texts, self.dimension)


def _ollama_error(status: int, payload: bytes) -> str:
    # Ollama answers {"error": "..."}; anything else is shown as (the start of) its text.
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    else:
        message = payload.decode("utf-8", "replace").strip()[:300] or "(empty body)"
    return f"ollama answered {status}: {message}"


class _EmbedAnswer(msgspec.Struct):
    # Ollama also sends model, total_duration, load_duration, prompt_eval_count: ignored.
    embeddings: list[list[float]]


def parse_ollama_embeddings(payload: bytes, expected: int) -> np.ndarray:
    """The ``embeddings`` of an ``/api/embed`` answer as float32 ``(expected, d)``.

    ProviderError for anything else: not JSON, no list, a wrong count, non-numbers, ragged
    or empty rows, values that overflow float32.
    """
    try:
        rows = msgspec.json.decode(payload, type=_EmbedAnswer).embeddings
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ProviderError(f"ollama answered malformed embeddings: {exc}") from exc
    if len(rows) != expected:
        raise ProviderError(f"ollama returned {len(rows)} embeddings for {expected} texts")
    sizes = {len(r) for r in rows}
    if len(sizes) != 1 or 0 in sizes:
        raise ProviderError(f"ollama returned rows of sizes {sorted(sizes)}")
    # Ollama's numbers are doubles; the reference stores float32 (as does vectord).
    with np.errstate(over="ignore"):  # an overflow becomes inf, refused just below
        vectors = np.array(rows, dtype=np.float64).astype(np.float32)
    if not np.isfinite(vectors).all():
        raise ProviderError("ollama returned values that are not finite in float32")
    return vectors


class OllamaProvider:
    """Ollama's ``POST /api/embed``, ``batch_size`` texts per call, over a shared session."""

    name = "ollama"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        batch_size: int = 64,
        default_model: str = "",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.session = session
        self.url = base_url.rstrip("/") + "/api/embed"
        self.batch_size = batch_size
        self.default_model = default_model or OLLAMA_DEFAULT_MODEL

    async def embed(self, texts: Sequence[str], model: str) -> np.ndarray:
        # Batches go one after another: a local Ollama runs one model on one device, so
        # concurrent calls would only queue there. The caller bounds the total time.
        parts = [
            await self._embed_batch(list(texts[i : i + self.batch_size]), model)
            for i in range(0, len(texts), self.batch_size)
        ]
        if len({p.shape[1] for p in parts}) > 1:
            raise ProviderError(f"ollama model {model!r} returned vectors of different sizes")
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    async def _embed_batch(self, batch: list[str], model: str) -> np.ndarray:
        body = orjson.dumps({"model": model, "input": batch})
        try:
            async with self.session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                payload = await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            raise ProviderError(f"ollama unreachable at {self.url}: {exc}") from exc
        if status != 200:
            raise ProviderError(_ollama_error(status, payload))
        return parse_ollama_embeddings(payload, len(batch))
