"""Observer: op defaults, the 2,000-op ring, stats, inbox rules, and the op log."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.eventlog import AppendLog, ReplayStats
from lakehouse.memory.observer import (
    INBOX_MAX_BODY_BYTES,
    RING_CAPACITY,
    InboxRequest,
    InboxTooLarge,
    ObservedOp,
    Observer,
    sanitize_field,
    validate_inbox,
)


def test_record_fills_defaults_and_requires_endpoint():
    obs = Observer()
    op = obs.record(ObservedOp(endpoint=" /matrix/search "))
    assert op.endpoint == "/matrix/search" and op.source == "mcp"
    assert op.timestamp.endswith("Z") and "T" in op.timestamp
    kept = obs.record(ObservedOp(endpoint="/x", source="scenario", timestamp="2026-05-01T10:00:00Z"))
    assert kept.timestamp == "2026-05-01T10:00:00Z" and kept.source == "scenario"
    for bad in (ObservedOp(), ObservedOp(endpoint="   "), ObservedOp(endpoint="/x", timestamp="yesterday"),
                ObservedOp(endpoint="/x", duration_ms=-1), ObservedOp(endpoint="/x", source="two words")):
        with pytest.raises(ValueError):
            obs.record(bad)
    assert len(obs) == 2


def test_ring_evicts_the_oldest_at_2000():
    assert RING_CAPACITY == 2000
    obs = Observer()
    for i in range(RING_CAPACITY + 1):
        obs.record(ObservedOp(endpoint=f"/op/{i}", success=i % 2 == 0))
    ops = obs.ops()
    assert len(ops) == 2000
    assert ops[0].endpoint == "/op/1" and ops[-1].endpoint == "/op/2000"
    stats = obs.stats()
    assert stats["total"] == 2000
    assert stats["successes"] + stats["failures"] == 2000


def test_stats_shape_and_recent_scenarios():
    obs = Observer()
    for i in range(12):
        obs.record(ObservedOp(endpoint=f"/s/{i}", source="scenario", success=True))
    obs.record(ObservedOp(endpoint="/m", source="mcp", success=False, error="boom"))
    obs.record(ObservedOp(endpoint="/w", source="workflow", success=True))
    st_ = obs.stats()
    assert st_["total"] == 14 and st_["successes"] == 13 and st_["failures"] == 1
    assert st_["by_source"] == {"scenario": 12, "mcp": 1, "workflow": 1}
    recent = st_["recent_scenario_ops"]
    assert len(recent) == 10
    assert [r["endpoint"] for r in recent] == [f"/s/{i}" for i in range(11, 1, -1)]  # newest first
    assert set(recent[0]) >= {"endpoint", "source", "timestamp", "success", "duration_ms"}


def test_op_log_replay_tolerates_corruption(tmp_path):
    log = tmp_path / "observer" / "ops.jsonl"
    obs = Observer(log)
    obs.load()
    obs.record(ObservedOp(endpoint="/a", success=True))
    obs.close()
    # 1 valid + 1 corrupt + 1 valid (with a field from a newer writer) + a torn last line
    with open(log, "ab") as fh:
        fh.write(b"{corrupt\n")
        fh.write(orjson.dumps({"endpoint": "/b", "source": "scenario", "future_field": 1}) + b"\n")
        fh.write(b'{"endpoint": "/c", "sou')
    again = Observer(log)
    stats = again.load()
    assert [op.endpoint for op in again.ops()] == ["/a", "/b"]
    assert stats.skipped == 2 and again.stats()["replay_skipped"] == 2
    again.record(ObservedOp(endpoint="/d"))
    again.close()
    third = Observer(log)
    third.load()
    assert [op.endpoint for op in third.ops()] == ["/a", "/b", "/d"]


def test_replay_keeps_the_newest_2000(tmp_path):
    log = tmp_path / "ops.jsonl"
    log.write_bytes(b"".join(orjson.dumps({"endpoint": f"/{i}"}) + b"\n" for i in range(2100)))
    obs = Observer(log)
    obs.load()
    assert len(obs) == 2000 and obs.ops()[0].endpoint == "/100"


def test_persist_failure_is_not_fatal(tmp_path, monkeypatch):
    obs = Observer(tmp_path / "ops.jsonl")
    obs.load()

    def broken(self, record):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(AppendLog, "write", broken)
    obs.record(ObservedOp(endpoint="/still-here"))
    assert len(obs) == 1 and obs.stats()["persist_failures"] == 1


# -- inbox ------------------------------------------------------------------------------------


def test_inbox_body_limit_is_8_kib():
    ok = validate_inbox(InboxRequest(type="email", body="x" * INBOX_MAX_BODY_BYTES))
    assert len(ok.body) == 8192
    with pytest.raises(InboxTooLarge):
        validate_inbox(InboxRequest(type="email", body="x" * (INBOX_MAX_BODY_BYTES + 1)))
    # bytes, not characters: 4,097 two-byte characters are 8,194 bytes
    with pytest.raises(InboxTooLarge):
        validate_inbox(InboxRequest(type="sms", body="é" * 4097))


@pytest.mark.parametrize(
    "req, message",
    [
        (InboxRequest(type="fax", body="hi"), "type"),
        (InboxRequest(type="", body="hi"), "type"),
        (InboxRequest(type="EMAIL", body="hi"), "type"),
        (InboxRequest(type="email", body=""), "body"),
        (InboxRequest(type="email", body=" \n "), "body"),
        (InboxRequest(type="sms", body="hi", priority="critical"), "priority"),
        (InboxRequest(type="sms", body="hi", priority="URGENT"), "priority"),
    ],
)
def test_inbox_validation(req, message):
    with pytest.raises(ValueError, match=message):
        validate_inbox(req)


def test_inbox_priority_default_and_sanitising():
    msg = validate_inbox(
        InboxRequest(
            type="email",
            body="need 3 forklift operators\r\ntonight",
            sender="alice@example.com\r\nBcc: evil@example.com",
            subject="s" * 300,
            tag="surge\n",
        )
    )
    assert msg.priority == "medium"
    assert msg.sender == "alice@example.comBcc: evil@example.com"
    assert len(msg.subject) == 256 and msg.tag == "surge"
    assert msg.body == "need 3 forklift operators\r\ntonight"  # the body is kept as sent
    assert "\n" not in msg.summary() and "\r" not in msg.summary()


@given(st.text(max_size=600))
def test_sanitize_field_property(value):
    out = sanitize_field(value)
    assert "\r" not in out and "\n" not in out and len(out) <= 256
    assert out == value.replace("\r", "").replace("\n", "")[:256]


def test_inbox_listing_by_priority_then_arrival(tmp_path):
    obs = Observer(tmp_path / "ops.jsonl")
    obs.load()
    for i, prio in enumerate(["low", "urgent", "", "high", "urgent", "medium"]):
        obs.record_inbox(InboxRequest(type="email" if i % 2 else "sms", body=f"m{i}", priority=prio))
    listed = [(m.priority, m.body) for m in obs.inbox()]
    assert listed == [("urgent", "m1"), ("urgent", "m4"), ("high", "m3"),
                      ("medium", "m2"), ("medium", "m5"), ("low", "m0")]
    assert [m.body for m in obs.inbox(priority="urgent")] == ["m1", "m4"]
    assert [m.body for m in obs.inbox(type_="sms")] == ["m4", "m2", "m0"]
    assert len(obs.inbox(limit=2)) == 2
    for kw in ({"priority": "nope"}, {"type_": "fax"}, {"limit": 0}):
        with pytest.raises(ValueError):
            obs.inbox(**kw)
    op = obs.ops()[0]
    assert op.source == "inbox" and op.success and op.endpoint == "/observer/inbox"
    obs.close()
    # the inbox comes back with the ring after a restart
    again = Observer(tmp_path / "ops.jsonl")
    again.load()
    assert [(m.priority, m.body) for m in again.inbox()] == listed


# -- the append log itself ----------------------------------------------------------------------


def test_append_log_refuses_newlines_and_counts_skips(tmp_path):
    log = AppendLog(tmp_path / "x.jsonl")
    with pytest.raises(ValueError):
        log.append(b'{"a":\n1}')
    log.append({"a": 1})
    log.append(b'{"b":2}')
    log.close()
    (tmp_path / "x.jsonl").write_bytes((tmp_path / "x.jsonl").read_bytes() + b"\n\n[1]\n")
    stats = ReplayStats()
    assert [r for _, r in log.replay(stats)] == [{"a": 1}, {"b": 2}]
    assert (stats.lines, stats.decoded, stats.skipped) == (3, 2, 1)
    assert list(AppendLog(tmp_path / "missing.jsonl").replay()) == []


def test_two_processes_appending_never_interleave(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "shared.jsonl"
    script = (
        "import sys; from lakehouse.eventlog import AppendLog\n"
        "log = AppendLog(sys.argv[1])\n"
        "for i in range(300): log.append({'p': sys.argv[2], 'i': i, 'pad': 'x' * (i * 97 % 20000)})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)]) for n in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    records = [r for _, r in AppendLog(path).replay()]
    assert len(records) == 900
    for n in range(3):
        assert [r["i"] for r in records if r["p"] == str(n)] == list(range(300))
