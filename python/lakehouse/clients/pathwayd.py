"""Client for pathwayd (contract section 10): versioned memory traces.

    client = PathwaydClient(session, config.upstream("gateway", "pathwayd"))
    trace = await client.add({"query": "forklift, Milwaukee", "answer": "w-00042"}, tags=["fill"])
    newer = await client.revise(trace["uid"], {"answer": "w-00043"})
    chain = (await client.history(newer["uid"]))["traces"]      # newest first

``content`` is any JSON value. Traces come back as dicts of the wire form (``uid``,
``content``, ``predecessor_uid``, ``created_at_ns``, ``updated_at_ns``, ``retired``,
``replay_count``, ``tags``). Failures raise :class:`~lakehouse.clients.base.UpstreamError`
(404 for an unknown uid, 400 for bad input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from .base import ServiceClient

__all__ = ["PathwaydClient"]


def _body(content: Any, tags: Sequence[str] | None, **fields: Any) -> dict[str, Any]:
    body = {**fields, "content": content}
    if tags is not None:
        body["tags"] = list(tags)
    return body


class PathwaydClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 30.0
    ) -> None:
        super().__init__(session, base_url, "pathwayd", timeout)

    async def add(self, content: Any, tags: Sequence[str] | None = None, **kw: Any) -> dict:
        return await self.post("/pathway/add", _body(content, tags), **kw)

    async def add_idempotent(
        self, uid: str, content: Any, tags: Sequence[str] | None = None, **kw: Any
    ) -> dict:
        """Add under ``uid``, or bump the existing trace's ``replay_count``."""
        return await self.post("/pathway/add_idempotent", _body(content, tags, uid=uid), **kw)

    async def update(
        self, uid: str, content: Any, tags: Sequence[str] | None = None, **kw: Any
    ) -> dict:
        return await self.post("/pathway/update", _body(content, tags, uid=uid), **kw)

    async def revise(
        self, predecessor_uid: str, content: Any, tags: Sequence[str] | None = None, **kw: Any
    ) -> dict:
        body = _body(content, tags, predecessor_uid=predecessor_uid)
        return await self.post("/pathway/revise", body, **kw)

    async def retire(self, uid: str, **kw: Any) -> dict:
        return await self.post("/pathway/retire", {"uid": uid}, **kw)

    async def get_trace(self, uid: str, **kw: Any) -> dict:
        return await self.get(f"/pathway/get/{quote(uid, safe='')}", **kw)

    async def history(self, uid: str, **kw: Any) -> dict:
        """``{uid, traces (newest first), truncated, missing_uid?}``."""
        return await self.get(f"/pathway/history/{quote(uid, safe='')}", **kw)

    async def search(
        self,
        query: str | None = None,
        tags: Sequence[str] | None = None,
        limit: int | None = None,
        **kw: Any,
    ) -> dict:
        """``{traces, total}``: active traces, newest first."""
        body: dict[str, Any] = {}
        if query is not None:
            body["query"] = query
        if tags is not None:
            body["tags"] = list(tags)
        if limit is not None:
            body["limit"] = limit
        return await self.post("/pathway/search", body, **kw)

    async def stats(self, **kw: Any) -> dict:
        return await self.get("/pathway/stats", **kw)
