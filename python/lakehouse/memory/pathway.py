"""Pathway memory: Mem0-style versioned traces with an append-only JSONL event log.

A :class:`Trace` holds opaque JSON ``content`` (any valid JSON document, kept as compact JSON
text, never re-encoded), optional ``tags``, and a ``predecessor_uid`` when it revises an older
trace. :class:`PathwayStore` implements the operations of contract section 10:

======================  =============================================================
``add``                 a new trace with a fresh UUID
``add_idempotent``      a trace under the caller's uid; when the uid exists, its
                        ``replay_count`` is bumped and its content kept
``update``              replace the content (and tags, when given) under the same uid
``revise``              a new trace whose ``predecessor_uid`` is the revised one (it
                        keeps the predecessor's tags unless new ones are given)
``retire``              mark retired: hidden from search, still visible to get/history
``get`` / ``history``   one trace / the chain walked backwards through predecessors
``search``              active traces by text and tags
======================  =============================================================

Persistence (ADR-004): every change is first validated, then appended to the event log as
one JSON line, then applied; a change whose line could not be written is not applied
(:class:`PersistError`). Events are those of the reference, ``{op, trace?, uid?, content?}``
with ``op`` in add / update / revise / retire / replay, plus two fields a reader of the
reference ignores: ``tags`` on update (when the tags change) and ``at_ns`` (the time of an
update or retire, so that a replay restores ``updated_at_ns`` exactly). :meth:`PathwayStore.load`
resets the store and replays the log; undecodable lines and events that cannot apply are
skipped and counted, never fatal.

The store is thread-safe (one lock around validate, persist, apply) and blocking: the
daemon calls it from a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..eventlog import AppendLog, ReplayStats

__all__ = [
    "Trace",
    "History",
    "SearchResult",
    "PathwayStore",
    "TraceNotFound",
    "TraceConflict",
    "HistoryCycleError",
    "PersistError",
    "compact_json",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_UID_CHARS",
    "DEFAULT_SEARCH_LIMIT",
    "MAX_SEARCH_LIMIT",
]

log = logging.getLogger("lakehouse.memory.pathway")

MAX_UID_CHARS = 256
MAX_TAGS = 64
MAX_TAG_CHARS = 256
DEFAULT_SEARCH_LIMIT = 50
MAX_SEARCH_LIMIT = 1000


class TraceNotFound(KeyError):
    """No trace has this uid (HTTP 404)."""

    def __init__(self, uid: str, what: str = "trace") -> None:
        super().__init__(uid)
        self.uid = uid
        self.message = f"{what} {uid!r} not found"

    def __str__(self) -> str:
        return self.message


class TraceConflict(ValueError):
    """The change contradicts the trace's state, e.g. updating a retired trace (HTTP 409)."""


class HistoryCycleError(ValueError):
    """The predecessor chain loops back on itself (only hand-made logs can do this)."""


class PersistError(OSError):
    """The event could not be written to the log; the change was not applied."""


# -- content -----------------------------------------------------------------------------


def compact_json(content: bytes | bytearray | memoryview | str) -> bytes:
    """Validate JSON text and return it compact (one line, tokens untouched).

    Numbers, escapes and key order are kept as written (the reference keeps raw JSON); only
    insignificant whitespace goes. Raises ``ValueError`` for empty or invalid JSON.
    """
    data = content.encode() if isinstance(content, str) else bytes(content)
    if not data.strip():
        raise ValueError("content: must be valid JSON, got an empty value")
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"content: must be valid JSON: {exc}") from exc
    return msgspec.json.format(data, indent=-1)


def _search_text(content: bytes) -> str:
    """The searchable text of a content document: its keys and scalar values, case-folded."""
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                parts.append(str(k))
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None and not isinstance(v, bool):
            parts.append(str(v))

    walk(msgspec.json.decode(content))
    return "\n".join(parts).casefold()


