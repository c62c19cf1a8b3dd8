"""In-process peers: the embedd and vectord clients for daemons that share a process.

With ``[up].topology = "shared"``, ``lakehouse up`` runs vectord, embedd and matrixd in one
process (each still serves its own port, so every wire is unchanged) and matrixd reaches
the other two through these clients: the same interface as :class:`EmbeddClient` and
:class:`VectordClient`, the same answers and the same :class:`UpstreamError` statuses, but the
hot calls (embed, search, get_item) go straight to the peer's state instead of over HTTP.
Every other call (create, add, list, ...) still goes over HTTP to the peer's own port, so
there is one implementation of it.

    vectord = LocalVectord(session, url, vectord_app)     # the peer's aiohttp app
    hits = await vectord.search("workers", query, k=10)   # no socket, no JSON of vectors

The peer's state is looked up at call time (it exists once the peer's app has started).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp import web

from .base import UpstreamError
from .embedd import EmbeddClient
from .vectord import VectordClient

__all__ = ["LocalEmbedd", "LocalVectord"]


class LocalEmbedd(EmbeddClient):
    """embedd in this process: ``embed`` calls its embedder (cache included) directly."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, peer: web.Application, **kw: Any) -> None:
        super().__init__(session, base_url, **kw)
        self.peer = peer

    async def embed(
        self, texts: Sequence[str], model: str | None = None, *, trace_id: str | None = None
    ) -> tuple[str, int, np.ndarray]:
        from ..embed import EmbedTimeout, InvalidTexts, ProviderError
        from ..services.embedd import EMBEDDER

        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        if not texts:
            raise ValueError("texts must not be empty")
        embedder = self.peer[EMBEDDER]
        parts = []
        name = ""
        for start in range(0, len(texts), self.chunk_size):
            try:
                result = await embedder.embed(texts[start : start + self.chunk_size], model)
            except InvalidTexts as exc:
                raise UpstreamError(self.service, 400, str(exc)) from exc
            except (EmbedTimeout, ProviderError) as exc:
                raise UpstreamError(self.service, 502, str(exc)) from exc
            name = result.model
            parts.append(result.vectors)
        vectors = np.array(parts[0] if len(parts) == 1 else np.concatenate(parts), dtype=np.float32)
        return name, int(vectors.shape[1]), vectors


class LocalVectord(VectordClient):
    """vectord in this process: searches and item lookups go to its registry directly (on
    its search threads, batched like its HTTP searches); the rest over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, peer: web.Application, **kw: Any) -> None:
        super().__init__(session, base_url, **kw)
        self.peer = peer

    def _entry(self, name: str) -> Any:
        from ..services.vectord import VECTORD
        from ..vectors import IndexNotFound

        state = self.peer[VECTORD]
        try:
            return state, state.registry.get(name)
        except IndexNotFound as exc:
            raise UpstreamError(self.service, 404, str(exc)) from None

    async def search(
        self,
        name: str,
        vector: Any,
        k: int = 10,
        *,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
        trace_id: str | None = None,
    ) -> list[dict[str, Any]]:
        from ..services.vectord import INLINE_SEARCH_FLOATS, _answer

        exclude = list(self._search_body(k, ef, exclude_ids).get("exclude_ids", [])) or None
        state, entry = self._entry(name)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        try:
            if entry.count * entry.index.dims <= INLINE_SEARCH_FLOATS:
                answer = _answer(entry.search(query, k, ef, exclude))
            else:
                answer = await state.searches.search(entry, query, k, ef, exclude)
        except ValueError as exc:
            raise UpstreamError(self.service, 400, str(exc)) from None
        # the answer vectord would have sent, read back: the same floats and metadata
        return list(orjson.loads(answer)["results"])

    async def search_batch(
        self,
        name: str,
        vectors: Any,
        k: int = 10,
        *,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
        trace_id: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        from ..services.vectord import _hits_json
        from ..web import dumps

        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"vectors must be 2-d, got shape {arr.shape}")
        exclude = list(self._search_body(k, ef, exclude_ids).get("exclude_ids", [])) or None
        state, entry = self._entry(name)
        try:
            rows = await state.read(entry.search_batch, arr, k, ef, exclude)
        except ValueError as exc:
            raise UpstreamError(self.service, 400, str(exc)) from None
        return list(orjson.loads(dumps({"results": [_hits_json(r) for r in rows]}))["results"])

    async def get_item(self, name: str, item_id: str, *, trace_id: str | None = None) -> dict[str, Any]:
        from ..services.vectord import _metadata_out
        from ..vectors import ItemNotFound
        from ..web import dumps

        if item_id in (".", ".."):
            raise ValueError(f"item id {item_id!r} cannot be addressed in a URL path")
        _, entry = self._entry(name)
        try:
            vector, metadata = entry.get(item_id)
        except ItemNotFound as exc:
            raise UpstreamError(self.service, 404, str(exc)) from None
        out: dict[str, Any] = {"id": item_id, "vector": vector}
        if metadata is not None:
            out["metadata"] = _metadata_out(metadata)
        return orjson.loads(dumps(out))
