"""The observer: a witness of operations (ObservedOp), a bounded ring, stats, and the inbox.

Contract section 11. Every observed operation is an :class:`ObservedOp`. :meth:`Observer.record`
fills the defaults (``timestamp`` now, ``source`` "mcp"), appends the op to the JSONL log, then
to a ring of :data:`RING_CAPACITY` ops (the oldest is evicted; a full ring never refuses an op,
ADR-005 5.4). A failed log write is logged and counted, never fatal: the ring is the in-flight
truth (ADR-005 5.1). On start the log is replayed into the ring (the last 2,000 ops);
undecodable lines are skipped and counted.

Stats are computed over the ring: ``total``, ``successes``, ``failures``, ``by_source`` and the
:data:`RECENT_SCENARIO_CAP` most recent ops whose source is ``scenario``.

The inbox (``POST /observer/inbox``) validates a message (:func:`validate_inbox`) and records it
as an op with ``source = "inbox"`` whose ``metadata`` carries the message; the inbox listing is
derived from the ring, so it holds what the ring holds.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from ..eventlog import AppendLog, ReplayStats

__all__ = [
    "ObservedOp",
    "Observer",
    "InboxMessage",
    "InboxTooLarge",
    "validate_inbox",
    "sanitize_field",
    "SOURCES",
    "RING_CAPACITY",
    "RECENT_SCENARIO_CAP",
    "INBOX_MAX_BODY_BYTES",
    "INBOX_FIELD_MAX_CHARS",
    "PRIORITIES",
]

log = logging.getLogger("lakehouse.memory.observer")

RING_CAPACITY = 2000
RECENT_SCENARIO_CAP = 10
INBOX_MAX_BODY_BYTES = 8 * 1024
INBOX_FIELD_MAX_CHARS = 256
#: closed enum, most urgent first (the listing order)
PRIORITIES = ("urgent", "high", "medium", "low")
INBOX_TYPES = ("email", "sms")
#: the sources the reference names; others are accepted (a free-form label)
SOURCES = ("mcp", "scenario", "langfuse", "overseer_correction", "workflow", "inbox")
MAX_SOURCE_CHARS = 64
MAX_ENDPOINT_CHARS = 1024


def now_rfc3339() -> str:
    """UTC now, RFC 3339 with microseconds and a ``Z`` (what Go's time.Time marshals to)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ObservedOp(msgspec.Struct, forbid_unknown_fields=True):
    """One observed operation (the wire body of ``POST /observer/event`` and a log line).

    ``endpoint`` is required; ``timestamp`` (RFC 3339) and ``source`` get defaults.
    """

    endpoint: str = ""
    source: str = ""
    timestamp: str = ""
    success: bool = False
    duration_ms: float = 0.0
    input_summary: str = ""
    output_summary: str = ""
    error: str = ""
    #: the scenario an op of source "scenario" belongs to
    scenario: str = ""
    trace_id: str = ""
    #: free-form details (inbox message, workflow node) kept with the op
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def normalize_op(op: ObservedOp, *, now: Callable[[], str] = now_rfc3339) -> ObservedOp:
    """Check an op and fill its defaults; ``ValueError`` names the bad field."""
    endpoint = op.endpoint.strip()
    if not endpoint:
        raise ValueError("endpoint: required (non-empty)")
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise ValueError(f"endpoint: at most {MAX_ENDPOINT_CHARS} characters")
    source = op.source.strip() or "mcp"
    if len(source) > MAX_SOURCE_CHARS or any(c.isspace() for c in source):
        raise ValueError(f"source: a label of at most {MAX_SOURCE_CHARS} characters, no spaces")
    timestamp = op.timestamp.strip()
    if timestamp:
        try:
            datetime.fromisoformat(timestamp)
        except ValueError as exc:
            raise ValueError(f"timestamp: not an RFC 3339 time: {timestamp!r}") from exc
    else:
        timestamp = now()
    if not op.duration_ms >= 0:  # also refuses NaN
        raise ValueError("duration_ms: must be >= 0")
    return msgspec.structs.replace(op, endpoint=endpoint, source=source, timestamp=timestamp)


# -- the inbox --------------------------------------------------------------------------------


class InboxTooLarge(ValueError):
    """The inbox body is over :data:`INBOX_MAX_BODY_BYTES` (HTTP 413)."""


class InboxRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /observer/inbox``."""

    type: str = ""
    sender: str = ""
    subject: str = ""
    body: str = ""
    priority: str = ""
    tag: str = ""


@dataclass(frozen=True)
class InboxMessage:
    id: str
    received_at: str
    type: str
    sender: str
    subject: str
    body: str
    priority: str
    tag: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "type": self.type,
            "priority": self.priority,
            "sender": self.sender,
            "subject": self.subject,
            "tag": self.tag,
            "body": self.body,
        }

    def summary(self) -> str:
        # Only sanitised fields are interpolated (no CR/LF can forge a second line).
        return (
            f"{self.type} from {self.sender or '(unknown)'} [{self.priority}] "
            f"subject={self.subject!r} tag={self.tag!r} ({len(self.body.encode())} bytes)"
        )


def sanitize_field(value: str, cap: int = INBOX_FIELD_MAX_CHARS) -> str:
    """Strip CR and LF and cap at ``cap`` characters (sender, subject, tag)."""
    return value.replace("\r", "").replace("\n", "")[:cap]


def validate_inbox(
    req: InboxRequest, *, now: Callable[[], str] = now_rfc3339, new_id: Callable[[], str] | None = None
) -> InboxMessage:
    """The contract's inbox rules. ``ValueError`` (400) or :class:`InboxTooLarge` (413)."""
    if req.type not in INBOX_TYPES:
        raise ValueError(f"type: must be 'email' or 'sms', got {req.type!r}")
    if not req.body.strip():
        raise ValueError("body: required (non-empty)")
    size = len(req.body.encode())
    if size > INBOX_MAX_BODY_BYTES:
        raise InboxTooLarge(f"body: {size} bytes is over the {INBOX_MAX_BODY_BYTES}-byte limit")
    priority = req.priority or "medium"
    if priority not in PRIORITIES:
        raise ValueError(f"priority: must be one of {', '.join(PRIORITIES)}, got {req.priority!r}")
    return InboxMessage(
        id=(new_id or (lambda: str(uuid.uuid4())))(),
        received_at=now(),
        type=req.type,
        sender=sanitize_field(req.sender),
        subject=sanitize_field(req.subject),
        body=req.body,
        priority=priority,
        tag=sanitize_field(req.tag),
    )


def _message_from_op(op: ObservedOp) -> InboxMessage | None:
    m = op.metadata or {}
    msg = m.get("inbox")
    if op.source != "inbox" or not isinstance(msg, dict):
        return None
    try:
        return InboxMessage(**{k: str(msg[k]) for k in InboxMessage.__dataclass_fields__})
    except KeyError:
        return None


# -- the observer -----------------------------------------------------------------------------


_OP_FIELDS = frozenset(ObservedOp.__struct_fields__)


def _decode_op(line: bytes) -> ObservedOp:
    # Lenient where the wire is strict: a field this version does not know (a log written by
    # a newer version or another runtime) is dropped, not a reason to lose the op.
    obj = orjson.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    op = msgspec.convert({k: v for k, v in obj.items() if k in _OP_FIELDS}, ObservedOp)
    if not op.endpoint:
        raise ValueError("op without an endpoint")
    return op


class Observer:
    """The ring of observed ops, with an optional JSONL log. Thread-safe; blocking."""

    def __init__(
        self,
        log_path: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        capacity: int = RING_CAPACITY,
    ) -> None:
        if capacity <= 0:
            raise ValueError("capacity: must be positive")
        self._log = AppendLog(log_path, fsync=fsync) if log_path else None
        self._ring: deque[ObservedOp] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.capacity = capacity
        self.replayed = 0
        self.replay_skipped = 0
        self.persist_failures = 0

    def load(self) -> ReplayStats:
        """Reset the ring and replay the log into it (the newest ``capacity`` ops stay)."""
        stats = ReplayStats()
        with self._lock:
            self._ring.clear()
            if self._log is not None:
                for _, op in self._log.replay(stats, _decode_op):
                    self._ring.append(op)
            self.replayed = stats.decoded
            self.replay_skipped = stats.skipped
        return stats

    def close(self) -> None:
        if self._log:
            self._log.close()

    def record(self, op: ObservedOp) -> ObservedOp:
        """Normalise, persist (best effort), then append to the ring; returns the stored op."""
        op = normalize_op(op)
        self._store([op])
        return op

    def record_many(self, ops: Iterable[ObservedOp]) -> list[ObservedOp]:
        """Record several ops in order (all validated before any is stored)."""
        done = [normalize_op(op) for op in ops]
        self._store(done)
        return done

    def _store(self, ops: list[ObservedOp]) -> None:
        ticket = 0
        with self._lock:
            for op in ops:
                if self._log is not None:
                    try:
                        ticket = self._log.write(msgspec.json.encode(op))
                    except OSError as exc:
                        # ADR-005 5.1: the ring is the in-flight truth; keep going.
                        self.persist_failures += 1
                        log.warning("observer: op log write failed: %s", exc)
                self._ring.append(op)
        if ticket and self._log is not None:
            # With fsync: outside the lock, so concurrent recorders share one fsync.
            try:
                self._log.sync(ticket)
            except OSError as exc:
                with self._lock:
                    self.persist_failures += 1
                log.warning("observer: op log fsync failed: %s", exc)

    def record_inbox(self, req: InboxRequest, trace_id: str = "") -> InboxMessage:
        """Validate an inbox message and record it as an op with source ``inbox``."""
        msg = validate_inbox(req)
        self.record(
            ObservedOp(
                endpoint="/observer/inbox",
                source="inbox",
                timestamp=msg.received_at,
                success=True,
                input_summary=msg.summary(),
                trace_id=trace_id,
                metadata={"inbox": msg.to_json()},
            )
        )
        return msg

    def inbox(
        self, priority: str | None = None, type_: str | None = None, limit: int | None = None
    ) -> list[InboxMessage]:
        """Inbox messages still in the ring: most urgent first, oldest first within a priority."""
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"priority: must be one of {', '.join(PRIORITIES)}")
        if type_ is not None and type_ not in INBOX_TYPES:
            raise ValueError("type: must be 'email' or 'sms'")
        if limit is not None and limit <= 0:
            raise ValueError("limit: must be positive")
        with self._lock:
            ops = list(self._ring)
        msgs = [m for op in ops if (m := _message_from_op(op)) is not None]
        msgs = [
            m for m in msgs
            if (priority is None or m.priority == priority) and (type_ is None or m.type == type_)
        ]
        # sort is stable: arrival order is kept within one priority
        msgs.sort(key=lambda m: PRIORITIES.index(m.priority))
        return msgs[:limit] if limit is not None else msgs

    def ops(self) -> list[ObservedOp]:
        """A snapshot of the ring, oldest first."""
        with self._lock:
            return list(self._ring)

    def __len__(self) -> int:
        return len(self._ring)

    def stats(self) -> dict[str, Any]:
        """Stats over the ring (the shape of the reference, plus ring and log counters)."""
        with self._lock:
            ops = list(self._ring)
            persist_failures = self.persist_failures
        successes = sum(1 for op in ops if op.success)
        recent = [op for op in reversed(ops) if op.source == "scenario"][:RECENT_SCENARIO_CAP]
        return {
            "total": len(ops),
            "successes": successes,
            "failures": len(ops) - successes,
            "by_source": dict(Counter(op.source for op in ops)),
            "recent_scenario_ops": [op.to_json() for op in recent],
            "ring_capacity": self.capacity,
            "replayed": self.replayed,
            "replay_skipped": self.replay_skipped,
            "persist_failures": persist_failures,
        }
