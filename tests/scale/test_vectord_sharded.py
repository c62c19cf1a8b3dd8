"""vectord with sharded indexes (on the in-process backend: no Ray): the same routes and
shapes as a plain index, the same answers, and clear 4xx for what a sharded index refuses."""

from __future__ import annotations

import functools

import numpy as np
import orjson
import pytest

from lakehouse.data.storage import open_store
from lakehouse.scale import LocalBackend
from lakehouse.scale.service import SHARD_BACKEND
from lakehouse.services.vectord import VECTORD, create_app


@pytest.fixture
def vconfig(config):
    return config.replace("vectord", save_min_interval=0.0, durability="os")


def _app(vconfig, sharding: bool = True):
    app = create_app(vconfig)
    if sharding:
        section = vconfig.vectord
        app[SHARD_BACKEND] = lambda: LocalBackend(
            functools.partial(open_store, vconfig), str(vconfig.path(section.wal_dir)),
            durability=section.durability, save_min_interval=0.0,
        )
    return app


async def call(client, method: str, path: str, body=None):
    r = await client.request(method, path, data=None if body is None else orjson.dumps(body))
    raw = await r.read()
    assert r.status != 500, raw
    return r.status, orjson.loads(raw) if raw else None


async def test_without_ray_a_sharded_create_is_a_clear_400(aiohttp_client, vconfig) -> None:
    client = await aiohttp_client(_app(vconfig, sharding=False))
    status, body = await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 3, "shards": 2})
    assert status == 400
    assert "ray_address" in body["error"]["message"] and "lakehouse[ray]" in body["error"]["message"]
    # 1 x 1 is today's index, on the wire too.
    status, body = await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 3, "shards": 1, "replicas": 1})
    assert status == 201 and "shards" not in body
    status, listing = await call(client, "GET", "/vectors/index")
    assert [i["name"] for i in listing["indexes"]] == ["w"]


@pytest.mark.parametrize(
    "extra", [{"shards": 0}, {"replicas": 0}, {"shards": 257}, {"replicas": 9}, {"shards": "2"},
              {"shards": 2.5}, {"shards": True}, {"shards": 2, "dimension": 0}]
)
async def test_bad_layouts_are_400_and_create_nothing(aiohttp_client, vconfig, extra) -> None:
    client = await aiohttp_client(_app(vconfig))
    status, body = await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 3, **extra})
    assert status == 400, body
    status, listing = await call(client, "GET", "/vectors/index")
    assert listing["indexes"] == []


async def test_a_sharded_index_answers_like_a_plain_one(aiohttp_client, vconfig) -> None:
    client = await aiohttp_client(_app(vconfig))
    status, made = await call(client, "POST", "/vectors/index", {"name": "s", "dimension": 4, "shards": 3, "replicas": 2})
    assert status == 201 and made["shards"] == 3 and made["replicas"] == 2
    assert (await call(client, "POST", "/vectors/index", {"name": "p", "dimension": 4}))[0] == 201
    for taken in ({"name": "s", "dimension": 4}, {"name": "p", "dimension": 4, "shards": 2}):
        assert (await call(client, "POST", "/vectors/index", taken))[0] == 409
    rng = np.random.default_rng(0)
    items = [{"id": f"w{i}", "vector": rng.normal(size=4).tolist(), "metadata": {"n": i}} for i in range(60)]
    for name in ("s", "p"):
        status, body = await call(client, "POST", f"/vectors/index/{name}/add", {"items": items})
        assert (status, body) == (200, {"added": 60, "updated": 0})
    for q in rng.normal(size=(5, 4)).tolist():
        query = {"vector": q, "k": 7, "exclude_ids": ["w1", "w2"]}
        a = await call(client, "POST", "/vectors/index/s/search", query)
        b = await call(client, "POST", "/vectors/index/p/search", query)
        assert a[0] == b[0] == 200
        assert [r["distance"] for r in a[1]["results"]] == pytest.approx([r["distance"] for r in b[1]["results"]])
        assert {r["id"] for r in a[1]["results"]} == {r["id"] for r in b[1]["results"]}
    a = await call(client, "POST", "/vectors/index/s/search", {"vectors": rng.normal(size=(2, 4)).tolist(), "k": 3})
    assert a[0] == 200 and [len(r) for r in a[1]["results"]] == [3, 3]
    status, item = await call(client, "GET", "/vectors/index/s/items/w5")
    assert status == 200 and item["metadata"] == {"n": 5}
    assert (await call(client, "GET", "/vectors/index/s/items/nope"))[0] == 404
    status, bad = await call(client, "POST", "/vectors/index/s/add", {"items": [{"id": "z", "vector": [0, 0, 0, 0]}]})
    assert status == 400 and "zero vector" in bad["error"]["message"]
    assert (await call(client, "POST", "/vectors/index/s/search", {"vector": [1, 2], "k": 3}))[0] == 400
    assert (await call(client, "POST", "/vectors/index/s/delete", {"ids": ["w1", "w2", "x"]}))[1] == {"deleted": 2}
    status, info = await call(client, "GET", "/vectors/index/s")
    assert status == 200 and info["count"] == 58 and info["sharding"]["engine"] == "local"
    assert (await call(client, "POST", "/vectors/index/s/merge", {"dest": "p"}))[0] == 400
    status, saved = await call(client, "POST", "/vectors/index/s/save")
    assert status == 200 and saved["saved"] is True
    status, listing = await call(client, "GET", "/vectors/index")
    assert [i["name"] for i in listing["indexes"]] == ["p", "s"]


