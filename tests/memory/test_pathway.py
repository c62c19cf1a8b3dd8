"""PathwayStore: trace operations, history walks, search, and the JSONL event log."""

from __future__ import annotations

import itertools
import threading

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.memory.pathway import (
    HistoryCycleError,
    PathwayStore,
    TraceConflict,
    TraceNotFound,
    compact_json,
)


def make_store(path=None) -> PathwayStore:
    ticks = itertools.count(1_000)
    uids = (f"u{i}" for i in itertools.count(1))
    store = PathwayStore(path, clock=lambda: next(ticks), new_uid=lambda: next(uids))
    store.load()
    return store


def test_add_fills_every_field():
    s = make_store()
    t = s.add('{"query": "forklift", "n": 3}', tags=["fill", "mke"])
    wire = orjson.loads(orjson.dumps(t.to_json()))
    assert wire == {
        "uid": "u1",
        "content": {"query": "forklift", "n": 3},
        "created_at_ns": 1000,
        "updated_at_ns": 1000,
        "retired": False,
        "replay_count": 0,
        "tags": ["fill", "mke"],
    }  # no predecessor_uid: omitted when empty, like the reference


@pytest.mark.parametrize("bad", ["", "   ", "{", "{'a': 1}", "[1,]", "nan", '{"a": 1} x'])
def test_invalid_content_is_refused_and_nothing_changes(bad):
    s = make_store()
    with pytest.raises(ValueError, match="content"):
        s.add(bad)
    assert len(s) == 0


def test_content_kept_token_for_token():
    # big integers, exponents and escapes are not re-encoded (raw JSON, like json.RawMessage)
    raw = '{ "big": 123456789012345678901234567890, "e": 1e5, "s": "caf\\u00e9" }'
    assert compact_json(raw) == b'{"big":123456789012345678901234567890,"e":1e5,"s":"caf\\u00e9"}'


def test_add_idempotent_bumps_replay_count_and_keeps_content():
    s = make_store()
    t, replayed = s.add_idempotent("job-1", '{"v": 1}', tags=["a"])
    assert not replayed and t.replay_count == 0 and t.uid == "job-1"
    t2, replayed = s.add_idempotent("job-1", '{"v": 2}', tags=["b"])
    assert replayed and t2.replay_count == 1
    assert t2.content == b'{"v":1}' and t2.tags == ("a",)
    t3, _ = s.add_idempotent("job-1", '{"v": 3}')
    assert t3.replay_count == 2 and len(s) == 1


@pytest.mark.parametrize("uid", ["", "a/b", "x\ny", "z" * 257])
def test_add_idempotent_refuses_bad_uids(uid):
    with pytest.raises(ValueError, match="uid"):
        make_store().add_idempotent(uid, "1")


def test_update_replaces_content_under_the_same_uid():
    s = make_store()
    t = s.add('{"v": 1}', tags=["keep"])
    u = s.update(t.uid, '{"v": 2}')
    assert u.uid == t.uid and u.content == b'{"v":2}'
    assert u.created_at_ns == t.created_at_ns and u.updated_at_ns > t.updated_at_ns
    assert u.tags == ("keep",)  # tags=None keeps them
    assert s.update(t.uid, "3", tags=[]).tags == ()
    with pytest.raises(TraceNotFound):
        s.update("nope", "1")


def test_update_of_a_retired_trace_is_a_conflict():
    s = make_store()
    t = s.add("1")
    s.retire(t.uid)
    with pytest.raises(TraceConflict):
        s.update(t.uid, "2")
    assert s.get(t.uid).content == b"1"


def test_revision_chain_of_three_walked_backwards():
    s = make_store()
    a = s.add('{"v": "a"}')
    b = s.revise(a.uid, '{"v": "b"}')
    c = s.revise(b.uid, '{"v": "c"}')
    assert (b.predecessor_uid, c.predecessor_uid) == (a.uid, b.uid)
    assert len({a.uid, b.uid, c.uid}) == 3
    h = s.history(c.uid)
    assert [t.uid for t in h.traces] == [c.uid, b.uid, a.uid]
    assert [t.content_value["v"] for t in h.traces] == ["c", "b", "a"]
    assert not h.truncated
    assert [t.uid for t in s.history(a.uid).traces] == [a.uid]
    # the predecessor is not retired by a revision
    assert not s.get(a.uid).retired


