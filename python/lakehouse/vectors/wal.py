"""A write-ahead log: checksummed records in segment files, written with group commit.

    log = WriteAheadLog.create(directory, "workers", header, sync=True)  # durable on return
    lsn = log.append([part, part])        # enqueue one record; returns its sequence number
    log.wait(lsn)                          # blocks until the record is in the log
    await log.wait_async(lsn)              # the same from an event loop, without a thread
    cut = log.rotate()                     # later records go to a new segment
    log.checkpoint(cut)                    # delete the segments before that cut
    log.close()

**Files.** A log named ``stem`` is a run of segment files ``<stem>.<seq:010d>.wal`` in one
directory. A segment is the 8-byte magic ``LHWAL01\\n`` followed by frames::

    u32 payload length (little endian) | u32 CRC-32 of the payload | payload

The first frame of every segment is the log's header (the caller's bytes: for vectord, the
index's parameters), so any one segment says what it belongs to.

**Group commit.** :meth:`append` only queues the record (the caller's buffers, not copied)
and returns its sequence number; one writer thread per log takes everything queued, frames
it, writes it with one ``writev`` and, with ``sync=True``, calls ``fdatasync`` once for the
whole batch. Concurrent writers therefore share one fsync: while one batch is being synced
the next one accumulates. A record is *durable* once the writer has finished its batch:
:meth:`wait` / :meth:`wait_async` return then (or raise :class:`WalError` if that batch's
write or sync failed). With ``sync=False`` a batch is durable once ``write`` returned: it is
in the operating system's page cache, which survives a crash of the process but not a power
loss.

**Torn tails.** A crash can leave the last frame of a segment incomplete. :func:`read_segment`
stops at the first frame whose length runs past the end of the file or whose checksum does
not match, and reports it: such a frame was never acknowledged (its batch's sync had not
returned). After a failed write the writer continues in a fresh segment, so a torn frame can
only ever be the last one of its segment.

**Rotation and checkpoints.** :meth:`rotate` puts a marker in the queue: every record
appended before it stays in the current segment, every record after it goes to a new one.
Once a snapshot covering everything before the marker is durable elsewhere,
:meth:`checkpoint` (also queued, so it runs after the rotation) deletes the older segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MAGIC",
    "WalError",
    "WriteAheadLog",
    "Segment",
    "SegmentRead",
    "frame",
    "list_segments",
    "read_segment",
]

log = logging.getLogger("lakehouse.vectors.wal")

MAGIC = b"LHWAL01\n"
_FRAME = struct.Struct("<II")
#: largest payload one frame can carry (the length field is a u32)
MAX_PAYLOAD = (1 << 32) - 1
#: writev takes at most IOV_MAX buffers per call
_IOV_MAX = 1024
_SEGMENT_RE = re.compile(r"(.+)\.(\d{10})\.wal")

Buffer = bytes | bytearray | memoryview | Any  # anything with the buffer protocol


class WalError(OSError):
    """Writing or syncing the log failed: the records of that batch are not durable."""


def _views(parts: Sequence[Buffer]) -> list[memoryview]:
    return [memoryview(p).cast("B") for p in parts]


def frame(parts: Sequence[Buffer]) -> list[memoryview | bytes]:
    """The buffers of one frame (header + the payload parts), ready for ``writev``."""
    views = _views(parts)
    crc = 0
    n = 0
    for v in views:
        crc = zlib.crc32(v, crc)
        n += v.nbytes
    if n > MAX_PAYLOAD:
        raise ValueError(f"a log record is limited to {MAX_PAYLOAD} bytes, got {n}")
    return [_FRAME.pack(n, crc), *views]


@dataclass(frozen=True, slots=True)
class Segment:
    stem: str
    seq: int
    path: Path


def segment_path(directory: Path, stem: str, seq: int) -> Path:
    return directory / f"{stem}.{seq:010d}.wal"


def list_segments(directory: Path) -> dict[str, list[Segment]]:
    """Every log's segments in ``directory``, by stem, oldest first (a missing directory: none)."""
    out: dict[str, list[Segment]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return out
    for name in names:
        m = _SEGMENT_RE.fullmatch(name)
        if m:
            out.setdefault(m.group(1), []).append(Segment(m.group(1), int(m.group(2)), directory / name))
    for segs in out.values():
        segs.sort(key=lambda s: s.seq)
    return out


@dataclass
class SegmentRead:
    """What :func:`read_segment` found: the payloads of the whole frames, and whether (and
    where) the file ended in a torn or corrupt frame."""

    records: list[bytes] = field(default_factory=list)
    #: bytes of the file up to the end of the last good frame
    good_bytes: int = 0
    #: None, or why reading stopped early ("torn frame at byte N", "checksum mismatch ...")
    torn: str | None = None


def read_segment(path: Path) -> SegmentRead:
    """Read one segment. Never raises for the content: a bad magic, a short or corrupt last
    frame is reported in ``torn`` and reading stops there."""
    data = path.read_bytes()
    out = SegmentRead()
    if data[: len(MAGIC)] != MAGIC:
        out.torn = "no segment magic" if len(data) >= len(MAGIC) else "torn segment magic"
        return out
    pos = len(MAGIC)
    out.good_bytes = pos
    end = len(data)
    view = memoryview(data)
    while pos < end:
        if end - pos < _FRAME.size:
            out.torn = f"torn frame header at byte {pos}"
            break
        n, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        if n > end - start:
            out.torn = f"torn frame at byte {pos} ({end - start} of {n} payload bytes)"
            break
        payload = view[start : start + n]
        if zlib.crc32(payload) != crc:
            out.torn = f"checksum mismatch in the frame at byte {pos}"
            break
        out.records.append(bytes(payload))
        pos = start + n
        out.good_bytes = pos
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, bufs: list[Any]) -> None:
    """writev everything in ``bufs`` (partial writes continue where they stopped)."""
    pending = deque(memoryview(b).cast("B") if not isinstance(b, memoryview) else b for b in bufs)
    while pending:
        chunk = [pending[i] for i in range(min(_IOV_MAX, len(pending)))]
        n = os.writev(fd, chunk)
        while n:
            head = pending[0]
            if n >= head.nbytes:
                n -= head.nbytes
                pending.popleft()
            else:
                pending[0] = head[n:]
                n = 0
        while pending and pending[0].nbytes == 0:
            pending.popleft()


