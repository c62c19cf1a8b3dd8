"""The embedding cache and the :class:`Embedder` that puts it in front of a provider.

Contract section 8: an LRU keyed ``"<model>:<sha256-hex(text)>"`` where the model is the
*resolved* request model (an absent or empty model becomes the default model before the key
is made, never the model name upstream reports). Caching is per text: a batch looks every
text up, sends only the misses upstream (in input order), and an all-hit batch never calls
upstream. Capacity 0 is a pass-through (nothing is stored; every text counts as a miss).

Everything here runs on one event loop, so the cache needs no lock.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .providers import EmbedProvider, ProviderError

__all__ = [
    "cache_key",
    "VectorCache",
    "Embedder",
    "EmbedResult",
    "EmbedTimeout",
    "InvalidTexts",
    "validate_texts",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_TEXTS",
]

DEFAULT_CACHE_SIZE = 10_000
#: texts one request may carry (a 4 MiB body holds far fewer long texts anyway)
DEFAULT_MAX_TEXTS = 2048


class InvalidTexts(ValueError):
    """A request's texts are not acceptable (the client's fault: embedd answers 400)."""


class EmbedTimeout(ProviderError):
    """The provider did not finish the whole batch within the request's time limit."""


def cache_key(model: str, text: str) -> str:
    """``"<model>:<sha256 hex of the text's UTF-8>"`` (the reference's key)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{model}:{digest}"


class VectorCache:
    """A bounded LRU of cache key -> float32 vector, counting hits and misses per lookup."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        """Membership without touching recency or counters."""
        return key in self._entries

    def lookup(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each key (None on a miss); a hit becomes most recent."""
        found: list[np.ndarray | None] = []
        for key in keys:
            vector = self._entries.get(key)
            if vector is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            found.append(vector)
        return found

    def store(self, key: str, vector: np.ndarray) -> None:
        """Insert or refresh ``key``, evicting the least recently used entries beyond capacity."""
        if self.capacity == 0:
            return
        # A private read-only copy: callers may keep and modify the arrays they were given.
        kept = np.array(vector, dtype=np.float32, copy=True)
        kept.setflags(write=False)
        self._entries[key] = kept
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        """``{hits, misses, hit_rate, size, capacity}``; hit_rate is 0.0 before any lookup."""
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
            "size": len(self._entries),
            "capacity": self.capacity,
        }


def validate_texts(texts: Sequence[Any], max_texts: int = DEFAULT_MAX_TEXTS) -> None:
    """InvalidTexts (a ValueError) unless ``texts`` is a list of 1 to ``max_texts`` non-empty strings."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InvalidTexts("texts: expected a list of strings")
    if not texts:
        raise InvalidTexts("texts: must not be empty")
    if len(texts) > max_texts:
        raise InvalidTexts(f"texts: at most {max_texts} per request, got {len(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTexts(f"texts[{i}]: expected a string, got {type(text).__name__}")
        if not text:
            raise InvalidTexts(f"texts[{i}]: empty text")


@dataclass(frozen=True)
class EmbedResult:
    """One answer: the resolved model name and float32 vectors of shape (n, dimension)."""

    model: str
    vectors: np.ndarray

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


class Embedder:
    """A provider behind the cache, with input validation and one timeout per request."""

    def __init__(
        self,
        provider: EmbedProvider,
        cache: VectorCache,
        *,
        default_model: str = "",
        timeout: float = 60.0,
        max_texts: int = DEFAULT_MAX_TEXTS,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.default_model = default_model or provider.default_model
        self.timeout = timeout
        self.max_texts = max_texts

    def resolve_model(self, model: str | None) -> str:
        """The model a request means: its own, or the default when absent or empty."""
        return model or self.default_model

    async def embed(self, texts: Sequence[str], model: str | None = None) -> EmbedResult:
        """Vectors for ``texts`` in order, from the cache where possible.

        InvalidTexts (a ValueError) for invalid input, before any lookup; ProviderError when
        the provider fails; EmbedTimeout when it takes longer than ``timeout`` for all the
        misses together. Vectors fetched by a failed request are not cached.
        """
        validate_texts(texts, self.max_texts)
        resolved = self.resolve_model(model)
        keys = [cache_key(resolved, t) for t in texts]
        rows = self.cache.lookup(keys)
        # Misses in input order, each distinct text once (a batch may repeat a text).
        missing: dict[str, str] = {}
        for key, text, row in zip(keys, texts, rows, strict=True):
            if row is None and key not in missing:
                missing[key] = text
        fetched: dict[str, np.ndarray] = {}
        if missing:
            vectors = await self._fetch(list(missing.values()), resolved)
            for key, vector in zip(missing, vectors, strict=True):
                fetched[key] = vector
                self.cache.store(key, vector)
        return EmbedResult(resolved, self._assemble(keys, rows, fetched, resolved))

    async def _fetch(self, texts: list[str], model: str) -> np.ndarray:
        try:
            async with asyncio.timeout(self.timeout):
                vectors = await self.provider.embed(texts, model)
        except TimeoutError as exc:
            raise EmbedTimeout(
                f"{self.provider.name}: {len(texts)} texts not embedded within {self.timeout:g}s"
            ) from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or vectors.shape[1] == 0:
            raise ProviderError(
                f"{self.provider.name} returned shape {vectors.shape} for {len(texts)} texts"
            )
        return vectors

    @staticmethod
    def _assemble(
        keys: list[str],
        rows: list[np.ndarray | None],
        fetched: dict[str, np.ndarray],
        model: str,
    ) -> np.ndarray:
        vectors = [
            row if row is not None else fetched[key] for key, row in zip(keys, rows, strict=True)
        ]
        if len({v.shape[0] for v in vectors}) > 1:
            # Only possible when a model changed its size while its old vectors sat cached.
            raise ProviderError(
                f"model {model!r} returned vectors of a size other than its cached ones"
            )
        return np.stack(vectors).astype(np.float32, copy=False)
