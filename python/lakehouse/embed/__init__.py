"""Text -> vectors: the ``hash`` embedder, the providers, and the cache in front of them.

- :func:`hash_embed` (:mod:`.hashing`): the built-in deterministic embedder, a pure function;
  docs/embed.md specifies it byte for byte.
- :class:`HashProvider`, :class:`OllamaProvider`, :class:`SentenceTransformersProvider`
  (:mod:`.providers`): where vectors come from.
- :class:`VectorCache`, :class:`Embedder` (:mod:`.cache`): the per-text LRU keyed
  ``<model>:<sha256(text)>`` and the request logic embedd runs.
"""

from __future__ import annotations

import aiohttp

from ..config import EmbeddConfig
from .cache import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_TEXTS,
    Embedder,
    EmbedResult,
    EmbedTimeout,
    InvalidTexts,
    VectorCache,
    cache_key,
    validate_texts,
)
from .hashing import DEFAULT_DIMENSION, hash_embed
from .providers import (
    HASH_DEFAULT_MODEL,
    OLLAMA_DEFAULT_MODEL,
    ST_DEFAULT_MODEL,
    EmbedProvider,
    HashProvider,
    OllamaProvider,
    ProviderError,
    SentenceTransformersProvider,
    resolve_st_model,
    st_available,
)

__all__ = [
    "hash_embed",
    "cache_key",
    "validate_texts",
    "build_embedder",
    "Embedder",
    "EmbedResult",
    "EmbedProvider",
    "EmbedTimeout",
    "InvalidTexts",
    "HashProvider",
    "OllamaProvider",
    "ProviderError",
    "SentenceTransformersProvider",
    "ST_DEFAULT_MODEL",
    "resolve_st_model",
    "st_available",
    "VectorCache",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_DIMENSION",
    "DEFAULT_MAX_TEXTS",
    "HASH_DEFAULT_MODEL",
    "OLLAMA_DEFAULT_MODEL",
]


def build_embedder(section: EmbeddConfig, session: aiohttp.ClientSession | None = None) -> Embedder:
    """The embedder an ``[embedd]`` section describes (``ollama`` needs the app's session)."""
    provider: EmbedProvider
    if section.provider == "sentence-transformers":
        provider = SentenceTransformersProvider(section.default_model, batch_size=section.batch_size)
    elif section.provider == "ollama":
        if session is None:
            raise ValueError("the ollama provider needs an aiohttp session")
        provider = OllamaProvider(
            session,
            section.ollama_url,
            batch_size=section.batch_size,
            default_model=section.default_model,
        )
    else:
        provider = HashProvider(section.dimension, default_model=section.default_model)
    return Embedder(
        provider,
        VectorCache(section.cache_size),
        default_model=section.default_model,
        timeout=section.timeout,
        max_texts=section.max_texts,
    )
