"""Where validatord's roster comes from, and loading it again without a restart.

Two sources, set in ``[validatord]`` (at most one):

* ``roster_path``: a JSONL file (``lakehouse gen-roster --format jsonl``) or a ``.csv``
  (``lakehouse gen-roster``), read by :meth:`WorkerRoster.load`;
* ``roster_dataset``: a cataloged dataset (the roster the user ingested), read through
  queryd with ``SELECT *`` page by page (ordered by its id column, so a roster larger than
  queryd's ``max_rows`` still loads). The dataset needs an id column: ``candidate_id``,
  ``worker_id`` or ``id`` (the names :func:`~lakehouse.validation.workers.parse_worker`
  reads); the other columns are read as the JSONL rows are.

:meth:`RosterSource.reload` builds the new roster completely before it replaces the old
one, so a failed reload (file gone, dataset missing, queryd down) leaves the roster in place
and raises :class:`RosterUnavailable` with the HTTP status validatord answers: 404 when the
file or dataset does not exist, 422 when it exists but is not a usable roster, 502 when
queryd cannot be reached or fails, 504 when it times out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from ..clients.base import UpstreamError
from .workers import WorkerRoster

__all__ = ["ID_COLUMNS", "RosterSource", "RosterUnavailable", "load_dataset_roster"]

log = logging.getLogger("lakehouse.validation")

#: the id columns a roster row may carry, in the order parse_worker reads them
ID_COLUMNS = ("candidate_id", "worker_id", "id")
#: rows per queryd page (capped by [queryd].max_rows)
PAGE_ROWS = 10_000


class RosterUnavailable(Exception):
    """The roster could not be (re)loaded; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SqlRunner(Protocol):
    async def sql(self, sql: str, *, trace_id: str | None = None) -> dict[str, Any]: ...


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _upstream_failure(dataset: str, exc: UpstreamError) -> RosterUnavailable:
    if exc.status is None and "timed out" in exc.message:
        return RosterUnavailable(504, f"roster dataset {dataset!r}: queryd {exc.message}")
    if exc.status is None:
        return RosterUnavailable(502, f"roster dataset {dataset!r}: queryd {exc.message}")
    if exc.status == 408:
        return RosterUnavailable(504, f"roster dataset {dataset!r}: queryd timed out: {exc.message}")
    return RosterUnavailable(502, f"roster dataset {dataset!r}: queryd answered {exc.status}: {exc.message}")


async def load_dataset_roster(
    queryd: SqlRunner, dataset: str, *, page_rows: int = PAGE_ROWS, trace_id: str | None = None
) -> WorkerRoster:
    """The roster held by cataloged ``dataset``, read through ``queryd`` (a QuerydClient)."""
    table = _quote(dataset)
    try:
        head = await queryd.sql(f"SELECT * FROM {table} LIMIT 0", trace_id=trace_id)
    except UpstreamError as exc:
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 408:
            # the only thing a bare SELECT * can trip on is the table itself
            first_line = exc.message.strip().splitlines()[0] if exc.message.strip() else ""
            raise RosterUnavailable(
                404,
                f"roster dataset {dataset!r} is not in the catalog: ingest it, or fix "
                f"[validatord].roster_dataset (queryd: {first_line})",
            ) from exc
        raise _upstream_failure(dataset, exc) from exc
    names = [c["name"] for c in head["columns"]]
    id_column = next((c for c in ID_COLUMNS if c in names), None)
    if id_column is None:
        raise RosterUnavailable(
            422,
            f"roster dataset {dataset!r} has no id column ({', '.join(ID_COLUMNS[:-1])} "
            f"or {ID_COLUMNS[-1]}); "
            f"its columns: {', '.join(names) or 'none'}",
        )
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        sql = (
            f"SELECT * FROM {table} ORDER BY {_quote(id_column)} NULLS LAST "
            f"LIMIT {page_rows} OFFSET {offset}"
        )
        try:
            answer = await queryd.sql(sql, trace_id=trace_id)
        except UpstreamError as exc:
            raise _upstream_failure(dataset, exc) from exc
        page_names = [c["name"] for c in answer["columns"]]
        rows.extend(dict(zip(page_names, r, strict=True)) for r in answer["rows"])
        if len(answer["rows"]) < page_rows:
            break
        offset += page_rows
    roster = WorkerRoster.from_rows(rows)
    roster.source = f"dataset {dataset}"
    return roster


class RosterSource:
    """The roster in use, and how to load it again (``[validatord]`` roster settings).

    ``roster`` is replaced whole by a successful :meth:`reload`; readers take it once per
    request, so a request never sees half of two rosters.
    """

    def __init__(
        self,
        *,
        path: Path | None = None,
        dataset: str = "",
        queryd: SqlRunner | None = None,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        if path is not None and dataset:
            raise ValueError("a roster comes from a file or a dataset, not both")
        if dataset and queryd is None:
            raise ValueError("a roster dataset needs a queryd client")
        self.path = path
        self.dataset = dataset
        self.queryd = queryd
        self.page_rows = page_rows
        self.roster = WorkerRoster()
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.path is not None or bool(self.dataset)

    @property
    def description(self) -> str:
        if self.path is not None:
            return f"file {self.path}"
        if self.dataset:
            return f"dataset {self.dataset} (through queryd)"
        return "none"

    async def _load(self) -> WorkerRoster:
        if self.path is not None:
            try:
                roster = await asyncio.to_thread(WorkerRoster.load, self.path)
            except FileNotFoundError as exc:
                raise RosterUnavailable(404, f"roster file {self.path} does not exist") from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise RosterUnavailable(422, f"roster file {self.path} cannot be read: {exc}") from exc
            return roster
        if self.dataset:
            assert self.queryd is not None  # checked in __init__
            return await load_dataset_roster(self.queryd, self.dataset, page_rows=self.page_rows)
        raise RosterUnavailable(
            409,
            "validatord has no roster source: set [validatord].roster_path (a JSONL or CSV file) "
            "or [validatord].roster_dataset (a cataloged dataset)",
        )

    async def reload(self) -> WorkerRoster:
        """Load the roster again; on failure the current one stays and RosterUnavailable says why."""
        async with self._lock:
            try:
                roster = await self._load()
            except RosterUnavailable as exc:
                self.last_error = exc.message
                raise
            self.roster = roster
            self.loaded_at = time.time()
            self.last_error = None
        if roster.skipped:
            log.warning("roster %s: %d unusable rows skipped", self.description, roster.skipped)
        log.info("roster %s: %d workers", self.description, len(roster))
        return roster

    async def load_when_ready(self, *, attempts: int = 30, delay: float = 1.0, max_delay: float = 10.0) -> None:
        """The start-up load of a dataset roster, in the background: queryd may start after
        validatord (nothing orders them), so an unreachable queryd is retried with a growing
        pause; a missing dataset is not (ingest it, then ``POST /roster/reload``). A reload
        that succeeds meanwhile ends the retries."""
        for attempt in range(1, attempts + 1):
            if self.loaded_at is not None:
                return
            try:
                await self.reload()
                return
            except RosterUnavailable as exc:
                if exc.status not in (502, 504) or attempt == attempts:
                    log.warning(
                        "no roster loaded: %s; every worker-existence check fails until "
                        "POST /roster/reload succeeds",
                        exc.message,
                    )
                    return
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)

    def to_json(self) -> dict[str, Any]:
        """What ``GET /roster`` answers (and ``POST /roster/reload`` on success)."""
        return {
            "source": self.description,
            "count": len(self.roster),
            "skipped": self.roster.skipped,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
        }
