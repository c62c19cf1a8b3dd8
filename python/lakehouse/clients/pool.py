"""A lean keep-alive HTTP/1.1 client for the hot calls between our own daemons.

aiohttp's client costs about 0.07 ms of CPU per request in matrixd (request and response
objects, timers, the connector's bookkeeping: docs/performance.md); a search by text makes
three or four such calls. This pool speaks just enough HTTP/1.1 for our daemons' answers:

    pool = HttpPool("http://127.0.0.1:3215", headers={"Authorization": "Bearer ..."})
    status, headers, body = await pool.request("POST", "/vectors/index/w/search", body, {...}, timeout=30)

- one pool per upstream, up to ``limit`` connections kept alive and reused (idle ones are
  dropped after ``idle_timeout`` seconds, below the daemons' own 75 s);
- answers framed by ``Content-Length`` or ``Transfer-Encoding: chunked``, or ending with the
  connection (``Connection: close``);
- a failure to connect or a connection lost before the answer is complete raises
  :class:`ConnectionError`; the timeout covers the whole exchange (``TimeoutError``). A
  connection that failed, timed out or answered ``Connection: close`` is never reused.

It is used by :class:`~lakehouse.clients.base.ServiceClient` when one is attached (matrixd
attaches one per upstream); every other client keeps aiohttp's.
"""

from __future__ import annotations

import asyncio
import collections
import time
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["HttpPool"]

#: largest status line + headers of an answer
MAX_HEAD = 64 * 1024


class _Conn(asyncio.Protocol):
    """One connection: at most one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes (or the end of the connection)."""
        if self.closed:
            raise ConnectionError("connection closed before the answer was complete")
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter
        self.waiter = None
        if self.closed and not self.buf:
            raise ConnectionError("connection closed before the answer was complete")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        limit: int = 256,
        idle_timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"HttpPool speaks plain http:// only, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._fixed = f"Host: {netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._idle: collections.deque[_Conn] = collections.deque()
        self._slots = asyncio.Semaphore(limit) if limit else None
        self.idle_timeout = idle_timeout

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: float | None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """``(status, headers, body)``; ConnectionError or TimeoutError on failure."""
        head = [f"{method} {self.prefix}{path} HTTP/1.1\r\n", self._fixed]
        for k, v in headers.items():
            if "\r" in v or "\n" in v:
                raise ValueError(f"header {k} holds a line break")
            head.append(f"{k}: {v}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1") + (body or b"")
        if self._slots is not None:
            await self._slots.acquire()
        try:
            async with asyncio.timeout(timeout):
                conn = await self._conn()
                try:
                    answer = await self._exchange(conn, data, method)
                except BaseException:
                    conn.close()
                    raise
            return answer
        finally:
            if self._slots is not None:
                self._slots.release()

    async def _conn(self) -> _Conn:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or (conn.transport is not None and conn.transport.is_closing()):
                continue
            if now - conn.idle_since > self.idle_timeout:
                conn.close()
                continue
            return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        return conn

    async def _exchange(self, conn: _Conn, data: bytes, method: str) -> tuple[int, CIMultiDictProxy[str], bytes]:
        assert conn.transport is not None
        conn.buf.clear()
        conn.transport.write(data)
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(conn.buf) > MAX_HEAD:
                raise ConnectionError("answer head too large")
            await conn.more()
        lines = bytes(conn.buf[:end]).decode("latin-1").split("\r\n")
        del conn.buf[: end + 4]
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ConnectionError(f"malformed status line {lines[0][:80]!r}") from None
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.add(name.strip(), value.strip())
        keep = headers.get("Connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            payload = b""
        elif headers.get("Transfer-Encoding", "").lower() == "chunked":
            payload = await self._chunked(conn)
        elif "Content-Length" in headers:
            try:
                length = int(headers["Content-Length"])
            except ValueError:
                raise ConnectionError("malformed Content-Length") from None
            while len(conn.buf) < length:
                await conn.more()
            payload = bytes(conn.buf[:length])
            del conn.buf[:length]
        else:  # the answer ends with the connection
            while not conn.closed:
                try:
                    await conn.more()
                except ConnectionError:
                    break
            payload, keep = bytes(conn.buf), False
        if keep and not conn.closed and not conn.buf:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return status, CIMultiDictProxy(headers), payload

    async def _chunked(self, conn: _Conn) -> bytes:
        out = bytearray()
        while True:
            while (nl := conn.buf.find(b"\r\n")) < 0:
                await conn.more()
            size_text = bytes(conn.buf[:nl]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ConnectionError("malformed chunk size") from None
            del conn.buf[: nl + 2]
            if size == 0:
                # trailers, then the empty line
                while (end := conn.buf.find(b"\r\n")) != 0:
                    if end > 0:
                        del conn.buf[: end + 2]
                        continue
                    await conn.more()
                del conn.buf[:2]
                return bytes(out)
            while len(conn.buf) < size + 2:
                await conn.more()
            out += conn.buf[:size]
            del conn.buf[: size + 2]

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
