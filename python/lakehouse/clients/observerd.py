"""Client for observerd (contract section 11): observed ops, stats, inbox, workflows.

    client = ObserverdClient(session, config.upstream("gateway", "observerd"))
    await client.event("/matrix/search", source="scenario", success=True, duration_ms=12.5)
    result = await client.run_workflow({"name": "demo", "nodes": [...]})

Failures raise :class:`~lakehouse.clients.base.UpstreamError` (400 for an invalid op or
workflow, 413 for an inbox body over 8 KiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from .base import ServiceClient

__all__ = ["ObserverdClient"]


class ObserverdClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 30.0
    ) -> None:
        super().__init__(session, base_url, "observerd", timeout)

    async def event(self, endpoint: str, *, trace_id: str | None = None, **fields: Any) -> dict:
        """Record one op (``source``, ``success``, ``duration_ms``, ``input_summary``, ...)."""
        return await self.post("/observer/event", {"endpoint": endpoint, **fields}, trace_id=trace_id)

    async def stats(self, **kw: Any) -> dict:
        return await self.get("/observer/stats", **kw)

    async def inbox(
        self,
        type: str,  # noqa: A002 (the wire name)
        body: str,
        *,
        sender: str = "",
        subject: str = "",
        priority: str = "",
        tag: str = "",
        trace_id: str | None = None,
    ) -> dict:
        """Record an inbox message (``type`` email|sms; ``priority`` defaults to medium)."""
        msg = {"type": type, "sender": sender, "subject": subject, "body": body,
               "priority": priority, "tag": tag}
        return await self.post("/observer/inbox", msg, trace_id=trace_id)

    async def list_inbox(self, **params: Any) -> dict:
        """``{messages, count}``; filters ``priority``, ``type``, ``limit``."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        return await self.get("/observer/inbox", params=query or None)

    async def run_workflow(
        self, workflow: Mapping[str, Any], *, trace_id: str | None = None, timeout: float | None = None
    ) -> dict:
        """Run a workflow and return its RunResult (node failures are in the result)."""
        return await self.post(
            "/observer/workflow/run", dict(workflow), trace_id=trace_id, timeout=timeout
        )