@dataclass(slots=True)
class _Record:
    lsn: int
    parts: Sequence[Buffer]


@dataclass(slots=True)
class _Control:
    kind: str  # "rotate" | "checkpoint" | "barrier" | "close"
    seq: int = 0
    done: threading.Event | None = None


class WriteAheadLog:
    """One log (see the module docstring). Thread-safe; append never blocks on I/O."""

    def __init__(
        self, directory: Path, stem: str, header: bytes, *, sync: bool, next_seq: int
    ) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.header = header
        self.sync = sync
        self._cond = threading.Condition()
        self._queue: list[_Record | _Control] = []
        self._lsn = 0  # the last sequence number handed out
        self._done = 0  # every record up to here has been written (or failed)
        self._failures: deque[tuple[int, int, WalError]] = deque(maxlen=256)
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._cuts = 0  # rotations asked for
        self._cut_segment: dict[int, int] = {}  # rotation -> the segment it opened
        self._writing_seq = next_seq - 1  # segment numbers are only chosen by the writer
        self._fd = -1
        self._closed = False
        self._unsynced_dir = False
        #: counters for the info route and the benchmark
        self.records = 0
        self.batches = 0
        self.syncs = 0
        self.failures = 0
        self.bytes = 0
        self._thread: threading.Thread | None = None

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        stem: str,
        header: bytes,
        *,
        sync: bool,
        next_seq: int = 1,
        later_header: bytes | None = None,
    ) -> WriteAheadLog:
        """Open a log whose next segment is ``next_seq``: the segment is created, its header
        written and (with ``sync``) made durable, directory entry included, before this
        returns. ``later_header``: the header of the segments after this one, if another."""
        wal = cls(directory, stem, header, sync=sync, next_seq=next_seq)
        wal.directory.mkdir(parents=True, exist_ok=True)
        wal._open_segment(next_seq)
        if later_header is not None:
            wal.header = later_header
        wal._start()
        return wal

    @classmethod
    def open(
        cls, directory: Path, stem: str, header: bytes, *, sync: bool, next_seq: int = 1
    ) -> WriteAheadLog:
        """A log whose segment ``next_seq`` is created by the first write (not before)."""
        wal = cls(directory, stem, header, sync=sync, next_seq=next_seq)
        wal.directory.mkdir(parents=True, exist_ok=True)
        wal._start()
        return wal

    def _open_segment(self, seq: int) -> None:
        """Create segment ``seq`` with its magic and header frame (writer thread, or create)."""
        path = segment_path(self.directory, self.stem, seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            _write_all(fd, [MAGIC, *frame([self.header])])
            if self.sync:
                os.fdatasync(fd)
                _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._writing_seq = seq

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"wal-{self.stem}", daemon=True
        )
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------

    @property
    def segment(self) -> int:
        """The segment the writer is writing."""
        return self._writing_seq

    @property
    def last_lsn(self) -> int:
        return self._lsn

    def append(self, parts: Sequence[Buffer]) -> int:
        """Queue one record (its payload is the concatenation of ``parts``, which must not
        change until the record is durable); returns its sequence number."""
        with self._cond:
            if self._closed:
                raise WalError(f"the log of {self.stem!r} is closed")
            self._lsn += 1
            self._queue.append(_Record(self._lsn, parts))
            self._cond.notify()
            return self._lsn

    def rotate(self) -> int:
        """Send every later append to a new segment; returns the cut's number, for
        :meth:`checkpoint`. Call it where no append can interleave (the caller's lock) to
        get an exact cut."""
        with self._cond:
            if self._closed:
                raise WalError(f"the log of {self.stem!r} is closed")
            self._cuts += 1
            self._queue.append(_Control("rotate", self._cuts))
            self._cond.notify()
            return self._cuts

    def checkpoint(self, cut: int) -> None:
        """Delete the segments holding records appended before rotation ``cut`` (queued: it
        runs after the rotation; a rotation that failed deletes nothing)."""
        with self._cond:
            if self._closed:
                return
            self._queue.append(_Control("checkpoint", cut))
            self._cond.notify()

    def barrier(self, timeout: float | None = None) -> bool:
        """Wait until the writer has handled everything queued so far, records, rotations
        and checkpoints alike (tests take a consistent copy of the files after it)."""
        done = threading.Event()
        with self._cond:
            if self._closed:
                return True
            self._queue.append(_Control("barrier", done=done))
            self._cond.notify()
        return done.wait(timeout)

    def _result(self, lsn: int) -> None:
        """Raise the failure of ``lsn``'s batch, if it failed (call with ``_cond`` held)."""
        for lo, hi, exc in self._failures:
            if lo <= lsn <= hi:
                raise exc

    def wait(self, lsn: int, timeout: float | None = None) -> None:
        """Block until record ``lsn`` is durable; WalError if its batch failed or the wait
        timed out."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= lsn, timeout):
                raise WalError(f"the log of {self.stem!r} did not write record {lsn} in {timeout}s")
            self._result(lsn)

    async def wait_async(self, lsn: int) -> None:
        """:meth:`wait` for an event loop: no thread is held while the batch is written."""
        with self._cond:
            if self._done >= lsn:
                self._result(lsn)
                return
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((lsn, loop, fut))
        await fut

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "segment": self._writing_seq,
                "last_lsn": self._lsn,
                "durable_lsn": self._done,
                "records": self.records,
                "batches": self.batches,
                "syncs": self.syncs,
                "failures": self.failures,
                "bytes": self.bytes,
                "sync": self.sync,
            }

    def close(self) -> None:
        """Write everything queued, then stop the writer and close the file."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.append(_Control("close"))
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def destroy(self) -> None:
        """Close, then delete every segment of this log (and make that durable)."""
        self.close()
        delete_segments(self.directory, self.stem)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue, []
            records: list[_Record] = []
            for item in batch:
                if isinstance(item, _Record):
                    records.append(item)
                    continue
                self._flush(records)
                records = []
                if item.kind == "close":
                    if self._fd >= 0:
                        os.close(self._fd)
                        self._fd = -1
                    self._fail_waiters_after_close()
                    return
                self._control(item)
            self._flush(records)

    def _control(self, item: _Control) -> None:
        if item.kind == "barrier":
            assert item.done is not None
            item.done.set()
            return
        try:
            if item.kind == "rotate":
                self._open_segment(self._writing_seq + 1)
                self._cut_segment[item.seq] = self._writing_seq
            elif item.kind == "checkpoint":
                first_kept = self._cut_segment.pop(item.seq, None)
                if first_kept is None:
                    return  # that rotation failed: the old segments are still needed
                removed = 0
                for seg in list_segments(self.directory).get(self.stem, []):
                    if seg.seq < first_kept:
                        seg.path.unlink(missing_ok=True)
                        removed += 1
                if removed and self.sync:
                    _fsync_dir(self.directory)
        except OSError as exc:
            # A failed rotation: the writer stays on its segment (a later rotation or a
            # failed write opens a new one). A failed checkpoint leaves old segments, which
            # replay harmlessly.
            log.error("log %r: %s failed: %s", self.stem, item.kind, exc)

    def _flush(self, records: list[_Record]) -> None:
        if not records:
            return
        lo, hi = records[0].lsn, records[-1].lsn
        error: WalError | None = None
        try:
            if self._fd < 0:
                self._open_segment(self._writing_seq + 1)
            bufs: list[Any] = []
            size = 0
            for r in records:
                f = frame(r.parts)
                bufs.extend(f)
                size += sum(memoryview(b).nbytes for b in f)
            _write_all(self._fd, bufs)
            if self.sync:
                os.fdatasync(self._fd)
                self.syncs += 1
            self.bytes += size
        except (OSError, ValueError) as exc:
            error = WalError(f"writing the log of {self.stem!r} failed: {exc}")
            self.failures += 1
            log.error("%s", error)
            # The segment may now end in a torn frame: later records go to a fresh one.
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
        self.records += len(records)
        self.batches += 1
        with self._cond:
            self._done = hi
            if error is not None:
                self._failures.append((lo, hi, error))
            self._cond.notify_all()
            ready = [w for w in self._waiters if w[0] <= hi]
            if ready:
                self._waiters = [w for w in self._waiters if w[0] > hi]
        _resolve(ready, lo, error)

    def _fail_waiters_after_close(self) -> None:
        with self._cond:
            waiters, self._waiters = self._waiters, []
        _resolve(waiters, 0, WalError(f"the log of {self.stem!r} was closed"))


def _resolve(
    waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]],
    lo: int,
    error: WalError | None,
) -> None:
    """Wake the async waiters of a finished batch: one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], WalError | None]]] = {}
    for lsn, loop, fut in waiters:
        # Waiters of earlier batches (registered late) succeeded: only this batch failed.
        by_loop.setdefault(loop, []).append((fut, error if lsn >= lo else None))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_set_results, items)


def _set_results(items: list[tuple[asyncio.Future[None], WalError | None]]) -> None:
    for fut, error in items:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


def delete_segments(directory: Path, stem: str, *, sync: bool = True) -> int:
    """Delete every segment of ``stem`` (and fsync the directory); how many were deleted."""
    removed = 0
    for seg in list_segments(directory).get(stem, []):
        seg.path.unlink(missing_ok=True)
        removed += 1
    if removed and sync:
        _fsync_dir(directory)
    return removed


def iter_records(segments: Sequence[Segment]) -> Iterator[tuple[Segment, SegmentRead]]:
    """Read each segment in order (a convenience for replay)."""
    for seg in segments:
        yield seg, read_segment(seg.path)
