"""A minimal keep-alive HTTP/1.1 client for the load generators (bench/vectord_load.py,
bench/gateway_overhead.py).

aiohttp's client costs more CPU per request than the daemons under test, so a load generator
built on it measures itself. This one sends prepared request bytes and parses only the status
line and Content-Length of the answer: enough for a closed-loop load test, nothing more.
"""

from __future__ import annotations

import asyncio
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago. (Not lakehouse.stack.free_port: a
    load generator stays a plain client and does not import the package under test.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    """A whole ``POST path`` request with a JSON ``body``, ready to send again and again."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Conn(asyncio.Protocol):
    """One keep-alive connection: send a prepared request, resolve when the answer is whole."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.need = -1
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            self.status = int(head[9:12])  # "HTTP/1.1 200 OK"
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            self.need = end + 4 + length
        if len(self.buf) >= self.need:
            del self.buf[: self.need]
            self.need = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(str(exc or "connection closed")))

    async def send(self, data: bytes) -> int:
        """Send one request; the answer's status code once its whole body has arrived."""
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return await self.waiter
