"""Client for matrixd (contract section 9), used by observerd's workflow modes and the demo.

    client = MatrixdClient(session, config.upstream("observerd", "matrixd"))
    answer = await client.search({"query_text": "forklift operator", "corpora": ["workers"]})
    await client.record("forklift operator", "w-00042", "workers", 1.0, role="Forklift Operator")
    await client.build_corpus("workers", "SELECT * FROM workers", "worker_id",
                              text_template="Worker role: {role} in {city}")

Request bodies follow contract section 9 with the field names our matrixd uses (see
docs/matrix.md). Failures raise
:class:`~lakehouse.clients.base.UpstreamError` (400 for a request matrixd refuses, None when
matrixd could not be reached or timed out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

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

    async def record(
        self,
        query_text: str,
        answer_id: str,
        answer_corpus: str,
        score: float,
        *,
        role: str | None = None,
        tags: Sequence[str] | None = None,
        playbook_corpus: str | None = None,
        model: str | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /matrix/playbooks/record`` -> ``{playbook_id, playbook_corpus}``."""
        body: dict[str, Any] = {
            "query_text": query_text,
            "answer_id": answer_id,
            "answer_corpus": answer_corpus,
            "score": score,
        }
        for key, value in (("role", role), ("playbook_corpus", playbook_corpus), ("model", model)):
            if value is not None:
                body[key] = value
        if tags is not None:
            body["tags"] = list(tags)
        return await self.post("/matrix/playbooks/record", body, trace_id=trace_id)

    async def record_bulk(
        self,
        entries: Sequence[Mapping[str, Any]],
        *,
        playbook_corpus: str | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /matrix/playbooks/bulk`` -> ``{results: [{index, playbook_id} | {index,
        error}], recorded, failed}`` (a bad entry fails alone)."""
        body: dict[str, Any] = {"entries": [dict(e) for e in entries]}
        if playbook_corpus is not None:
            body["playbook_corpus"] = playbook_corpus
        return await self.post("/matrix/playbooks/bulk", body, trace_id=trace_id)

    async def calibration(
        self,
        *,
        playbook_corpus: str | None = None,
        model: str = "",
        query_text: str = "",
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /matrix/playbooks/calibration`` -> the thresholds a search that sets none
        uses on ``playbook_corpus`` (``thresholds``: mode, max_distance, max_inject_distance,
        max_ratio, reason) and the evidence behind them."""
        body: dict[str, Any] = {"model": model, "query_text": query_text}
        if playbook_corpus is not None:
            body["playbook_corpus"] = playbook_corpus
        return await self.post("/matrix/playbooks/calibration", body, trace_id=trace_id)

    async def corpora(self, *, trace_id: str | None = None) -> list[str]:
        """The names of the corpora (vectord's indexes)."""
        answer = await self.get("/matrix/corpora", trace_id=trace_id)
        return list(answer["corpora"])

    async def build_corpus(
        self,
        name: str,
        sql: str,
        id_column: str,
        *,
        text_template: str | None = None,
        text_columns: Sequence[str] | None = None,
        metadata_columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        model: str | None = None,
        replace: bool = False,
        wait: bool = True,
        timeout: float | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /matrix/corpus/build``: the job's report (at its end when ``wait``, else at
        once with ``status: running``; poll :meth:`corpus_job`). ``timeout`` overrides the
        client's for this call (a large build takes minutes)."""
        body: dict[str, Any] = {"name": name, "sql": sql, "id_column": id_column}
        if text_template is not None:
            body["text_template"] = text_template
        if text_columns is not None:
            body["text_columns"] = list(text_columns)
        if metadata_columns is not None:
            body["metadata_columns"] = list(metadata_columns)
        for key, value in (("batch_size", batch_size), ("model", model)):
            if value is not None:
                body[key] = value
        if replace:
            body["replace"] = True
        if not wait:
            body["wait"] = False
        return await self.request(
            "POST", "/matrix/corpus/build", body, trace_id=trace_id, timeout=timeout
        )

    async def corpus_job(self, job_id: str, *, trace_id: str | None = None) -> dict[str, Any]:
        """The report of one corpus build job (progress while it runs)."""
        return await self.get(f"/matrix/corpus/build/{quote(job_id, safe='')}", trace_id=trace_id)
