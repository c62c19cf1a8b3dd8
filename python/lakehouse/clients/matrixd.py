"""Client for matrixd's retrieval and gate routes, used by observerd's workflow modes.

    client = MatrixdClient(session, config.upstream("observerd", "matrixd"))
    answer = await client.search({"query_text": "forklift operator", "corpora": ["workers"]})

Request bodies follow contract section 9 (relevance and downgrade with the field names our
matrixd uses: see docs/matrix.md). Failures raise
:class:`~lakehouse.clients.base.UpstreamError` (400 for a request matrixd refuses, None when
matrixd could not be reached or timed out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from .base import ServiceClient

__all__ = ["MatrixdClient"]


class MatrixdClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 60.0
    ) -> None:
        super().__init__(session, base_url, "matrixd", timeout)

    async def search(
        self, request: Mapping[str, Any], *, trace_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /matrix/search`` with ``request`` as the body (matrixd validates it)."""
        return await self.post("/matrix/search", dict(request), trace_id=trace_id)

    async def relevance(
        self,
        focus: Mapping[str, Any],
        chunks: Sequence[Mapping[str, Any]],
        *,
        threshold: float | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /matrix/relevance``: ``focus {path, defined_symbols, imported_symbols}``,
        ``chunks [{source, text}]``, optional ``threshold`` (matrixd's default 0.3)."""
        body: dict[str, Any] = {"focus": dict(focus), "chunks": [dict(c) for c in chunks]}
        if threshold is not None:
            body["threshold"] = threshold
        return await self.post("/matrix/relevance", body, trace_id=trace_id)

    async def downgrade(
        self,
        mode: str,
        model: str,
        *,
        forced_mode: bool = False,
        force_full_enrichment: bool | None = None,
        weak_models: Sequence[str] | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /matrix/downgrade`` -> ``{mode, downgraded_from?}``.

        ``force_full_enrichment=None`` leaves it to matrixd (which reads
        ``LH_FORCE_FULL_ENRICHMENT``); ``weak_models=None`` uses matrixd's configured list.
        """
        body: dict[str, Any] = {"mode": mode, "model": model, "forced_mode": forced_mode}
        if force_full_enrichment is not None:
            body["force_full_enrichment"] = force_full_enrichment
        if weak_models is not None:
            body["weak_models"] = list(weak_models)
        return await self.post("/matrix/downgrade", body, trace_id=trace_id)
