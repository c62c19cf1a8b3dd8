"""Client for catalogd (``/catalog/register``, ``/catalog/manifest/{name}``, ``/catalog/list``).

    client = CatalogdClient(session, config.upstream("ingestd", "catalogd"))
    manifest = await client.register("workers", fp, key=key, row_count=10_000)
    manifest["existing"]                 # True when the name was already registered (ADR-020)
    await client.manifest("workers")     # None when unknown
    await client.list()                  # [manifest, ...] by name

A fingerprint conflict raises :class:`~lakehouse.clients.base.UpstreamError` with status 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from .base import ServiceClient, UpstreamError

__all__ = ["CatalogdClient"]


class CatalogdClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 30.0
    ) -> None:
        super().__init__(session, base_url, "catalogd", timeout)

    async def register(
        self,
        name: str,
        schema_fingerprint: str,
        *,
        key: str = "",
        row_count: int | None = None,
        size: int | None = None,
        columns: Sequence[dict[str, str]] | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Register (idempotent for the same fingerprint); the manifest plus ``existing``."""
        body: dict[str, Any] = {"name": name, "schema_fingerprint": schema_fingerprint}
        if key:
            body["key"] = key
        if row_count is not None:
            body["row_count"] = row_count
        if size is not None:
            body["size"] = size
        if columns is not None:
            body["columns"] = list(columns)
        return await self.post("/catalog/register", body, trace_id=trace_id)

    async def manifest(self, name: str, *, trace_id: str | None = None) -> dict[str, Any] | None:
        """The manifest named ``name``, or None."""
        try:
            return await self.get(f"/catalog/manifest/{quote(name, safe='')}", trace_id=trace_id)
        except UpstreamError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, *, trace_id: str | None = None) -> list[dict[str, Any]]:
        """Every manifest, by name."""
        answer = await self.get("/catalog/list", trace_id=trace_id)
        return list(answer["manifests"])

    async def delete_manifest(self, name: str, *, trace_id: str | None = None) -> bool:
        """Remove a manifest (its data object stays); False when unknown."""
        try:
            await self.delete(f"/catalog/manifest/{quote(name, safe='')}", trace_id=trace_id)
        except UpstreamError as exc:
            if exc.status == 404:
                return False
            raise
        return True
