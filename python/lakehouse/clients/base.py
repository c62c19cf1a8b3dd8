"""The JSON-over-HTTP client every per-daemon client builds on.

One :class:`aiohttp.ClientSession` is shared per app (created in a cleanup_ctx); a client is
a thin object holding that session and a base URL. Failures surface as
:class:`UpstreamError` carrying the daemon name, the HTTP status (None when the daemon could
not be reached) and the upstream's error message, so callers can map them (a 404 from vectord
may mean "cold start", anything else is a 502 for our own caller).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from ..web import TRACE_HEADER, dumps
from .pool import HttpPool


class UpstreamError(Exception):
    def __init__(self, service: str, status: int | None, message: str, body: Any = None):
        super().__init__(f"{service}: {message}" if status is None else f"{service} {status}: {message}")
        self.service = service
        self.status = status
        self.message = message
        self.body = body


def _error_message(body: Any, text: str) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if isinstance(err, str):
            return err
    return text.strip()[:500] or "(empty body)"


class ServiceClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        service: str,
        timeout: float | None = 30.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.timeout = timeout
        #: ClientTimeout objects by limit, built once (not one per request)
        self._timeouts: dict[float | None, aiohttp.ClientTimeout | None] = {}
        #: a lean keep-alive pool (lakehouse.clients.pool) for this upstream, when attached:
        #: requests without query parameters go through it instead of the aiohttp session
        self.pool: HttpPool | None = None

    def _client_timeout(self, t: float | None) -> aiohttp.ClientTimeout | None:
        try:
            return self._timeouts[t]
        except KeyError:
            ct = self._timeouts[t] = aiohttp.ClientTimeout(total=t) if t else None
            return ct

    async def exchange(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One request with a prepared body: ``(status, headers, body)`` whatever the status.

        Transport failures raise :class:`UpstreamError` with status None."""
        hdrs = headers if headers is not None else {}
        if trace_id:
            hdrs[TRACE_HEADER] = trace_id
        t = self.timeout if timeout is None else timeout
        if self.pool is not None and params is None:
            try:
                return await self.pool.request(method, path, data, hdrs, timeout=t or None)
            except TimeoutError as exc:
                raise UpstreamError(self.service, None, f"timed out after {t}s") from exc
            except OSError as exc:  # ConnectionError included
                raise UpstreamError(self.service, None, f"unreachable at {self.base_url}: {exc}") from exc
        try:
            async with self.session.request(
                method,
                self.base_url + path,
                data=data,
                params=params,
                headers=hdrs,
                timeout=self._client_timeout(t),
            ) as resp:
                return resp.status, resp.headers, await resp.read()
        except TimeoutError as exc:
            raise UpstreamError(self.service, None, f"timed out after {t}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(self.service, None, f"unreachable at {self.base_url}: {exc}") from exc

    def decode(self, status: int, payload: bytes) -> Any:
        """The JSON answer (None for an empty body); UpstreamError for a status >= 400 (with
        the upstream's own message) or an answer that is not JSON."""
        decoded: Any = None
        if payload:
            try:
                decoded = orjson.loads(payload)
            except orjson.JSONDecodeError:
                decoded = None
        if status >= 400:
            text = payload.decode("utf-8", "replace")
            raise UpstreamError(self.service, status, _error_message(decoded, text), decoded)
        if payload and decoded is None:
            raise UpstreamError(self.service, status, "answer is not JSON")
        return decoded

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        trace_id: str | None = None,
        timeout: float | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send a request and return the decoded JSON answer (None for an empty body)."""
        headers = {}
        data: bytes | None = raw
        if body is not None:
            data = dumps(body)
        if data is not None:
            headers["Content-Type"] = content_type
        status, _, payload = await self.exchange(
            method, path, data, headers=headers, params=params, trace_id=trace_id, timeout=timeout
        )
        return self.decode(status, payload)

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return await self.request("POST", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.request("DELETE", path, **kw)
