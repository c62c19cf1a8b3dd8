"""Client for storaged (``/storage/{key}`` and the listing), for tools and tests.

Daemons in this repository use :mod:`lakehouse.data.storage` in-process; this client is for
callers that only have storaged's URL::

    client = StoragedClient(session, config.upstream("gateway", "storaged"))
    info = await client.put_object("reports/a.json", b"...")   # {key, size, sha256}
    data = await client.get_object("reports/a.json")
    async for chunk in client.stream_object("big.bin"): ...
    page = await client.list_objects(prefix="reports/")        # {items, truncated, next_after}

Failures raise :class:`~lakehouse.clients.base.UpstreamError` (status 404 for a missing key,
400 for a bad key, 413 over the cap, 503 when storaged is busy).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from ..web import TRACE_HEADER
from .base import ServiceClient, UpstreamError, _error_message

__all__ = ["StoragedClient"]


class StoragedClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 600.0
    ) -> None:
        super().__init__(session, base_url, "storaged", timeout)

    def _url(self, key: str) -> URL:
        # "/" stays a separator; everything else special is percent-encoded
        return URL(f"{self.base_url}/storage/{quote(key, safe='/')}", encoded=True)

    async def _send(
        self, method: str, key: str, data: Any = None, trace_id: str | None = None
    ) -> aiohttp.ClientResponse:
        headers = {TRACE_HEADER: trace_id} if trace_id else {}
        t = aiohttp.ClientTimeout(total=self.timeout) if self.timeout else None
        try:
            return await self.session.request(
                method, self._url(key), data=data, headers=headers, timeout=t
            )
        except TimeoutError as exc:
            raise UpstreamError(self.service, None, f"timed out after {self.timeout}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(self.service, None, f"unreachable at {self.base_url}: {exc}") from exc

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        payload = await resp.read()
        try:
            body = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            body = None
        text = payload.decode("utf-8", "replace") or resp.reason or ""
        raise UpstreamError(self.service, resp.status, _error_message(body, text), body)

    async def put_object(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` (bytes, or an async iterable of chunks, streamed) under ``key``."""
        async with await self._send("PUT", key, data, trace_id) as resp:
            await self._raise_for(resp)
            return orjson.loads(await resp.read())

    async def get_object(self, key: str, *, trace_id: str | None = None) -> bytes:
        """The whole object."""
        async with await self._send("GET", key, trace_id=trace_id) as resp:
            await self._raise_for(resp)
            return await resp.read()

    async def stream_object(
        self, key: str, *, chunk_size: int = 1 << 20, trace_id: str | None = None
    ) -> AsyncIterator[bytes]:
        """The object in chunks, never whole in memory."""
        async with await self._send("GET", key, trace_id=trace_id) as resp:
            await self._raise_for(resp)
            async for chunk in resp.content.iter_chunked(chunk_size):
                yield chunk

    async def head_object(self, key: str, *, trace_id: str | None = None) -> dict[str, Any] | None:
        """``{key, size, sha256}``, or None when absent."""
        async with await self._send("HEAD", key, trace_id=trace_id) as resp:
            if resp.status == 404:
                return None
            await self._raise_for(resp)
            return {
                "key": key,
                "size": int(resp.headers.get("Content-Length", "0")),
                "sha256": resp.headers.get("X-Object-Sha256"),
            }

    async def delete_object(self, key: str, *, trace_id: str | None = None) -> bool:
        """Delete; False when there was no such object."""
        async with await self._send("DELETE", key, trace_id=trace_id) as resp:
            if resp.status == 404:
                return False
            await self._raise_for(resp)
            return True

    async def list_objects(
        self, prefix: str = "", after: str = "", limit: int | None = None
    ) -> dict[str, Any]:
        """One page: ``{items: [{key, size}], truncated, next_after, ...}``."""
        params = {"prefix": prefix, "after": after}
        if limit is not None:
            params["limit"] = str(limit)
        return await self.get("/storage", params=params)

    async def iter_objects(self, prefix: str = "") -> AsyncIterator[dict[str, Any]]:
        """Every object under ``prefix``, following ``next_after``."""
        after = ""
        while True:
            page = await self.list_objects(prefix, after)
            for item in page["items"]:
                yield item
            if not page["truncated"]:
                return
            after = page["next_after"]
