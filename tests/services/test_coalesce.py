"""clients.coalesce.Coalescer: calls alike share a call while one is in flight; every caller
gets its own answer or its own error, whatever the arrival pattern."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.clients.coalesce import Coalescer


class Recorder:
    """run(): answers item * 10 (an exception for negative items) after the test lets it."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, list[int]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, key, items):
        self.calls.append((key, list(items)))
        await self.gate.wait()
        return [ValueError(f"bad {i}") if i < 0 else (key, i * 10) for i in items]


async def test_a_lone_call_goes_at_once_and_alone():
    rec = Recorder()
    c = Coalescer(rec.run)
    assert await c.submit("a", 1) == ("a", 10)
    assert rec.calls == [("a", [1])] and (c.calls, c.items) == (1, 1)


async def test_calls_alike_wait_for_the_one_in_flight_then_go_together():
    rec = Recorder()
    rec.gate.clear()
    c = Coalescer(rec.run, max_batch=3)
    first = asyncio.ensure_future(c.submit("a", 1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert rec.calls == [("a", [1])]  # in flight, held at the gate
    rest = [asyncio.ensure_future(c.submit("a", i)) for i in range(2, 7)]
    other = asyncio.ensure_future(c.submit("b", 9))  # another kind does not wait for "a"
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ("b", [9]) in rec.calls
    rec.gate.set()
    assert await first == ("a", 10)
    assert [await r for r in rest] == [("a", i * 10) for i in range(2, 7)]
    assert await other == ("b", 90)
    assert [items for key, items in rec.calls if key == "a"] == [[1], [2, 3, 4], [5, 6]]  # max_batch 3


async def test_each_caller_gets_its_own_error():
    rec = Recorder()
    rec.gate.clear()
    c = Coalescer(rec.run)
    tasks = [asyncio.ensure_future(c.submit("a", i)) for i in (1, -2, 3)]
    await asyncio.sleep(0)
    rec.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == ("a", 10) and results[2] == ("a", 30)
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -2"


async def test_a_run_that_raises_answers_every_caller_of_its_call():
    async def run(key, items):
        raise ConnectionError("down")

    c = Coalescer(run)
    results = await asyncio.gather(*(c.submit("a", i) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    calls = c.calls
    with pytest.raises(ConnectionError):
        await c.submit("a", 1)  # a new call: the failed one left nothing behind
    assert c.calls == calls + 1


async def test_a_caller_that_leaves_does_not_stop_the_others():
    rec = Recorder()
    rec.gate.clear()
    c = Coalescer(rec.run)
    first = asyncio.ensure_future(c.submit("a", 1))
    await asyncio.sleep(0)
    leaving = asyncio.ensure_future(c.submit("a", 2))
    staying = asyncio.ensure_future(c.submit("a", 3))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(first), 0.01)  # the first caller's wait times out...
    rec.gate.set()
    assert await first == ("a", 10)  # ...but its call went on
    assert await staying == ("a", 30)
    assert leaving.cancelled()
    assert [items for _, items in rec.calls] == [[1], [3]]  # the one that left was not sent


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        Coalescer(Recorder().run, max_batch=0)


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(-3, 50), st.integers(0, 3)), max_size=40),
    st.integers(1, 5),
)
def test_any_arrival_pattern_answers_every_caller_with_its_own_item(arrivals, max_batch):
    async def scenario():
        calls: list[tuple[str, list[int]]] = []

        async def run(key, items):
            calls.append((key, list(items)))
            await asyncio.sleep(0)
            return [ValueError(str(i)) if i < 0 else (key, i) for i in items]

        c = Coalescer(run, max_batch=max_batch)
        tasks = []
        for key, item, pause in arrivals:
            tasks.append(asyncio.ensure_future(c.submit(key, item)))
            for _ in range(pause):
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for (key, item, _), result in zip(arrivals, results, strict=True):
            if item < 0:
                assert isinstance(result, ValueError) and str(result) == str(item)
            else:
                assert result == (key, item)
        assert all(len(items) <= max_batch for _, items in calls)
        assert sorted((k, i) for k, items in calls for i in items) == sorted((k, i) for k, i, _ in arrivals)
        assert c._kinds == {}  # nothing left behind

    asyncio.run(scenario())
