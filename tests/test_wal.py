"""lakehouse.vectors.wal: frames and torn tails, group commit, rotation and checkpoints, failures."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from lakehouse.vectors import wal as wal_mod
from lakehouse.vectors.wal import MAGIC, WalError, WriteAheadLog, list_segments, read_segment


def payloads(n: int) -> list[bytes]:
    return [f"record {i} ".encode() * (1 + i % 7) for i in range(n)]


def write_log(tmp_path, records: list[bytes], sync: bool = True) -> WriteAheadLog:
    log = WriteAheadLog.create(tmp_path, "t", b"HEADER", sync=sync)
    for r in records:
        log.wait(log.append([r[:3], r[3:]]))  # a record may come in several parts
    return log


def test_records_round_trip_with_the_header_first(tmp_path):
    records = payloads(20)
    log = write_log(tmp_path, records)
    log.close()
    (seg,) = list_segments(tmp_path)["t"]
    assert seg.seq == 1 and seg.path.read_bytes().startswith(MAGIC)
    read = read_segment(seg.path)
    assert read.torn is None
    assert read.records == [b"HEADER", *records]
    assert read.good_bytes == seg.path.stat().st_size


def test_every_truncation_of_the_last_record_drops_exactly_that_record(tmp_path):
    records = payloads(5)
    log = write_log(tmp_path, records)
    log.close()
    path = list_segments(tmp_path)["t"][0].path
    data = path.read_bytes()
    last = 8 + len(records[-1])  # frame header + payload
    whole = len(data) - last
    cut_path = tmp_path / "cut.wal"
    for cut in range(whole, len(data)):
        cut_path.write_bytes(data[:cut])
        read = read_segment(cut_path)
        assert read.records == [b"HEADER", *records[:-1]], cut
        assert read.good_bytes == whole
        assert (read.torn is None) == (cut == whole), cut
    # A flipped bit anywhere in the last frame: caught by the length check or the checksum.
    for pos in range(whole, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        cut_path.write_bytes(bytes(bad))
        read = read_segment(cut_path)
        assert read.records == [b"HEADER", *records[:-1]] and read.torn, pos


def test_a_torn_magic_or_an_empty_file_reads_as_nothing(tmp_path):
    p = tmp_path / "x.0000000001.wal"
    for data in (b"", MAGIC[:3], b"garbage!" * 3):
        p.write_bytes(data)
        read = read_segment(p)
        assert read.records == [] and (read.torn is not None or data == b"")


def test_concurrent_writers_share_fsyncs(tmp_path, monkeypatch):
    real = os.fdatasync

    def slow_fdatasync(fd):  # a disk where an fsync takes 5 ms
        time.sleep(0.005)
        real(fd)

    monkeypatch.setattr(wal_mod.os, "fdatasync", slow_fdatasync)
    log = WriteAheadLog.create(tmp_path, "t", b"H", sync=True)
    syncs_before = log.syncs
    errors = []

    def writer(w: int) -> None:
        try:
            for j in range(20):
                log.wait(log.append([f"{w}:{j}".encode()]), timeout=30)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = log.stats()
    log.close()
    assert stats["records"] == 800 and stats["durable_lsn"] == 800
    # Each writer waits for its own record before the next: with 40 of them, a batch
    # carries many records. One fsync per record would be 800.
    assert stats["syncs"] - syncs_before < 800 / 4, stats
    got = read_segment(list_segments(tmp_path)["t"][0].path).records[1:]
    assert sorted(got) == sorted(f"{w}:{j}".encode() for w in range(40) for j in range(20))
    # Each writer's records are in its order.
    for w in range(40):
        mine = [r for r in got if r.startswith(f"{w}:".encode())]
        assert mine == [f"{w}:{j}".encode() for j in range(20)]


def test_os_mode_does_not_fsync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(wal_mod.os, "fdatasync", lambda fd: calls.append(fd))
    log = write_log(tmp_path, payloads(5), sync=False)
    log.close()
    assert calls == []
    assert len(read_segment(list_segments(tmp_path)["t"][0].path).records) == 6


async def test_async_waiters_are_woken_by_the_writer(tmp_path):
    log = WriteAheadLog.create(tmp_path, "t", b"H", sync=True)
    lsns = [log.append([b"x" * i]) for i in range(1, 50)]
    await asyncio.wait_for(asyncio.gather(*(log.wait_async(n) for n in lsns)), 30)
    assert log.stats()["durable_lsn"] == 49
    log.close()


def test_rotation_cuts_exactly_and_a_checkpoint_deletes_what_is_before(tmp_path):
    log = WriteAheadLog.create(tmp_path, "t", b"H", sync=True)
    for i in range(3):
        log.append([b"a%d" % i])
    cut = log.rotate()
    for i in range(2):
        log.append([b"b%d" % i])
    assert log.barrier(10)
    segs = list_segments(tmp_path)["t"]
    assert [s.seq for s in segs] == [1, 2]
    assert read_segment(segs[0].path).records == [b"H", b"a0", b"a1", b"a2"]
    assert read_segment(segs[1].path).records == [b"H", b"b0", b"b1"]
    log.checkpoint(cut)
    assert log.barrier(10)
    assert [s.seq for s in list_segments(tmp_path)["t"]] == [2]
    log.destroy()
    assert list_segments(tmp_path) == {}


def test_a_failed_write_fails_its_batch_and_the_log_goes_on_in_a_new_segment(tmp_path, monkeypatch):
    log = WriteAheadLog.create(tmp_path, "t", b"H", sync=True)
    log.wait(log.append([b"ok1"]))
    real = wal_mod._write_all
    fail = {"on": True}

    def torn_write(fd, bufs):
        if fail["on"]:
            fail["on"] = False
            os.write(fd, b"\x05\x00\x00")  # part of a frame header, then the disk fails
            raise OSError(28, "No space left on device")
        real(fd, bufs)

    monkeypatch.setattr(wal_mod, "_write_all", torn_write)
    with pytest.raises(WalError, match="No space left"):
        log.wait(log.append([b"lost"]))
    log.wait(log.append([b"ok2"]))
    log.close()
    segs = list_segments(tmp_path)["t"]
    assert [s.seq for s in segs] == [1, 2]
    first, second = (read_segment(s.path) for s in segs)
    assert first.records == [b"H", b"ok1"] and first.torn
    assert second.records == [b"H", b"ok2"] and second.torn is None
    assert log.failures == 1


def test_a_closed_log_refuses_appends(tmp_path):
    log = WriteAheadLog.create(tmp_path, "t", b"H", sync=False)
    log.close()
    with pytest.raises(WalError, match="closed"):
        log.append([b"x"])