def test_revise_keeps_the_predecessors_tags_unless_new_ones_are_given(tmp_path):
    log = tmp_path / "events.jsonl"
    s = make_store(log)
    a = s.add('{"v": 1}', ["fill", "night"])
    kept = s.revise(a.uid, '{"v": 2}')
    assert kept.tags == ("fill", "night")
    replaced = s.revise(kept.uid, '{"v": 3}', ["day"])
    assert replaced.tags == ("day",)
    cleared = s.revise(replaced.uid, '{"v": 4}', [])
    assert cleared.tags == ()
    # a revision stays findable under the tags its history was filed under
    assert [t.uid for t in s.search(tags=["night"]).traces] == [kept.uid, a.uid]
    # the event carries the tags the trace got: a replay needs no rule to restore them
    events = [orjson.loads(x) for x in log.read_bytes().splitlines()]
    assert events[1]["op"] == "revise" and events[1]["trace"]["tags"] == ["fill", "night"]
    s.close()
    again = PathwayStore(log)
    again.load()
    assert again.get(kept.uid).tags == ("fill", "night") and again.get(cleared.uid).tags == ()


def test_revise_needs_an_existing_predecessor():
    s = make_store()
    with pytest.raises(TraceNotFound, match="predecessor"):
        s.revise("ghost", "1")
    assert len(s) == 0


def test_history_of_unknown_uid():
    with pytest.raises(TraceNotFound):
        make_store().history("nope")


def _write_log(path, events):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def _trace(uid, pred="", content=1):
    t = {"uid": uid, "content": content, "created_at_ns": 1, "updated_at_ns": 1,
         "retired": False, "replay_count": 0}
    if pred:
        t["predecessor_uid"] = pred
    return t


def test_hand_made_cycle_is_detected(tmp_path):
    log = tmp_path / "events.jsonl"
    _write_log(log, [
        {"op": "add", "trace": _trace("a", pred="c")},
        {"op": "revise", "trace": _trace("b", pred="a")},
        {"op": "revise", "trace": _trace("c", pred="b")},
        {"op": "add", "trace": _trace("self", pred="self")},
    ])
    s = PathwayStore(log)
    assert s.load().applied == 4
    with pytest.raises(HistoryCycleError, match="cycle"):
        s.history("c")
    with pytest.raises(HistoryCycleError):
        s.history("self")


def test_missing_predecessor_truncates_history(tmp_path):
    log = tmp_path / "events.jsonl"
    _write_log(log, [
        {"op": "revise", "trace": _trace("b", pred="lost")},
        {"op": "revise", "trace": _trace("c", pred="b")},
    ])
    s = PathwayStore(log)
    s.load()
    h = s.history("c")
    assert [t.uid for t in h.traces] == ["c", "b"]
    assert h.truncated and h.missing_uid == "lost"
    assert h.to_json()["truncated"] is True


def test_retired_traces_are_excluded_from_search_but_visible_to_get_and_history():
    s = make_store()
    a = s.add('{"role": "forklift operator"}')
    b = s.revise(a.uid, '{"role": "forklift operator, OSHA-30"}')
    assert {t.uid for t in s.search("forklift").traces} == {a.uid, b.uid}
    r = s.retire(a.uid)
    assert r.retired and r.updated_at_ns > a.updated_at_ns
    assert [t.uid for t in s.search("forklift").traces] == [b.uid]
    assert s.get(a.uid).retired
    assert [t.uid for t in s.history(b.uid).traces] == [b.uid, a.uid]
    assert s.retire(a.uid) == s.get(a.uid)  # idempotent
    assert s.stats()["active"] == 1 and s.stats()["retired"] == 1
    with pytest.raises(TraceNotFound):
        s.retire("nope")


def test_search_text_tags_limit_and_order():
    s = make_store()
    s.add('{"role": "Forklift Operator", "city": "Milwaukee"}', tags=["fill"])
    s.add('{"role": "forklift operator", "city": "Detroit"}', tags=["fill", "urgent"])
    s.add('{"role": "Welder", "note": "forklift certified"}')
    s.add('["CNC", 5]', tags=["urgent"])
    assert s.search("FORKLIFT").total == 3
    assert [t.uid for t in s.search("forklift milwaukee").traces] == ["u1"]  # every term
    assert [t.uid for t in s.search(tags=["fill"]).traces] == ["u2", "u1"]  # newest first
    assert [t.uid for t in s.search("forklift", tags=["fill", "urgent"]).traces] == ["u2"]
    assert [t.uid for t in s.search("cnc").traces] == ["u4"]
    assert [t.uid for t in s.search("5").traces] == ["u4"]  # scalar values are text too
    assert s.search("city").total == 2  # keys are searchable
    r = s.search(limit=2)
    assert len(r.traces) == 2 and r.total == 4
    assert s.search("nothing-like-this").total == 0
    for bad in (0, -1, 1001, True):
        with pytest.raises(ValueError, match="limit"):
            s.search(limit=bad)


