"""Client for queryd (``POST /sql``), used by matrixd's corpus builder and the demo.

    client = QuerydClient(session, config.upstream("matrixd", "queryd"))
    answer = await client.sql("SELECT role, count(*) AS n FROM workers GROUP BY role")
    answer["columns"]   # [{"name": "role", "type": "VARCHAR"}, {"name": "n", "type": "BIGINT"}]
    answer["rows"]      # [["Picker", 1012], ...]
    await client.records("SELECT * FROM workers LIMIT 3")   # [{"worker_id": ..., ...}, ...]

A refused or failing statement raises :class:`~lakehouse.clients.base.UpstreamError` with
status 400; a query over queryd's time limit, 408.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from .base import ServiceClient

__all__ = ["QuerydClient"]


class QuerydClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 120.0
    ) -> None:
        super().__init__(session, base_url, "queryd", timeout)

    async def sql(self, sql: str, *, trace_id: str | None = None) -> dict[str, Any]:
        """``{columns: [{name, type}], rows, row_count, elapsed_ms}``."""
        return await self.post("/sql", {"sql": sql}, trace_id=trace_id)

    async def records(self, sql: str, *, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The answer's rows as dicts keyed by column name."""
        answer = await self.sql(sql, trace_id=trace_id)
        names = [c["name"] for c in answer["columns"]]
        return [dict(zip(names, row, strict=True)) for row in answer["rows"]]