# -- the trace ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """One version of a memory. Immutable: every change makes a new object."""

    uid: str
    #: compact JSON text
    content: bytes
    created_at_ns: int
    updated_at_ns: int
    predecessor_uid: str = ""
    retired: bool = False
    replay_count: int = 0
    tags: tuple[str, ...] = ()
    _text: str = field(default="", repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The wire form of contract section 10 (``predecessor_uid``, ``tags`` omitted if empty)."""
        out: dict[str, Any] = {"uid": self.uid, "content": orjson.Fragment(self.content)}
        if self.predecessor_uid:
            out["predecessor_uid"] = self.predecessor_uid
        out["created_at_ns"] = self.created_at_ns
        out["updated_at_ns"] = self.updated_at_ns
        out["retired"] = self.retired
        out["replay_count"] = self.replay_count
        if self.tags:
            out["tags"] = list(self.tags)
        return out

    @property
    def content_value(self) -> Any:
        """The content decoded into Python values."""
        return msgspec.json.decode(self.content)

    def matches(self, terms: Sequence[str], tags: Iterable[str]) -> bool:
        if any(t not in self.tags for t in tags):
            return False
        return all(term in self._text for term in terms)


class _TraceRecord(msgspec.Struct, omit_defaults=True):
    """A trace as it appears in an event line (lenient: a reader of a foreign log)."""

    uid: str
    content: msgspec.Raw
    created_at_ns: int = 0
    updated_at_ns: int = 0
    predecessor_uid: str = ""
    retired: bool = False
    replay_count: int = 0
    tags: list[str] | None = None


class _Event(msgspec.Struct, omit_defaults=True):
    op: str
    trace: _TraceRecord | None = None
    uid: str = ""
    #: empty = absent (a ``Raw | None`` union does not decode)
    content: msgspec.Raw = msgspec.Raw()
    tags: list[str] | None = None
    at_ns: int | None = None


_event_decoder = msgspec.json.Decoder(_Event)


def _decode_event(line: bytes) -> _Event:
    return _event_decoder.decode(line)


@dataclass(frozen=True)
class History:
    """A predecessor chain, newest first. ``missing_uid`` names the predecessor that was not
    found when the walk stopped early (the chain is then truncated, not an error)."""

    traces: list[Trace]
    missing_uid: str = ""

    @property
    def truncated(self) -> bool:
        return bool(self.missing_uid)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uid": self.traces[0].uid,
            "traces": [t.to_json() for t in self.traces],
            "truncated": self.truncated,
        }
        if self.missing_uid:
            out["missing_uid"] = self.missing_uid
        return out


@dataclass(frozen=True)
class SearchResult:
    traces: list[Trace]
    #: matches before the limit was applied
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"traces": [t.to_json() for t in self.traces], "total": self.total}


# -- validation helpers ---------------------------------------------------------------------


def _check_uid(uid: str, what: str = "uid") -> str:
    if not isinstance(uid, str) or not uid:
        raise ValueError(f"{what}: must be a non-empty string")
    if len(uid) > MAX_UID_CHARS:
        raise ValueError(f"{what}: at most {MAX_UID_CHARS} characters")
    if "/" in uid or any(ord(c) < 0x20 or ord(c) == 0x7F for c in uid):
        # the uid travels in URL paths (/pathway/get/{uid})
        raise ValueError(f"{what}: must not contain '/' or control characters")
    return uid


def _check_tags(tags: Iterable[str] | None) -> tuple[str, ...] | None:
    if tags is None:
        return None
    out: list[str] = []
    for t in tags:
        if not isinstance(t, str) or not t.strip():
            raise ValueError("tags: every tag must be a non-empty string")
        if len(t) > MAX_TAG_CHARS:
            raise ValueError(f"tags: a tag has at most {MAX_TAG_CHARS} characters")
        if t not in out:  # a set, in the caller's order
            out.append(t)
    if len(out) > MAX_TAGS:
        raise ValueError(f"tags: at most {MAX_TAGS} tags")
    return tuple(out)


# -- the store ------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What :meth:`PathwayStore.load` did."""

    applied: int = 0
    #: undecodable lines plus events that could not apply
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)


