"""The coordinator session log: one ``session.iterate.v1`` JSON row per ``/iterate`` call.

``[validatord].session_log_path`` names the file (relative paths under data_dir; "" turns
the log off). Rows are appended, never rewritten, so the file can be rotated by logrotate
(``copytruncate`` or move: the next row reopens the path) and queried with DuckDB
(``read_json_auto('sessions.jsonl')``).

Concurrency: each row is encoded to one ``bytes`` line first, then written with a single
``os.write`` on a descriptor opened with ``O_APPEND``, under a lock (so the loop that
finishes a short write cannot interleave with another writer in this process). ``O_APPEND``
makes every write land at the end even with several processes appending, so rows are never
torn or interleaved. Logging is best-effort, as in the reference: a failed write is logged
and counted, and never fails the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SCHEMA", "SessionLog"]

SCHEMA = "session.iterate.v1"

log = logging.getLogger("lakehouse.validation")


class SessionLog:
    """Appends rows to ``path``; a log with ``path=None`` is disabled and drops them."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self.written = 0
        self.failed = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def append(self, row: dict[str, Any]) -> bool:
        """Append one row (blocking). True when written; False when disabled or failed."""
        if self.path is None:
            return False
        line = orjson.dumps(row) + b"\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(line)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                finally:
                    os.close(fd)
                self.written += 1
            return True
        except OSError as exc:
            self.failed += 1
            log.warning("session log %s: row not written: %s", self.path, exc)
            return False

    async def append_async(self, row: dict[str, Any]) -> bool:
        """:meth:`append` off the event loop."""
        if self.path is None:
            return False
        return await asyncio.to_thread(self.append, row)

    def read(self) -> list[dict[str, Any]]:
        """Every row so far (for tests and tools; blocking)."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            return [orjson.loads(line) for line in fh if line.strip()]
