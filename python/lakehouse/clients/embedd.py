"""Client for embedd (``POST /embed``, ``GET /embed/stats``), used by matrixd.

    client = EmbeddClient(session, config.upstream("matrixd", "embedd"))
    model, dimension, vectors = await client.embed(["forklift operator, Milwaukee"])

Vectors come back as float32 frames (:mod:`lakehouse.transport`) from an embedd that
offers them, as JSON from any other. ``vectors`` is a float32 array of shape ``(len(texts), dimension)``. Long lists are sent in
chunks of ``chunk_size`` texts (below embedd's default ``max_texts``), one after another.
Failures raise :class:`~lakehouse.clients.base.UpstreamError` (status 400 for bad input,
502 when embedd's provider failed, None when embedd could not be reached or timed out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from ..transport import F32, FrameError, decode_frame
from ..web import dumps
from .base import ServiceClient, UpstreamError

__all__ = ["EmbeddClient"]

_ACCEPT = f"{F32}, application/json"


class EmbeddClient(ServiceClient):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float | None = 90.0,
        chunk_size: int = 1024,
    ) -> None:
        # 90 s: above embedd's own 60 s limit, so its 502 arrives instead of our timeout.
        super().__init__(session, base_url, "embedd", timeout)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size

    async def embed(
        self,
        texts: Sequence[str],
        model: str | None = None,
        *,
        trace_id: str | None = None,
    ) -> tuple[str, int, np.ndarray]:
        """``(model, dimension, vectors)`` for ``texts`` (float32, one row per text, in order)."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        if not texts:
            # embedd answers 400 for an empty list; say so without a round trip
            raise ValueError("texts must not be empty")
        answers = []
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            body: dict[str, Any] = {"texts": chunk}
            if model is not None:
                body["model"] = model
            answers.append(await self._embed_chunk(body, len(chunk), trace_id))
        names = {a[0] for a in answers}
        dims = {a[1] for a in answers}
        if len(names) > 1 or len(dims) > 1:
            raise UpstreamError(
                self.service, None, f"chunks disagree: models {sorted(names)}, dims {sorted(dims)}"
            )
        return answers[0][0], answers[0][1], np.concatenate([a[2] for a in answers])

    async def _embed_chunk(
        self, body: dict[str, Any], expected: int, trace_id: str | None
    ) -> tuple[str, int, np.ndarray]:
        # Ask for float32 frames; an embedd that does not know them answers JSON.
        status, headers, payload = await self.exchange(
            "POST",
            "/embed",
            dumps(body),
            headers={"Content-Type": "application/json", "Accept": _ACCEPT},
            trace_id=trace_id,
        )
        if status < 400 and headers.get("Content-Type", "").startswith(F32):
            try:
                header, vectors = decode_frame(payload, what="embedd's answer")
                model, dimension = header["model"], header["dimension"]
            except (FrameError, KeyError) as exc:
                raise UpstreamError(self.service, None, f"malformed answer: {exc}") from exc
            return self._parse({"model": model, "dimension": dimension, "vectors": vectors}, expected)
        return self._parse(self.decode(status, payload), expected)

    def _parse(self, answer: Any, expected: int) -> tuple[str, int, np.ndarray]:
        try:
            model = answer["model"]
            dimension = answer["dimension"]
            vectors = np.asarray(answer["vectors"], dtype=np.float32)
            if not isinstance(model, str) or not isinstance(dimension, int):
                raise TypeError("model or dimension of the wrong type")
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(self.service, None, f"malformed answer: {exc}", answer) from exc
        if vectors.shape != (expected, dimension):
            raise UpstreamError(
                self.service,
                None,
                f"answer has vectors of shape {vectors.shape}, expected ({expected}, {dimension})",
                answer,
            )
        return model, dimension, vectors

    async def stats(self, *, trace_id: str | None = None) -> dict[str, Any]:
        """The cache counters: ``{hits, misses, hit_rate, size, capacity, ...}``."""
        return await self.get("/embed/stats", trace_id=trace_id)
