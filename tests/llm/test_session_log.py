"""The session log: whole rows under concurrency, disabled when the path is empty."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson

from lakehouse.validation.session_log import SessionLog


def test_concurrent_threads_write_whole_rows(tmp_path: Path):
    log = SessionLog(tmp_path / "deep" / "sessions.jsonl")  # parent dirs are created
    # big rows (well past a pipe's atomic size) make torn writes visible if they happen
    payload = "é" * 20_000
    threads = [
        threading.Thread(
            target=lambda t=t: [log.append({"t": t, "i": i, "p": payload}) for i in range(50)]
        )
        for t in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = log.path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    rows = [orjson.loads(line) for line in lines[:-1]]
    assert len(rows) == 400 and log.written == 400
    assert {(r["t"], r["i"]) for r in rows} == {(t, i) for t in range(8) for i in range(50)}
    assert all(r["p"] == payload for r in rows)


async def test_async_appends_and_read_back(tmp_path: Path):
    log = SessionLog(tmp_path / "s.jsonl")
    await asyncio.gather(*(log.append_async({"n": n, "text": "日本語 — ×"}) for n in range(100)))
    rows = log.read()
    assert sorted(r["n"] for r in rows) == list(range(100))
    assert "日本語 — ×".encode() in log.path.read_bytes()  # UTF-8, not \u escapes


async def test_disabled_log_writes_nothing(tmp_path: Path):
    log = SessionLog(None)
    assert not log.enabled
    assert log.append({"a": 1}) is False and await log.append_async({"a": 1}) is False
    assert log.read() == [] and log.written == 0
    assert SessionLog("").enabled is False


def test_a_failed_write_is_counted_not_raised(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log = SessionLog(blocker / "sessions.jsonl")  # parent is a file: cannot create
    assert log.append({"a": 1}) is False
    assert log.failed == 1


def test_rotation_and_a_torn_last_line(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    log = SessionLog(path)
    assert log.append({"n": 1})
    path.rename(tmp_path / "s.jsonl.1")  # logrotate moves the file away
    assert log.append({"n": 2})  # the next row recreates the path
    assert [r["n"] for r in log.read()] == [2]
    with path.open("ab") as fh:
        fh.write(b'{"n": 3, "torn')  # a writer died mid-row
    assert log.append({"n": 4})
    assert [r["n"] for r in log.read()] == [2, 4]  # the torn row is skipped, n=4 is whole