def test_replay_restores_the_exact_state(tmp_path):
    log = tmp_path / "sub" / "events.jsonl"  # parent created on first write
    s = make_store(log)
    a = s.add('{"v": 1}', tags=["x"])
    b = s.revise(a.uid, '{"v": 2}')
    s.add_idempotent("k", '"first"')
    s.add_idempotent("k", '"second"')
    s.update(a.uid, '{"v": 10}', tags=["y"])
    s.retire(b.uid)
    s.close()
    again = PathwayStore(log)
    report = again.load()
    assert report.applied == 6 and report.skipped == 0
    assert {u: again.get(u) for u in ("u1", "u2", "k")} == {u: s.get(u) for u in ("u1", "u2", "k")}
    lines = [orjson.loads(x) for x in log.read_bytes().splitlines()]
    assert [e["op"] for e in lines] == ["add", "revise", "add", "replay", "update", "retire"]
    assert lines[3] == {"op": "replay", "uid": "k"}
    assert lines[4]["uid"] == "u1" and lines[4]["content"] == {"v": 10}


def test_garbage_line_and_truncated_last_line_are_skipped(tmp_path):
    log = tmp_path / "events.jsonl"
    s = make_store(log)
    a = s.add('{"v": 1}')
    s.add('{"v": 2}')
    s.close()
    good = log.read_bytes()
    first, second = good.splitlines(keepends=True)
    torn = b'{"op":"retire","uid":"u1","at_n'
    log.write_bytes(first + b"\x00garbage{{{\n" + b'["not an event"]\n' + b'{"op":"zap"}\n'
                    + second + torn)
    s2 = PathwayStore(log)
    report = s2.load()
    assert report.applied == 2 and report.skipped == 4
    assert s2.stats()["events_skipped"] == 4 and s2.stats()["total"] == 2
    assert not s2.get(a.uid).retired  # the torn retire never happened
    # the next event starts on a line of its own: the torn line is not glued to it
    s2.retire(a.uid)
    s2.close()
    s3 = PathwayStore(log)
    assert s3.load().applied == 3 and s3.get(a.uid).retired


def test_events_that_cannot_apply_are_skipped(tmp_path):
    log = tmp_path / "events.jsonl"
    _write_log(log, [
        {"op": "add", "trace": _trace("a")},
        {"op": "add", "trace": _trace("a")},  # duplicate uid
        {"op": "update", "uid": "ghost", "content": 1},
        {"op": "retire", "uid": "ghost"},
        {"op": "add"},  # no trace
        {"op": "add", "trace": {"uid": "bad", "content": 1, "tags": [""]}},
        {"op": "update", "uid": "a"},  # no content
        {"op": "replay", "uid": "a"},
    ])
    s = PathwayStore(log)
    report = s.load()
    assert (report.applied, report.skipped) == (2, 6)
    assert s.get("a").replay_count == 1


def test_a_failed_log_write_applies_nothing(tmp_path, monkeypatch):
    from lakehouse.eventlog import AppendLog
    from lakehouse.memory.pathway import PersistError

    s = make_store(tmp_path / "events.jsonl")
    t = s.add("1")

    def full_disk(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AppendLog, "write", full_disk)
    with pytest.raises(PersistError, match="No space"):
        s.add("2")
    with pytest.raises(PersistError):
        s.retire(t.uid)
    assert len(s) == 1 and not s.get(t.uid).retired


def test_concurrent_writers_never_interleave_lines(tmp_path):
    log = tmp_path / "events.jsonl"
    s = PathwayStore(log)
    s.load()
    big = orjson.dumps({"blob": "x" * 100_000}).decode()  # long lines, many page writes

    def worker(n):
        for i in range(25):
            s.add(big if i % 5 == 0 else f'{{"w": {n}, "i": {i}}}')

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 201
    assert all(orjson.loads(x)["op"] == "add" for x in lines[:-1])
    s2 = PathwayStore(log)
    assert s2.load().applied == 200 and len(s2) == 200


# -- a property: whatever the sequence of operations, a replay gives the same store ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "idem", "update", "revise", "retire"]),
        st.integers(0, 7),
        json_values,
        st.none() | st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    ),
    max_size=30,
)


@given(ops)
def test_replay_equals_live_state(tmp_path_factory, sequence):
    log = tmp_path_factory.mktemp("pw") / "events.jsonl"
    s = make_store(log)
    for op, n, value, tags in sequence:
        uids = sorted(s._traces)
        uid = uids[n % len(uids)] if uids else "none"
        content = orjson.dumps(value)
        try:
            if op == "add":
                s.add(content, tags)
            elif op == "idem":
                s.add_idempotent(f"k{n}", content, tags)
            elif op == "update":
                s.update(uid, content, tags)
            elif op == "revise":
                s.revise(uid, content, tags)
            else:
                s.retire(uid)
        except (TraceNotFound, TraceConflict):
            pass
    s.close()
    again = PathwayStore(log)
    assert again.load().skipped == 0
    assert again._traces == s._traces
    assert again.stats()["total"] == s.stats()["total"]
