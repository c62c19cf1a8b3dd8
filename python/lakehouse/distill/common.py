"""What every distillation stage shares: the data root's layout, JSONL reading with line
offsets, whole-file atomic writes, append-only ``_kb`` logs, receipts, and time.

The layout under a data root (the stack's ``data_dir`` by default; docs/distillation.md):

=====================================  ===================================================
``_kb/<source>.jsonl``                 the twelve reference sources (contract 14.2)
``validator/sessions.jsonl`` ...       the project's own logs (paths from the config)
``evidence/YYYY/MM/DD/<source>.jsonl`` EvidenceRecord v1 rows (materialize)
``scored-runs/YYYY/MM/DD/scored.jsonl`` scored runs (score)
``exports/{sft,rag,preference}/``      the exports, ``exports/quarantine/`` what was held back
``_kb/replay_runs.jsonl``              ``replay_run.v1`` rows (replay; append-only)
``_kb/audit_baselines.jsonl``          AuditBaseline rows (audit; append-only, last = newest)
``_kb/promotions.jsonl``               playbook ids already promoted (promote)
``reports/distillation/<run>/*.json``  one receipt per stage run
=====================================  ===================================================
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..eventlog import AppendLog

__all__ = [
    "Layout",
    "Receipt",
    "canonical_json",
    "sha256_file",
    "iter_jsonl",
    "write_jsonl_atomic",
    "append_jsonl",
    "now_rfc3339",
    "parse_time",
    "day_dir",
    "git_sha",
]

_HEX40 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Layout:
    """Paths under one data root."""

    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> Layout:
        return cls(Path(root))

    @property
    def kb(self) -> Path:
        return self.root / "_kb"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence"

    @property
    def scored(self) -> Path:
        return self.root / "scored-runs"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def sft(self) -> Path:
        return self.exports / "sft" / "instruction_response.jsonl"

    @property
    def rag(self) -> Path:
        return self.exports / "rag" / "playbooks.jsonl"

    @property
    def preference(self) -> Path:
        return self.exports / "preference" / "pairs.jsonl"

    def quarantine(self, kind: str) -> Path:
        return self.exports / "quarantine" / f"{kind}.jsonl"

    @property
    def replay_runs(self) -> Path:
        return self.kb / "replay_runs.jsonl"

    @property
    def baselines(self) -> Path:
        return self.kb / "audit_baselines.jsonl"

    @property
    def promotions(self) -> Path:
        return self.kb / "promotions.jsonl"

    @property
    def reports(self) -> Path:
        return self.root / "reports" / "distillation"

    def day_files(self, base: Path) -> list[Path]:
        """Every ``YYYY/MM/DD/*.jsonl`` under ``base``, in path order."""
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.jsonl"))


def canonical_json(value: Any) -> bytes:
    """Key-sorted compact UTF-8 JSON (the bytes ``sig_hash`` is taken of)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str]]:
    """``(line_offset, value, error)`` for each non-blank line (0 = the first line).

    ``value`` is the decoded JSON (None with ``error`` set when the line does not decode).
    A missing file yields nothing. Never raises because of the file's content.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; a missing file is not an error)
    except FileNotFoundError:
        return
    with f:
        for offset, line in enumerate(f):
            if not line.strip():
                continue
            try:
                yield offset, orjson.loads(line), ""
            except orjson.JSONDecodeError:
                yield offset, None, "not JSON"


def _replace_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` whole: a temp file beside it, fsync, rename (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> int:
    """Replace ``path`` with one line per row; the row count."""
    count = [0]

    def write(f: BinaryIO) -> None:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")
            count[0] += 1

    _replace_file(path, write)
    return count[0]


def write_json_atomic(path: Path, value: Any) -> None:
    _replace_file(path, lambda f: f.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"))


def append_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Append rows to ``path``, each one whole ``O_APPEND`` line (mkdir parent)."""
    log = AppendLog(path)
    n = 0
    try:
        for row in rows:
            log.append(row)
            n += 1
    finally:
        log.close()
    return n


def now_rfc3339() -> str:
    """UTC now as RFC 3339 with nine fraction digits (Go's RFC3339Nano, but trailing zeros
    kept so that the text sorts as time)."""
    ns = time.time_ns()
    now = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 / ISO-8601 string, or epoch seconds / milliseconds / nanoseconds, as an
    aware UTC datetime; None when ``value`` is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if v != v or v <= 0:
            return None
        for scale in (1.0, 1e3, 1e6, 1e9):  # s, ms, us, ns
            if v / scale < 1e11:
                try:
                    return datetime.fromtimestamp(v / scale, UTC)
                except (OverflowError, OSError, ValueError):
                    return None
        return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    # Python < 3.11 style limits: trim sub-microsecond digits, accept a trailing Z
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if m:
        text = f"{m.group(1)}.{m.group(2)[:6]}{m.group(3)}"
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def day_dir(base: Path, when: datetime) -> Path:
    """``base/YYYY/MM/DD`` for a UTC time."""
    return base / f"{when.year:04d}" / f"{when.month:02d}" / f"{when.day:02d}"


_GIT_SHA: list[str | None] = []


def git_sha() -> str | None:
    """The commit of the code that runs (40 hex), when it runs from a git checkout; else
    ``$LAKEHOUSE_GIT_SHA`` when that is 40 hex; else None."""
    if not _GIT_SHA:
        sha = os.environ.get("LAKEHOUSE_GIT_SHA", "").strip().lower()
        if not _HEX40.match(sha):
            try:
                out = subprocess.run(
                    ["git", "rev-parse", "HEAD"],
                    cwd=Path(__file__).resolve().parent,
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                )
                sha = out.stdout.strip()
            except (OSError, subprocess.SubprocessError):
                sha = ""
        _GIT_SHA.append(sha if _HEX40.match(sha) else None)
    return _GIT_SHA[0]


@dataclass
class Receipt:
    """What one stage run read, wrote and skipped (written to ``reports/distillation``)."""

    stage: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=now_rfc3339)
    finished_at: str = ""
    git_sha: str | None = field(default_factory=git_sha)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0
    written: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    #: stage-specific counts (per source, per category, ...)
    counts: dict[str, Any] = field(default_factory=dict)
    #: a few skipped lines, "file:line: reason", for a reader to look at
    examples: list[str] = field(default_factory=list)
    #: a stage whose rows are not one-for-one with its input sets its own verdict here
    valid: bool | None = None

    def skip(self, reason: str, where: str = "") -> None:
        self.skipped += 1
        self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1
        if where and len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    def add_input(self, path: Path) -> None:
        if path.is_file():
            self.inputs.append(
                {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
            )

    def add_output(self, path: Path) -> None:
        if path.is_file():
            self.outputs.append(
                {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
            )

    @property
    def validation_pass(self) -> bool:
        """Every line was accounted for: read == written + skipped + already present."""
        if self.valid is not None:
            return self.valid
        return self.read == self.written + self.skipped + int(self.counts.get("unchanged", 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "stage": self.stage,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "git_sha": self.git_sha,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "read": self.read,
            "written": self.written,
            "skipped": self.skipped,
            "skip_reasons": dict(sorted(self.skip_reasons.items())),
            "counts": self.counts,
            "examples": self.examples,
            "validation_pass": self.validation_pass,
        }

    def save(self, layout: Layout) -> Path:
        """Write the receipt as ``reports/distillation/<run_id>/<stage>.json``."""
        self.finished_at = self.finished_at or now_rfc3339()
        path = layout.reports / self.run_id / f"{self.stage}.json"
        write_json_atomic(path, self.to_json())
        return path
