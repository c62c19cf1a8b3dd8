"""The worker roster validators check artifacts against (contract section 13.3, WorkerLookup).

``[validatord].roster_path`` names a JSONL file, one worker per line. Rows are read
tolerantly, like the reference's ``lookup_jsonl.go``:

* id: ``candidate_id``, else ``worker_id``, else ``id``. An integer id ``7`` becomes
  ``"W-7"`` (the Rust runtime's rule for its int64 ``worker_id``); strings are kept as they
  are. Lookups ignore case (``w-00001`` finds ``W-00001``). A later row with the same id
  replaces an earlier one.
* ``name`` (or ``full_name``, or ``first_name`` + ``last_name``), ``role``, ``city``,
  ``state``: optional; null or empty means "unknown" and the matching check is skipped
  (with a Warning finding).
* active or not, first match wins: ``status`` (a string: ``active`` / ``available`` are
  active, anything else is not); ``active`` (a boolean); ``availability`` (a number: > 0 is
  active, the Rust rule; a string: active unless it is one of ``on assignment``,
  ``unavailable``, ``inactive``, ``terminated``, ``do not use``, ``none``, ``no``,
  ``false``, ``0``). A row with none of these is active.
* ``blacklisted_clients`` (or ``blacklist``): client ids the worker must not be sent to.

Lines that are blank, not JSON, not an object or without an id are skipped and counted in
:attr:`WorkerRoster.skipped`. A path ending in ``.csv`` is read as CSV with the same column
names (so ``lakehouse gen-roster`` output works as is).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Worker", "WorkerRoster", "parse_worker"]

log = logging.getLogger("lakehouse.validation")

_ACTIVE_STATUSES = frozenset({"active", "available"})
_UNAVAILABLE = frozenset(
    {"on assignment", "unavailable", "inactive", "terminated", "do not use", "none", "no", "false", "0"}
)


@dataclass(frozen=True)
class Worker:
    candidate_id: str
    name: str | None = None
    role: str | None = None
    city: str | None = None
    state: str | None = None
    active: bool = True
    #: the status as the row gave it (for messages): "active", "inactive", "On assignment"
    status: str = "active"
    blacklisted_clients: frozenset[str] = frozenset()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _worker_id(row: Mapping[str, Any]) -> str | None:
    for key in ("candidate_id", "worker_id", "id"):
        value = row.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            return f"W-{value}"
        text = _text(value)
        if text:
            return text
    return None


def _activity(row: Mapping[str, Any]) -> tuple[bool, str]:
    status = row.get("status")
    if isinstance(status, str) and status.strip():
        return status.strip().lower() in _ACTIVE_STATUSES, status.strip()
    active = row.get("active")
    if isinstance(active, bool):
        return active, "active" if active else "inactive"
    availability = row.get("availability")
    if isinstance(availability, bool):
        return availability, "active" if availability else "inactive"
    if isinstance(availability, int | float):
        return availability > 0, "active" if availability > 0 else "inactive"
    if isinstance(availability, str) and availability.strip():
        text = availability.strip()
        return text.lower() not in _UNAVAILABLE, text
    return True, "active"


def parse_worker(row: Mapping[str, Any]) -> Worker | None:
    """One roster row as a :class:`Worker`; None when it has no usable id."""
    wid = _worker_id(row)
    if wid is None:
        return None
    name = _text(row.get("name")) or _text(row.get("full_name"))
    if name is None:
        parts = [_text(row.get("first_name")), _text(row.get("last_name"))]
        name = " ".join(p for p in parts if p) or None
    active, status = _activity(row)
    blocked = row.get("blacklisted_clients", row.get("blacklist"))
    if isinstance(blocked, str):
        blocked = [b for b in blocked.replace(";", ",").split(",")]
    clients = frozenset(
        b.strip().casefold() for b in (blocked or []) if isinstance(b, str) and b.strip()
    )
    return Worker(
        candidate_id=wid,
        name=name,
        role=_text(row.get("role")),
        city=_text(row.get("city")),
        state=_text(row.get("state")),
        active=active,
        status=status,
        blacklisted_clients=clients,
    )


class WorkerRoster:
    """Workers by case-insensitive id. An empty roster fails every existence check."""

    def __init__(self, workers: Iterable[Worker] = (), *, skipped: int = 0, source: str = "") -> None:
        self._by_id: dict[str, Worker] = {}
        for w in workers:
            self._by_id[w.candidate_id.casefold()] = w
        self.skipped = skipped
        self.source = source

    def get(self, candidate_id: str) -> Worker | None:
        return self._by_id.get(candidate_id.strip().casefold())

    def __contains__(self, candidate_id: object) -> bool:
        return isinstance(candidate_id, str) and self.get(candidate_id) is not None

    def __len__(self) -> int:
        return len(self._by_id)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> WorkerRoster:
        workers, skipped = [], 0
        for row in rows:
            worker = parse_worker(row) if isinstance(row, Mapping) else None
            if worker is None:
                skipped += 1
            else:
                workers.append(worker)
        return cls(workers, skipped=skipped)

    @classmethod
    def load(cls, path: str | Path) -> WorkerRoster:
        """Read a JSONL (or ``.csv``) roster; blocking, so call it off the event loop.

        A missing or unreadable file raises OSError: a configured roster that cannot be read
        is a start-up error, not an empty roster.
        """
        p = Path(path)
        workers: list[Worker] = []
        skipped = 0
        with p.open("r", encoding="utf-8", newline="") as fh:
            if p.suffix.lower() == ".csv":
                rows: Iterable[Any] = csv.DictReader(fh)
            else:
                rows = _jsonl_rows(fh)
            for row in rows:
                worker = parse_worker(row) if isinstance(row, Mapping) else None
                if worker is None:
                    skipped += 1
                else:
                    workers.append(worker)
        roster = cls(workers, skipped=skipped, source=str(p))
        if skipped:
            log.warning("roster %s: %d unusable rows skipped", p, skipped)
        return roster


def _jsonl_rows(lines: Iterable[str]) -> Iterable[Any]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            yield None
