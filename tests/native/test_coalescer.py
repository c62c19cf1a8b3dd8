"""SaveCoalescer: bursts collapse, flush waits, failures are counted and do not stall."""

from __future__ import annotations

import threading
import time

import pytest

from lakehouse import SaveCoalescer


def test_fifty_triggers_during_a_save_give_at_most_two_saves():
    started = threading.Event()
    calls = []

    def save():
        calls.append(time.monotonic())
        started.set()
        time.sleep(0.3)

    c = SaveCoalescer(save)
    c.trigger()
    assert started.wait(5)
    for _ in range(50):
        c.trigger()
    c.flush()
    assert len(calls) == 2
    assert c.stats()["saves"] == 2 and c.stats()["triggers"] == 51
    c.close()


def test_flush_waits_for_a_save_started_after_the_trigger():
    state = {"value": 0, "saved": None}

    def save():
        time.sleep(0.05)
        state["saved"] = state["value"]

    c = SaveCoalescer(save)
    for v in range(1, 20):
        state["value"] = v
        c.trigger()
    c.flush()
    assert state["saved"] == 19
    c.flush()  # nothing new: returns at once
    c.close()


def test_flush_with_nothing_triggered_returns():
    c = SaveCoalescer(lambda: None)
    c.flush(timeout=1)
    assert c.stats()["saves"] == 0
    c.close()


def test_failing_save_is_counted_and_later_saves_run():
    outcomes = iter([RuntimeError("disk full"), None, None])

    def save():
        exc = next(outcomes)
        if exc:
            raise exc

    c = SaveCoalescer(save)
    c.trigger()
    with pytest.raises(RuntimeError, match="disk full"):
        c.flush()
    c.trigger()
    c.flush()
    s = c.stats()
    assert s["failures"] == 1 and s["saves"] == 1 and "disk full" in s["last_error"]
    c.close()


def test_flush_timeout():
    gate = threading.Event()
    c = SaveCoalescer(lambda: gate.wait(5))
    c.trigger()
    with pytest.raises(RuntimeError, match="timed out"):
        c.flush(timeout=0.05)
    gate.set()
    c.flush()
    c.close()


def test_close_runs_pending_saves_and_ignores_later_triggers():
    calls = []
    c = SaveCoalescer(lambda: (calls.append(1), time.sleep(0.05)))
    c.trigger()
    c.trigger()
    c.close()
    n = len(calls)
    assert 1 <= n <= 2
    c.trigger()
    time.sleep(0.1)
    assert len(calls) == n


def test_triggers_from_many_threads():
    count = {"n": 0}
    c = SaveCoalescer(lambda: (count.__setitem__("n", count["n"] + 1), time.sleep(0.01)))
    threads = [threading.Thread(target=lambda: [c.trigger() for _ in range(200)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.flush()
    assert 1 <= count["n"] < 1600
    assert c.stats()["triggers"] == 1600
    c.close()


def test_bad_save_fn():
    with pytest.raises(ValueError):
        SaveCoalescer(42)  # type: ignore[arg-type]
