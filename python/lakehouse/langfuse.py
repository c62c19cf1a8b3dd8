"""Optional Langfuse tracing, batched in the background and fail-open (contract section 1.5).

Tracing is on only when ``LANGFUSE_URL``, ``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY``
are all set. Each traced request becomes two ingestion events: a ``trace-create`` whose id is
the request's ``X-Lakehouse-Trace-Id`` (so the same id links the gateway, the daemons' logs
and Langfuse; a client that reuses a trace id across calls gets one trace with several
spans) and a ``span-create`` for the call itself.

Fail-open is the rule (ADR-005 5.1): :meth:`LangfuseBatcher.enqueue` never waits. Events go
into a bounded queue; when it is full the event is dropped and counted. One background task
collects batches (``batch_size`` events, or whatever arrived within ``flush_interval``
seconds) and POSTs them to ``$LANGFUSE_URL/api/public/ingestion`` with HTTP Basic auth
``public_key:secret_key``, at most ``max_inflight`` POSTs at once, each bounded by
``timeout``. A slow or dead Langfuse therefore costs dropped events, never request latency.
Request and response bodies are never sent, only method, path, status, daemon and timings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

__all__ = ["LangfuseSettings", "LangfuseBatcher", "iso_time"]

log = logging.getLogger("lakehouse.langfuse")

ENV_URL = "LANGFUSE_URL"
ENV_PUBLIC = "LANGFUSE_PUBLIC_KEY"
ENV_SECRET = "LANGFUSE_SECRET_KEY"

#: seconds between two warnings about failed batches (a dead Langfuse must not flood logs)
WARN_EVERY = 60.0


@dataclass(frozen=True)
class LangfuseSettings:
    """Where to send events. ``repr`` hides the secret key."""

    url: str
    public_key: str
    secret_key: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LangfuseSettings | None:
        """The settings when all three variables are set (non-empty), else None."""
        env = os.environ if env is None else env
        url, public, secret = (env.get(k, "").strip() for k in (ENV_URL, ENV_PUBLIC, ENV_SECRET))
        if not (url and public and secret):
            return None
        return cls(url.rstrip("/"), public, secret)

    @property
    def ingestion_url(self) -> str:
        return f"{self.url}/api/public/ingestion"

    def __repr__(self) -> str:
        return f"LangfuseSettings(url={self.url!r}, public_key={self.public_key!r}, secret_key=***)"


def iso_time(ts: float) -> str:
    """A Unix time as the ISO-8601 UTC string Langfuse expects (millisecond precision)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


class LangfuseBatcher:
    """A bounded queue of ingestion events and the task that ships them in batches.

    Use from one event loop: ``await start()``, then :meth:`enqueue` / :meth:`record_request`
    from request handlers, and ``await close()`` at shutdown (which sends what is queued,
    within ``timeout``).
    """

    def __init__(
        self,
        settings: LangfuseSettings,
        *,
        batch_size: int = 50,
        flush_interval: float = 2.0,
        queue_size: int = 10_000,
        timeout: float = 5.0,
        max_inflight: int = 2,
        service: str = "gateway",
    ) -> None:
        if batch_size <= 0 or queue_size <= 0 or max_inflight <= 0:
            raise ValueError("batch_size, queue_size and max_inflight must be positive")
        if not (flush_interval > 0 and timeout > 0):
            raise ValueError("flush_interval and timeout must be positive")
        self.settings = settings
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.service = service
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self._slots = asyncio.Semaphore(max_inflight)
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        #: the batch being collected (kept here so that close() can still send it)
        self._pending: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None
        credentials = f"{settings.public_key}:{settings.secret_key}".encode()
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "Content-Type": "application/json",
        }
        self._last_warning = 0.0
        #: counters, for tests and logs
        self.sent_events = 0
        self.sent_batches = 0
        self.failed_batches = 0
        self.dropped_events = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and start the background task."""
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=4),
        )
        self._task = asyncio.create_task(self._run(), name="langfuse-batcher")

    async def close(self) -> None:
        """Stop the task, send what is queued (bounded by ``timeout``), close the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        rest, self._pending = self._pending, []
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        sends = [self._send(rest[i : i + self.batch_size]) for i in range(0, len(rest), self.batch_size)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                await asyncio.gather(*self._inflight, *sends, return_exceptions=True)
        for task in list(self._inflight):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- producing events ------------------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> bool:
        """Queue one ingestion event; False (and counted) when the queue is full. Never waits."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1
            return False
        return True

    def record_request(
        self,
        *,
        trace_id: str,
        method: str,
        path: str,
        status: int,
        start: float,
        end: float,
        daemon: str | None = None,
    ) -> None:
        """Queue the trace-create and span-create events of one HTTP request.

        ``start`` and ``end`` are Unix times (``time.time()``).
        """
        name = f"{method} {path}"
        started, ended = iso_time(start), iso_time(end)
        metadata = {
            "service": self.service,
            "method": method,
            "path": path,
            "status": status,
            "daemon": daemon,
            "duration_ms": round((end - start) * 1000.0, 3),
        }
        self.enqueue(
            {
                "id": uuid.uuid4().hex,
                "timestamp": started,
                "type": "trace-create",
                "body": {
                    "id": trace_id,
                    "timestamp": started,
                    "name": name,
                    "metadata": metadata,
                    "tags": [self.service],
                },
            }
        )
        self.enqueue(
            {
                "id": uuid.uuid4().hex,
                "timestamp": ended,
                "type": "span-create",
                "body": {
                    "id": uuid.uuid4().hex,
                    "traceId": trace_id,
                    "name": daemon or self.service,
                    "startTime": started,
                    "endTime": ended,
                    "metadata": metadata,
                    "level": "ERROR" if status >= 500 else "DEFAULT",
                    "statusMessage": str(status),
                },
            }
        )

    # -- the background task --------------------------------------------------------------

    async def _next_batch(self) -> list[dict[str, Any]]:
        """Wait for one event, then take up to ``batch_size`` within ``flush_interval``."""
        batch = self._pending
        batch.append(await self._queue.get())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.flush_interval
        while len(batch) < self.batch_size:
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            remaining = deadline - loop.time()
            if len(batch) >= self.batch_size or remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        self._pending = []
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            # Waiting for a slot holds events in the queue (bounded, dropping), never callers.
            await self._slots.acquire()
            task = asyncio.create_task(self._send_and_release(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send_and_release(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._send(batch)
        finally:
            self._slots.release()

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        if not batch or self._session is None:
            return
        body = orjson.dumps({"batch": batch, "metadata": {"sdk": "lakehouse", "service": self.service}})
        try:
            async with self._session.post(
                self.settings.ingestion_url,
                data=body,
                headers=self._headers,
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # fail-open: any failure only counts and warns
            self.failed_batches += 1
            now = time.monotonic()
            if now - self._last_warning >= WARN_EVERY:
                self._last_warning = now
                log.warning(
                    "langfuse: a batch of %d events was not accepted by %s (%s); "
                    "tracing stays best-effort",
                    len(batch),
                    self.settings.url,
                    exc or type(exc).__name__,
                )
            return
        self.sent_batches += 1
        self.sent_events += len(batch)
