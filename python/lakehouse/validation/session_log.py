"""The coordinator session log: one ``session.iterate.v1`` JSON row per ``/iterate`` call.

``[validatord].session_log_path`` names the file (relative paths under data_dir; "" turns
the log off). Rows are appended, never rewritten, so the file can be rotated by logrotate
(``copytruncate`` or move: the next row reopens the path) and queried with DuckDB
(``read_json_auto('sessions.jsonl')``).

Rows go through :class:`lakehouse.eventlog.AppendLog` (``reopen=True``): each is one whole
line in a single ``O_APPEND`` write, so rows from concurrent writers are never torn or
interleaved, and a torn last line left by a crash is ended before the next row. Logging is
best-effort, as in the reference: a failed write is logged and counted, and never fails the
request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from lakehouse.eventlog import AppendLog

__all__ = ["SCHEMA", "SessionLog"]

SCHEMA = "session.iterate.v1"

log = logging.getLogger("lakehouse.validation")


class SessionLog:
    """Appends rows to ``path``; a log with ``path=None`` is disabled and drops them."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self._log = AppendLog(self.path, reopen=True) if self.path is not None else None
        self.written = 0
        self.failed = 0
        self._counts = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._log is not None

    def append(self, row: dict[str, Any]) -> bool:
        """Append one row (blocking). True when written; False when disabled or failed."""
        if self._log is None:
            return False
        try:
            self._log.append(row)
        except OSError as exc:
            with self._counts:
                self.failed += 1
            log.warning("session log %s: row not written: %s", self.path, exc)
            return False
        with self._counts:
            self.written += 1
        return True

    async def append_async(self, row: dict[str, Any]) -> bool:
        """:meth:`append` off the event loop."""
        if self._log is None:
            return False
        return await asyncio.to_thread(self.append, row)

    def read(self) -> list[dict[str, Any]]:
        """Every row so far, skipping any torn line (for tests and tools; blocking)."""
        if self._log is None:
            return []
        return [row for _, row in self._log.replay()]
