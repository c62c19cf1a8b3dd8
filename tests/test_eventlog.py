"""lakehouse.eventlog: with fsync, concurrent appenders share fsyncs (group commit), and a
record is never reported durable before an fsync that began after its write."""

from __future__ import annotations

import os
import threading
import time

import pytest

from lakehouse import eventlog
from lakehouse.eventlog import AppendLog
from lakehouse.memory.pathway import PathwayStore, PersistError


def slow_fsync(monkeypatch, seen: list[int]):
    real = os.fsync

    def fsync(fd):  # a disk where an fsync takes 5 ms
        time.sleep(0.005)
        real(fd)
        seen.append(fd)

    monkeypatch.setattr(eventlog.os, "fsync", fsync)


def test_concurrent_appends_share_fsyncs(tmp_path, monkeypatch):
    seen: list[int] = []
    slow_fsync(monkeypatch, seen)
    log = AppendLog(tmp_path / "e.jsonl", fsync=True)

    def writer(w: int) -> None:
        for j in range(10):
            log.append({"w": w, "j": j})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    rows = [r for _, r in log.replay()]
    assert len(rows) == 300
    # 300 records; one fsync each would be 300 (plus the one at close).
    assert 1 <= log.syncs < 300 / 4, log.syncs


def test_without_fsync_there_is_none(tmp_path, monkeypatch):
    seen: list[int] = []
    slow_fsync(monkeypatch, seen)
    log = AppendLog(tmp_path / "e.jsonl")
    log.append({"a": 1})
    log.close()
    assert seen == []


def test_a_write_waits_for_an_fsync_that_began_after_it(tmp_path, monkeypatch):
    log = AppendLog(tmp_path / "e.jsonl", fsync=True)
    first = log.write({"a": 1})
    log.sync(first)
    started = threading.Event()
    release = threading.Event()
    real = os.fsync

    def held_fsync(fd):
        started.set()
        release.wait(10)
        real(fd)

    monkeypatch.setattr(eventlog.os, "fsync", held_fsync)
    leader = threading.Thread(target=log.sync, args=(log.write({"a": 2}),))
    leader.start()
    assert started.wait(10)
    # Written while that fsync runs: it must not be covered by it.
    late = log.write({"a": 3})
    done = threading.Event()
    follower = threading.Thread(target=lambda: (log.sync(late), done.set()))
    follower.start()
    time.sleep(0.05)
    assert not done.is_set()
    release.set()
    leader.join(10)
    follower.join(10)
    assert done.is_set()
    log.close()


def test_pathway_reports_a_failed_fsync(tmp_path, monkeypatch):
    store = PathwayStore(tmp_path / "events.jsonl", fsync=True)
    store.load()
    store.add("1")

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(eventlog.os, "fsync", broken)
    with pytest.raises(PersistError, match="fsync failed"):
        store.add("2")
    monkeypatch.undo()
    store.close()
