"""vectord under concurrent load: 50 clients mixing adds and searches, then a flush and a
restart; and a large add that must not stall searches."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestServer

from lakehouse.services.vectord import create_app

# 500 x 160 floats: above vectord's inline threshold, so searches go through its batcher.
DIMS = 160


async def post(session, url, body):
    async with session.post(url, data=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)) as r:
        return r.status, orjson.loads(await r.read())


async def run_mixed_load(base: str, clients: int, seconds: float) -> tuple[set[str], list[str], int]:
    """``clients`` closed-loop clients, each 30 % adds (5 fresh ids) and 70 % searches.
    Returns (acknowledged ids, errors, searches answered)."""
    acked: set[str] = set()
    errors: list[str] = []
    searches = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client(c: int) -> None:
            nonlocal searches
            rng = random.Random(c)
            nrng = np.random.default_rng(c)
            n = 0
            while time.monotonic() < stop:
                try:
                    if rng.random() < 0.3:
                        ids = [f"c{c}-{n + i}" for i in range(5)]
                        n += 5
                        x = nrng.standard_normal((5, DIMS)).astype(np.float32)
                        items = [{"id": i, "vector": v, "metadata": {"c": c}} for i, v in zip(ids, x, strict=True)]
                        status, body = await post(session, f"{base}/add", {"items": items})
                        if status == 200 and body == {"added": 5, "updated": 0}:
                            acked.update(ids)
                        else:
                            errors.append(f"add {status} {body}")
                    else:
                        q = nrng.standard_normal(DIMS).astype(np.float32)
                        status, body = await post(session, f"{base}/search", {"vector": q, "k": 10})
                        d = [h["distance"] for h in body.get("results", [])]
                        if status != 200 or len(d) != 10 or d != sorted(d):
                            errors.append(f"search {status} {body}")
                        searches += 1
                except aiohttp.ClientError as exc:
                    errors.append(f"client error {exc!r}")

        await asyncio.gather(*(client(c) for c in range(clients)))
    return acked, errors, searches


async def test_fifty_clients_mixing_adds_and_searches(config):
    cfg = config.replace("vectord", save_min_interval=0.2)
    x = np.random.default_rng(0).standard_normal((500, DIMS)).astype(np.float32)
    async with TestServer(create_app(cfg), host="127.0.0.1") as server:
        base = str(server.make_url("/vectors/index/w"))
        async with aiohttp.ClientSession() as session:
            async with session.post(str(server.make_url("/vectors/index")), json={"name": "w", "dimension": DIMS}) as r:
                assert r.status == 201
            status, _ = await post(session, f"{base}/add", {"items": [{"id": f"p{i}", "vector": x[i]} for i in range(500)]})
            assert status == 200
        acked, errors, searches = await run_mixed_load(base, clients=50, seconds=4.0)
        assert errors == []
        assert len(acked) > 100 and searches > 100, (len(acked), searches)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/save") as r:
                assert r.status == 200
            async with session.get(base) as r:
                info = await r.json()
        assert info["count"] == 500 + len(acked)
        assert info["persistence"]["dirty"] is False and info["persistence"]["failures"] == 0

    # What was acknowledged and flushed is what a restart loads.
    async with TestServer(create_app(cfg), host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        async with session.get(str(server.make_url("/vectors/index/w"))) as r:
            assert (await r.json())["count"] == 500 + len(acked)
        some = sorted(acked)[:: max(1, len(acked) // 20)]
        for item in some:
            async with session.get(str(server.make_url(f"/vectors/index/w/items/{item}"))) as r:
                assert r.status == 200


async def _search_latencies(session, url: str, q: np.ndarray, until: asyncio.Future) -> list[float]:
    out = []
    while not until.done():
        t = time.perf_counter()
        async with session.post(url, data=orjson.dumps({"vector": q, "k": 5}, option=orjson.OPT_SERIALIZE_NUMPY)) as r:
            assert r.status == 200
            await r.read()
        out.append(time.perf_counter() - t)
    return out


@pytest.mark.parametrize("items", [8000])
async def test_a_large_add_does_not_stall_searches(config, items):
    """While one add of thousands of items is decoded and inserted, searches on another
    index keep answering quickly (the add runs on the write pool, the search on the read
    pool, and the large body is decoded off the event loop)."""
    dims = 256
    rng = np.random.default_rng(1)
    big = orjson.dumps(
        {"items": [{"id": f"i{j}", "vector": v} for j, v in enumerate(rng.standard_normal((items, dims)).astype(np.float32))]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    async with TestServer(create_app(config), host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        for name in ("big", "small"):
            async with session.post(str(server.make_url("/vectors/index")), json={"name": name, "dimension": dims}) as r:
                assert r.status == 201
        small = str(server.make_url("/vectors/index/small"))
        await post(session, f"{small}/add", {"items": [{"id": f"s{j}", "vector": v} for j, v in enumerate(rng.standard_normal((500, dims)).astype(np.float32))]})
        q = rng.standard_normal(dims).astype(np.float32)
        baseline_done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.5, baseline_done.set_result, None)
        baseline = await _search_latencies(session, f"{small}/search", q, baseline_done)

        add_done = asyncio.get_running_loop().create_future()

        async def do_add() -> float:
            t = time.perf_counter()
            async with session.post(str(server.make_url("/vectors/index/big/add")), data=big) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["added"] == items
            add_done.set_result(None)
            return time.perf_counter() - t

        add_task = asyncio.ensure_future(do_add())
        during = await _search_latencies(session, f"{small}/search", q, add_done)
        add_seconds = await add_task
    # The add took a while; searches kept flowing through it instead of queueing behind it.
    assert add_seconds > 0.5
    assert len(during) >= 10, (len(during), add_seconds)
    worst = max(during)
    assert worst < max(0.5, add_seconds / 3), (worst, add_seconds, sorted(during)[-5:], max(baseline))


@pytest.mark.slow
async def test_a_10000_by_768_add_in_one_request(config):
    """The body limit and the add path take the largest add the SPEC names, in one request
    (17-digit numbers: the largest form of such a body, about 145 MiB)."""
    x = np.random.default_rng(3).standard_normal((10_000, 768))
    body = orjson.dumps({"items": [{"id": f"w-{j:05d}", "vector": x[j].tolist(), "metadata": {"j": j}} for j in range(10_000)]})
    assert len(body) > 100 << 20
    async with TestServer(create_app(config), host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        async with session.post(str(server.make_url("/vectors/index")), json={"name": "big", "dimension": 768}) as r:
            assert r.status == 201
        async with session.post(str(server.make_url("/vectors/index/big/add")), data=body) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"added": 10_000, "updated": 0}
        status, answer = await post(session, str(server.make_url("/vectors/index/big/search")), {"vector": x[123].astype(np.float32), "k": 1})
        assert status == 200 and answer["results"][0]["id"] == "w-00123"
