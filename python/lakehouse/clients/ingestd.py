"""Client for ingestd (``POST /ingest?name=``), used by the demo and matrixd's tooling.

    client = IngestdClient(session, config.upstream("gateway", "ingestd"))
    answer = await client.ingest("workers", Path("workers.csv"))     # streamed from disk
    answer = await client.ingest("tiny", b"a,b\n1,2\n", multipart=False)
    # {dataset_id, name, key, row_count, schema_fingerprint, columns, existing}

A malformed CSV raises :class:`~lakehouse.clients.base.UpstreamError` with status 400 (the
message names the line); a schema that drifted from the registered one, 409.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ..web import TRACE_HEADER
from .base import ServiceClient, UpstreamError, _error_message

__all__ = ["IngestdClient"]


class IngestdClient(ServiceClient):
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = 1800.0
    ) -> None:
        # Long: a large CSV is uploaded, read twice and converted before the answer.
        super().__init__(session, base_url, "ingestd", timeout)

    async def ingest(
        self,
        name: str,
        csv: bytes | str | os.PathLike[str],
        *,
        multipart: bool = True,
        filename: str | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Ingest CSV ``bytes`` or the CSV file at a path (streamed, never read whole)."""
        fh = None
        try:
            if isinstance(csv, bytes | bytearray):
                payload: Any = bytes(csv)
            else:
                path = Path(csv)
                filename = filename or path.name
                fh = open(path, "rb")  # noqa: SIM115 - closed below, after the upload
                payload = fh
            if multipart:
                form = aiohttp.FormData()
                form.add_field(
                    "file", payload, filename=filename or "data.csv", content_type="text/csv"
                )
                data: Any = form
                headers = {}
            else:
                data = payload
                headers = {"Content-Type": "text/csv"}
            if trace_id:
                headers[TRACE_HEADER] = trace_id
            t = aiohttp.ClientTimeout(total=self.timeout) if self.timeout else None
            try:
                async with self.session.post(
                    self.base_url + "/ingest",
                    params={"name": name},
                    data=data,
                    headers=headers,
                    timeout=t,
                ) as resp:
                    body = await resp.read()
                    try:
                        decoded = orjson.loads(body) if body else None
                    except orjson.JSONDecodeError:
                        decoded = None
                    if resp.status >= 400:
                        text = body.decode("utf-8", "replace")
                        raise UpstreamError(
                            self.service, resp.status, _error_message(decoded, text), decoded
                        )
                    if decoded is None:
                        raise UpstreamError(self.service, resp.status, "answer is not JSON")
                    return decoded
            except TimeoutError as exc:
                raise UpstreamError(self.service, None, f"timed out after {self.timeout}s") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamError(
                    self.service, None, f"unreachable at {self.base_url}: {exc}"
                ) from exc
        finally:
            if fh is not None:
                fh.close()