class PathwayStore:
    """Traces in memory, persisted through an optional JSONL event log.

    ``log_path=None`` keeps everything in memory. ``clock`` and ``new_uid`` are injectable for
    tests (the reference's ``nowFn`` / ``uidFn``).
    """

    def __init__(
        self,
        log_path: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        clock: Callable[[], int] = time.time_ns,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._log = AppendLog(log_path, fsync=fsync) if log_path else None
        self._clock = clock
        self._new_uid = new_uid
        self._lock = threading.RLock()
        self._traces: dict[str, Trace] = {}
        self.last_load = LoadReport()

    @property
    def log_path(self) -> Path | None:
        return self._log.path if self._log else None

    def close(self) -> None:
        if self._log:
            self._log.close()

    # -- persistence ------------------------------------------------------------------

    def load(self) -> LoadReport:
        """Reset the store and replay the event log (a missing file is an empty store)."""
        report = LoadReport()
        with self._lock:
            self._traces = {}
            if self._log is None:
                self.last_load = report
                return report
            stats = ReplayStats()
            for lineno, event in self._log.replay(stats, _decode_event):
                try:
                    self._apply(event)
                except (ValueError, KeyError) as exc:
                    report.skipped += 1
                    if len(report.reasons) < 20:
                        report.reasons.append(f"line {lineno}: {exc}")
                    log.warning("%s: skipping event on line %d: %s", self._log.path, lineno, exc)
                    continue
                report.applied += 1
            report.skipped += stats.skipped
            report.reasons = (stats.skip_reasons or []) + report.reasons
            self.last_load = report
        log.info(
            "pathway: replayed %d events from %s (%d skipped), %d traces",
            report.applied, self._log.path, report.skipped, len(self._traces),
        )
        return report

    def _persist(self, event: _Event) -> int:
        """Write the event's line (the caller holds the lock); the ticket for :meth:`_durable`."""
        if self._log is None:
            return 0
        try:
            return self._log.write(msgspec.json.encode(event))
        except OSError as exc:
            raise PersistError(exc.errno, f"event log write failed: {exc.strerror or exc}") from exc

    def _durable(self, ticket: int) -> None:
        """With fsync: wait (outside the lock, so concurrent changes share one fsync) until
        the line is on disk. The change is applied already; a failed fsync is a PersistError
        all the same: it was not made durable."""
        if self._log is None or not ticket:
            return
        try:
            self._log.sync(ticket)
        except OSError as exc:
            raise PersistError(
                exc.errno, f"event log fsync failed: {exc.strerror or exc} (the change is applied)"
            ) from exc

    def _apply(self, ev: _Event, compacted: bool = False) -> None:
        """Apply one event: the one place where the state changes, for replay and live alike.

        Replay is lenient about history (a trace's predecessor need not exist: history then
        truncates) and strict about identity (a second add of a uid, or a change to an
        unknown uid, cannot apply). ``compacted``: the content is already validated compact
        JSON (a live change), so it is not checked again.
        """

        def content_of(raw: msgspec.Raw) -> bytes:
            return bytes(raw) if compacted else compact_json(bytes(raw))

        if ev.op in ("add", "revise"):
            if ev.trace is None:
                raise ValueError(f"{ev.op} event without a trace")
            r = ev.trace
            _check_uid(r.uid)
            if r.uid in self._traces:
                raise ValueError(f"{ev.op} of uid {r.uid!r} which already exists")
            content = content_of(r.content)
            self._traces[r.uid] = Trace(
                uid=r.uid,
                content=content,
                created_at_ns=r.created_at_ns,
                updated_at_ns=r.updated_at_ns or r.created_at_ns,
                predecessor_uid=r.predecessor_uid,
                retired=r.retired,
                replay_count=r.replay_count,
                tags=_check_tags(r.tags) or (),
                _text=_search_text(content),
            )
            return
        cur = self._traces.get(ev.uid)
        if cur is None:
            raise TraceNotFound(ev.uid)
        if ev.op == "replay":
            self._traces[ev.uid] = replace(cur, replay_count=cur.replay_count + 1)
        elif ev.op == "retire":
            at = ev.at_ns if ev.at_ns is not None else self._clock()
            self._traces[ev.uid] = replace(cur, retired=True, updated_at_ns=at)
        elif ev.op == "update":
            if not len(ev.content):
                raise ValueError("update event without content")
            content = content_of(ev.content)
            tags = _check_tags(ev.tags)
            at = ev.at_ns if ev.at_ns is not None else self._clock()
            self._traces[ev.uid] = replace(
                cur,
                content=content,
                updated_at_ns=at,
                tags=cur.tags if tags is None else tags,
                _text=_search_text(content),
            )
        else:
            raise ValueError(f"unknown op {ev.op!r}")

    def _commit(self, event: _Event) -> int:
        """Persist then apply (the caller holds the lock and has validated the change);
        the ticket the caller passes to :meth:`_durable` once it has let the lock go."""
        ticket = self._persist(event)
        self._apply(event, compacted=True)
        return ticket

    # -- operations -------------------------------------------------------------------

    def _new_trace_event(
        self, op: str, uid: str, content: bytes, tags: tuple[str, ...] | None, pred: str = ""
    ) -> _Event:
        now = self._clock()
        record = _TraceRecord(
            uid=uid,
            content=msgspec.Raw(content),
            created_at_ns=now,
            updated_at_ns=now,
            predecessor_uid=pred,
            tags=list(tags) if tags else None,
        )
        return _Event(op=op, trace=record)

    def add(self, content: bytes | str, tags: Iterable[str] | None = None) -> Trace:
        """A new trace under a fresh UUID."""
        data, tag_t = compact_json(content), _check_tags(tags)
        with self._lock:
            uid = self._new_uid()
            while uid in self._traces:  # only an injected uid function can collide
                uid = self._new_uid()
            ticket = self._commit(self._new_trace_event("add", uid, data, tag_t))
            trace = self._traces[uid]
        self._durable(ticket)
        return trace

    def add_idempotent(
        self, uid: str, content: bytes | str, tags: Iterable[str] | None = None
    ) -> tuple[Trace, bool]:
        """Add under ``uid``; if it exists, bump its ``replay_count`` and keep its content.

        Returns ``(trace, replayed)``. The content is validated either way.
        """
        _check_uid(uid)
        data, tag_t = compact_json(content), _check_tags(tags)
        with self._lock:
            replayed = uid in self._traces
            if replayed:
                ticket = self._commit(_Event(op="replay", uid=uid))
            else:
                ticket = self._commit(self._new_trace_event("add", uid, data, tag_t))
            trace = self._traces[uid]
        self._durable(ticket)
        return trace, replayed

    def update(
        self, uid: str, content: bytes | str, tags: Iterable[str] | None = None
    ) -> Trace:
        """Replace the content (and the tags when given) under the same uid.

        Raises :class:`TraceNotFound`, or :class:`TraceConflict` for a retired trace.
        """
        data, tag_t = compact_json(content), _check_tags(tags)
        with self._lock:
            cur = self._get(uid)
            if cur.retired:
                raise TraceConflict(f"trace {uid!r} is retired; revise it instead")
            ticket = self._commit(
                _Event(
                    op="update",
                    uid=uid,
                    content=msgspec.Raw(data),
                    tags=None if tag_t is None else list(tag_t),
                    at_ns=self._clock(),
                )
            )
            trace = self._traces[uid]
        self._durable(ticket)
        return trace

    def revise(
        self, predecessor_uid: str, content: bytes | str, tags: Iterable[str] | None = None
    ) -> Trace:
        """A new trace (fresh UUID) linked to ``predecessor_uid``, which must exist.

        ``tags`` omitted (None): the new trace carries the predecessor's tags, so a revision
        stays findable by the tags its history was filed under; a list replaces them (``[]``
        clears). The reference leaves this open (contract section 10 lists ``tags`` on the
        trace and nothing on revise); the event log records the tags the new trace got, so
        a reader of the reference's format replays the same trace. The predecessor is left
        as it is (retire it separately to hide it from search).
        """
        data, tag_t = compact_json(content), _check_tags(tags)
        with self._lock:
            pred = self._get(predecessor_uid, "predecessor")
            if tag_t is None:
                tag_t = pred.tags
            uid = self._new_uid()
            while uid in self._traces:
                uid = self._new_uid()
            ticket = self._commit(self._new_trace_event("revise", uid, data, tag_t, predecessor_uid))
            trace = self._traces[uid]
        self._durable(ticket)
        return trace

    def retire(self, uid: str) -> Trace:
        """Mark retired (idempotent: retiring a retired trace changes nothing)."""
        with self._lock:
            cur = self._get(uid)
            if cur.retired:
                return cur
            ticket = self._commit(_Event(op="retire", uid=uid, at_ns=self._clock()))
            trace = self._traces[uid]
        self._durable(ticket)
        return trace

    def _get(self, uid: str, what: str = "trace") -> Trace:
        t = self._traces.get(uid)
        if t is None:
            raise TraceNotFound(uid, what)
        return t

    def get(self, uid: str) -> Trace:
        """One trace, retired or not (:class:`TraceNotFound` when absent)."""
        with self._lock:
            return self._get(uid)

    def history(self, uid: str) -> History:
        """The trace and its predecessors, newest first.

        A predecessor that does not exist ends the walk (``History.missing_uid``); a chain
        that comes back to a trace already walked raises :class:`HistoryCycleError`.
        """
        with self._lock:
            chain = [self._get(uid)]
            seen = {uid}
            while pred := chain[-1].predecessor_uid:
                if pred in seen:
                    path = " -> ".join([t.uid for t in chain] + [pred])
                    raise HistoryCycleError(f"cycle in the predecessor chain: {path}")
                nxt = self._traces.get(pred)
                if nxt is None:
                    return History(chain, missing_uid=pred)
                seen.add(pred)
                chain.append(nxt)
            return History(chain)

    def search(
        self,
        query: str | None = None,
        tags: Iterable[str] | None = None,
        limit: int = DEFAULT_SEARCH_LIMIT,
    ) -> SearchResult:
        """Active (non-retired) traces matching ``query`` and carrying every tag in ``tags``.

        ``query`` is split on whitespace; every term must occur (case-insensitive substring)
        in the content's keys or scalar values. No query and no tags = every active trace.
        Newest first (``updated_at_ns``, then uid), at most ``limit``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise ValueError(f"limit: must be 1..{MAX_SEARCH_LIMIT}, got {limit!r}")
        terms = (query or "").casefold().split()
        tag_t = _check_tags(tags) or ()
        with self._lock:
            hits = [t for t in self._traces.values() if not t.retired and t.matches(terms, tag_t)]
        hits.sort(key=lambda t: (-t.updated_at_ns, t.uid))
        return SearchResult(hits[:limit], len(hits))

    def stats(self) -> dict[str, Any]:
        """``{total, active, retired}`` plus what the last load replayed and skipped."""
        with self._lock:
            total = len(self._traces)
            retired = sum(1 for t in self._traces.values() if t.retired)
        return {
            "total": total,
            "active": total - retired,
            "retired": retired,
            "events_replayed": self.last_load.applied,
            "events_skipped": self.last_load.skipped,
        }

    def __len__(self) -> int:
        return len(self._traces)