async def test_a_sharded_index_survives_a_restart_of_vectord(aiohttp_client, vconfig) -> None:
    app = _app(vconfig)
    client = await aiohttp_client(app)
    await call(client, "POST", "/vectors/index", {"name": "s", "dimension": 2, "shards": 2, "replicas": 2})
    items = [{"id": f"w{i}", "vector": [1.0, float(i)]} for i in range(1, 30)]
    assert (await call(client, "POST", "/vectors/index/s/add", {"items": items}))[0] == 200
    await client.close()
    client = await aiohttp_client(_app(vconfig))
    status, info = await call(client, "GET", "/vectors/index/s")
    assert status == 200 and info["count"] == 29 and info["shards"] == 2
    assert (await call(client, "DELETE", "/vectors/index/s"))[0] == 200
    assert (await call(client, "GET", "/vectors/index/s"))[0] == 404
    store = client.server.app[VECTORD].registry.store
    assert not list(store.iter_list("_vectors/_shards/"))


async def test_a_shard_with_no_replica_answering_is_a_503(aiohttp_client, vconfig) -> None:
    client = await aiohttp_client(_app(vconfig))
    await call(client, "POST", "/vectors/index", {"name": "s", "dimension": 2, "shards": 2, "replicas": 2})
    ix = client.server.app[VECTORD].sharded.get("s")
    for handle in ix._handles[1]:
        ix.backend.crash(handle)
    status, body = await call(client, "POST", "/vectors/index/s/search", {"vector": [1, 0], "k": 3})
    assert status == 503 and "shard 1" in body["error"]["message"]
    status, body = await call(client, "POST", "/vectors/index/s/add", {"items": [{"id": f"w{i}", "vector": [1, i]} for i in range(9)]})
    assert status == 503


async def test_an_unreachable_ray_address_is_a_503_within_seconds(aiohttp_client, vconfig, monkeypatch) -> None:
    # ray.init would retry a dead address for minutes: the address is probed first, and the
    # cluster is never joined (a stand-in for the ray extra fails the test if it is).
    import sys
    import time
    import types

    from testkit import free_port

    class NeverJoined:
        def __init__(self, *args, **kwargs):
            raise AssertionError("RayBackend made for an address that does not answer")

    monkeypatch.setitem(sys.modules, "lakehouse.scale.ray_backend", types.SimpleNamespace(RayBackend=NeverJoined))
    monkeypatch.setitem(sys.modules, "ray", None)  # no joined cluster to probe instead
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    client = await aiohttp_client(_app(vconfig.replace("vectord", ray_address=address), sharding=False))
    started = time.monotonic()
    status, body = await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 3, "shards": 2})
    assert status == 503 and time.monotonic() - started < 10
    assert address in body["error"]["message"] and "does not answer" in body["error"]["message"]
    assert (await call(client, "GET", "/vectors/index"))[1]["indexes"] == []


def test_unreachable_says_why_or_none(monkeypatch) -> None:
    import socket
    import sys

    from lakehouse.scale.ray_probe import unreachable
    from testkit import free_port

    monkeypatch.setitem(sys.modules, "ray", None)  # as without the extra: no joined cluster
    assert unreachable("") is None and unreachable("local") is None
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert unreachable(f"127.0.0.1:{listening.getsockname()[1]}") is None
    dead = f"127.0.0.1:{free_port()}"
    assert dead in unreachable(dead) and "does not answer" in unreachable(dead)
    assert "not host:port" in unreachable("127.0.0.1:notaport")
