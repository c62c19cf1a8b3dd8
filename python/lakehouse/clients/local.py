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

from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp import web

from ..web import dumps
from .base import UpstreamError
from .embedd import EmbeddClient
from .vectord import VectordClient

__all__ = ["LocalEmbedd", "LocalVectord"]


class LocalEmbedd(EmbeddClient):
    """embedd in this process: each chunk goes to its embedder (cache included) directly;
    the argument checks and chunking are :class:`EmbeddClient`'s."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, peer: web.Application, **kw: Any) -> None:
        super().__init__(session, base_url, **kw)
        self.peer = peer

    async def _embed_chunk(
        self, body: dict[str, Any], expected: int, trace_id: str | None
    ) -> tuple[str, int, np.ndarray]:
        from ..embed import EmbedTimeout, InvalidTexts, ProviderError
        from ..services.embedd import EMBEDDER

        try:
            result = await self.peer[EMBEDDER].embed(body["texts"], body.get("model"))
        except InvalidTexts as exc:
            raise UpstreamError(self.service, 400, str(exc)) from exc
        except (EmbedTimeout, ProviderError) as exc:
            raise UpstreamError(self.service, 502, str(exc)) from exc
        # a copy: the caller owns its array, the cache keeps its own
        vectors = np.array(result.vectors, dtype=np.float32)
        return self._parse({"model": result.model, "dimension": result.dimension, "vectors": vectors}, expected)


class LocalVectord(VectordClient):
    """vectord in this process: searches (on its search threads, batched like its HTTP
    searches) and item lookups go to its registry directly; the rest over HTTP. The
    argument checks are :class:`VectordClient`'s."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, peer: web.Application, **kw: Any) -> None:
        super().__init__(session, base_url, **kw)
        self.peer = peer

    def _entry(self, name: str) -> Any:
        from ..services.vectord import VECTORD
        from ..vectors.registry import IndexNotFound

        state = self.peer[VECTORD]
        try:
            return state, state.registry.get(name)
        except IndexNotFound as exc:
            raise UpstreamError(self.service, 404, str(exc)) from None

    async def _search(
        self, name: str, body: dict[str, Any], query: np.ndarray, field: str, trace_id: str | None
    ) -> Any:
        from ..services.vectord import INLINE_SEARCH_FLOATS, _answer, _hits_json

        state, entry = self._entry(name)
        k, ef, exclude = body["k"], body.get("ef"), body.get("exclude_ids")
        try:
            if field == "vectors":
                rows = await state.read(entry.search_batch, query, k, ef, exclude)
                return orjson.loads(dumps({"results": [_hits_json(r) for r in rows]}))
            if entry.count * entry.index.dims <= INLINE_SEARCH_FLOATS:
                answer = _answer(entry.search(query, k, ef, exclude))
            else:
                answer = await state.searches.search(entry, query, k, ef, exclude)
        except ValueError as exc:
            raise UpstreamError(self.service, 400, str(exc)) from None
        # the answer vectord would have sent, read back: the same floats and metadata
        return orjson.loads(answer)

    async def get_item(self, name: str, item_id: str, *, trace_id: str | None = None) -> dict[str, Any]:
        from ..services.vectord import _metadata_out
        from ..vectors.registry import ItemNotFound

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
