"""An append-only JSONL log: one JSON object per line, written whole, replayed tolerantly.

pathwayd (trace events) and observerd (observed ops) persist through it, and validatord's
session log appends to it (reopening the path per record, for logrotate). The guarantees:

* **Whole lines.** Every record is serialised to one ``bytes`` ending in ``\\n`` and handed to
  the kernel in a single ``os.write`` on a file opened with ``O_APPEND``, under a lock. Lines
  from concurrent writers in this process never interleave, and with ``O_APPEND`` the kernel
  places each write at the end of the file even when another process appends too.
* **Flushed.** There is no user-space buffer: when :meth:`AppendLog.append` returns, the line
  is in the operating system's page cache and survives a crash of the process. With
  ``fsync=True`` it is also on the disk (survives power loss). The fsync is a group commit:
  :meth:`AppendLog.write` writes under the lock and returns a ticket, :meth:`AppendLog.sync`
  (outside any caller's lock) waits until a ``fsync`` that began after the write has
  finished; one caller runs it, and every writer that wrote before it began shares it.
* **Tolerant replay.** :meth:`AppendLog.replay` yields the decoded objects in file order. A
  line that is not a JSON object (garbage, a torn write, a truncated last line) is skipped,
  counted and logged; replay never raises because of the file's content. When the file does
  not end in a newline (a write torn by a crash), opening it for append first writes the
  missing newline so the next record starts on a line of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

__all__ = ["AppendLog", "ReplayStats"]

log = logging.getLogger("lakehouse.eventlog")

T = TypeVar("T")


@dataclass
class ReplayStats:
    """What a replay saw: lines decoded and handed on, lines skipped (and why, briefly)."""

    lines: int = 0
    decoded: int = 0
    skipped: int = 0
    #: the reason of the first few skipped lines, "line N: reason"
    skip_reasons: list[str] | None = None

    def skip(self, lineno: int, reason: str) -> None:
        self.skipped += 1
        if self.skip_reasons is None:
            self.skip_reasons = []
        if len(self.skip_reasons) < 20:
            self.skip_reasons.append(f"line {lineno}: {reason}")


class AppendLog:
    """An append-only JSONL file at ``path`` (its parent directory is created on open)."""

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, reopen: bool = False
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        #: open the path for every record and close it after, so a file that logrotate moved
        #: or truncated is followed (the next record recreates the path)
        self.reopen = reopen
        self._lock = threading.Lock()
        self._fd: int | None = None
        # Group commit: records written so far, records covered by a finished fsync.
        self._written = 0
        self._synced = 0
        self._syncing = False
        self._sync_cond = threading.Condition()
        #: fsyncs run (a test checks that concurrent writers share them)
        self.syncs = 0

    # -- writing ----------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as fh:
                        fh.seek(size - 1)
                        last = fh.read(1)
                    if last != b"\n":
                        # A torn last line: end it, so our first record is not glued to it.
                        _write_all(fd, b"\n")
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def append(self, record: Any) -> None:
        """Append one record (anything orjson serialises; ``bytes`` are taken as JSON text)
        and, with ``fsync``, wait until it is on disk.

        Raises ``OSError`` when the write fails; the caller decides whether that is fatal.
        """
        self.sync(self.write(record))

    def write(self, record: Any) -> int:
        """Write one record to the operating system; returns the ticket :meth:`sync` takes.
        Callers that hold a lock of their own call this under it and :meth:`sync` after
        releasing it, so that concurrent writers share one fsync."""
        line = record if isinstance(record, bytes) else orjson.dumps(record)
        if b"\n" in line:
            # orjson never emits a raw newline; bytes handed in must not either.
            raise ValueError("a JSONL record must not contain a newline")
        line += b"\n"
        with self._lock:
            fd = self._open()
            try:
                _write_all(fd, line)
                if self.fsync and self.reopen:
                    os.fsync(fd)  # the file is closed next: no group commit in this mode
            finally:
                if self.reopen:
                    os.close(fd)
                    self._fd = None
            self._written += 1
            if self.reopen:
                self._synced = self._written
            return self._written

    def sync(self, ticket: int) -> None:
        """With ``fsync``: return once record ``ticket`` is on disk (OSError if the fsync
        failed). A no-op without ``fsync``."""
        if not self.fsync:
            return
        with self._sync_cond:
            while self._synced < ticket:
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                self._syncing = True
                break
            else:
                return
        error: OSError | None = None
        with self._lock:
            target, fd = self._written, self._fd
        try:
            if fd is not None:
                os.fsync(fd)
                self.syncs += 1
        except OSError as exc:
            error = exc
        with self._sync_cond:
            self._syncing = False
            if error is None:
                self._synced = max(self._synced, target)
            self._sync_cond.notify_all()
        if error is not None:
            raise error

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                if self.fsync:
                    try:
                        os.fsync(self._fd)
                    except OSError as exc:
                        log.error("%s: fsync at close failed: %s", self.path, exc)
                os.close(self._fd)
                self._fd = None

    # -- reading ----------------------------------------------------------------------

    def replay(
        self,
        stats: ReplayStats | None = None,
        decode: Callable[[bytes], T] | None = None,
    ) -> Iterator[tuple[int, T]]:
        """Yield ``(line_number, record)`` for every line that decodes.

        ``decode`` turns a line into a record and raises ``ValueError`` (which includes
        orjson's and msgspec's decode and validation errors) for a line it refuses; the
        default accepts any JSON object. Blank lines are ignored; refused lines are counted
        in ``stats.skipped`` and logged. A missing file yields nothing.
        """
        stats = stats if stats is not None else ReplayStats()
        decode = decode or _decode_object  # type: ignore[assignment]
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 (closed below; a generator)
        except FileNotFoundError:
            return
        with fh:
            # Iterating a binary file splits on b"\n" with no line-length limit.
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line:
                    continue
                stats.lines += 1
                try:
                    record = decode(line)  # type: ignore[misc]
                except ValueError as exc:
                    torn = "" if raw.endswith(b"\n") else " (truncated last line)"
                    stats.skip(lineno, f"{exc}{torn}")
                    log.warning("%s: skipping line %d%s: %s", self.path, lineno, torn, exc)
                    continue
                stats.decoded += 1
                yield lineno, record


def _decode_object(line: bytes) -> dict[str, Any]:
    obj = orjson.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
