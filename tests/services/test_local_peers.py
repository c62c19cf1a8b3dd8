"""In-process peers (lakehouse.clients.local) answer as their HTTP clients do, and the
"shared" topology of ``lakehouse up`` serves every daemon's wire from one process."""

from __future__ import annotations

import os

import numpy as np
import orjson
import pytest

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.embedd import EmbeddClient
from lakehouse.clients.local import LocalEmbedd, LocalVectord
from lakehouse.clients.vectord import VectordClient
from lakehouse.services import embedd as embedd_service
from lakehouse.services import vectord as vectord_service
from lakehouse.stack import running_stack


@pytest.fixture
async def vectord_pair(aiohttp_client, config):
    app = vectord_service.create_app(config.replace("vectord", save_min_interval=0.0))
    client = await aiohttp_client(app)
    url = str(client.make_url(""))
    http = VectordClient(client.session, url)
    local = LocalVectord(client.session, url, app)
    await http.create("w", 3, distance="euclidean")
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    await http.add("w", [f"i{j}" for j in range(10)], x, [{"j": j, "s": "é"} if j % 2 else None for j in range(10)])
    return http, local, x


async def _status(aw) -> int | None:
    with pytest.raises(UpstreamError) as exc:
        await aw
    return exc.value.status


async def test_local_vectord_answers_like_http(vectord_pair):
    http, local, x = vectord_pair
    for q, kw in ((x[4], {"k": 3}), (x[0] + 0.5, {"k": 4, "exclude_ids": ["i1"]}), (x[9], {"k": 2, "ef": 5})):
        assert await local.search("w", q, **kw) == await http.search("w", q, **kw)
    assert await local.search_batch("w", x[[0, 9]], k=2) == await http.search_batch("w", x[[0, 9]], k=2)
    for item in ("i3", "i4"):
        assert await local.get_item("w", item) == await http.get_item("w", item)
    # the same statuses as vectord's: 404 missing index or item, 400 bad query
    assert await _status(local.search("nope", x[0])) == await _status(http.search("nope", x[0])) == 404
    assert await _status(local.get_item("w", "zz")) == await _status(http.get_item("w", "zz")) == 404
    assert await _status(local.search("w", [1.0, 2.0])) == await _status(http.search("w", [1.0, 2.0])) == 400
    assert await _status(local.search("w", x[0], k=0)) == await _status(http.search("w", x[0], k=0)) == 400
    # everything else still goes over HTTP to the same daemon
    assert (await local.info("w"))["count"] == 10


async def test_local_embedd_answers_like_http(aiohttp_client, config):
    app = embedd_service.create_app(config)
    client = await aiohttp_client(app)
    url = str(client.make_url(""))
    http, local = EmbeddClient(client.session, url), LocalEmbedd(client.session, url, app, chunk_size=2)
    texts = ["forklift operator", "cnc machinist", "picker, night shift"]
    m1, d1, v1 = await http.embed(texts)
    m2, d2, v2 = await local.embed(texts)  # in chunks of 2, like the HTTP client's chunks
    assert (m1, d1) == (m2, d2) and np.array_equal(v1, v2) and v2.dtype == np.float32
    assert await _status(local.embed(["ok", ""])) == await _status(http.embed(["ok", ""])) == 400
    with pytest.raises(ValueError):
        await local.embed("one string")


def test_shared_topology_one_process_every_wire(config):
    cfg = config.replace("up", topology="shared", shared=["vectord", "embedd", "matrixd"])
    for name in ("vectord", "embedd", "matrixd"):
        cfg = cfg.replace(name, port=0)
    import urllib.request

    def call(url: str, body: dict | None = None) -> dict:
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return orjson.loads(resp.read())

    with running_stack(cfg, only=["vectord", "embedd", "matrixd"]) as s:
        pids = {c.proc.pid for c in s.children.values()}
        assert len(pids) == 1
        u = s.urls
        for name in ("vectord", "embedd", "matrixd"):
            assert call(f"{u[name]}/health")["service"] == name
        texts = ["forklift operator in Milwaukee", "CNC machinist in Chicago", "picker in Madison"]
        vecs = call(f"{u['embedd']}/embed", {"texts": texts})["vectors"]
        call(f"{u['vectord']}/vectors/index", {"name": "w", "dimension": len(vecs[0])})
        items = [{"id": f"w{i}", "vector": v, "metadata": {"t": t}} for i, (v, t) in enumerate(zip(vecs, texts, strict=True))]
        call(f"{u['vectord']}/vectors/index/w/add", {"items": items})
        hits = call(f"{u['matrixd']}/matrix/search", {"query_text": texts[1], "corpora": ["w"], "k": 2})["results"]
        assert hits[0]["id"] == "w1" and hits[0]["metadata"] == {"t": texts[1]}
        assert hits[0]["distance"] < 1e-6
    (pid,) = pids
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_matrixd_with_local_peers_uses_them(aiohttp_client, config):
    from lakehouse.services import matrixd as matrixd_service

    peers = {"embedd": embedd_service.create_app(config), "vectord": vectord_service.create_app(config)}
    for app in peers.values():
        await aiohttp_client(app)  # started: their state exists
    app = matrixd_service.create_app(config)
    app[matrixd_service.LOCAL_PEERS] = peers
    await aiohttp_client(app)
    ctx = app[matrixd_service.MATRIX]
    assert isinstance(ctx.embedd, LocalEmbedd) and isinstance(ctx.vectord, LocalVectord)
    alone = matrixd_service.create_app(config)
    await aiohttp_client(alone)
    assert type(alone[matrixd_service.MATRIX].vectord) is VectordClient


def test_default_shared_group_gateway_hands_over_in_process(config):
    # the default [up].shared: embedd, matrixd and the gateway in one process, vectord alone
    cfg = config.replace("up", topology="shared")
    names = ["vectord", "embedd", "matrixd", "gateway"]
    for name in names:
        cfg = cfg.replace(name, port=0)
    import urllib.error
    import urllib.request

    def call(url: str, body: dict | None = None, trace: str | None = None) -> tuple[int, dict, dict]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json", **({"X-Lakehouse-Trace-Id": trace} if trace else {})}
        req = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), orjson.loads(exc.read())

    with running_stack(cfg, only=names) as s:
        pid = {n: c.proc.pid for n, c in s.children.items()}
        assert pid["embedd"] == pid["matrixd"] == pid["gateway"] != pid["vectord"]
        u, gw = s.urls, s.urls["gateway"]
        texts = ["forklift operator in Milwaukee", "CNC machinist in Chicago"]
        status, _, body = call(f"{gw}/v1/embed", {"texts": texts})
        assert status == 200
        vecs = body["vectors"]
        assert call(f"{gw}/v1/vectors/index", {"name": "w", "dimension": len(vecs[0])})[0] in (200, 201)
        items = [{"id": f"w{i}", "vector": v, "metadata": {"t": t}} for i, (v, t) in enumerate(zip(vecs, texts, strict=True))]
        assert call(f"{u['vectord']}/vectors/index/w/add", {"items": items})[0] in (200, 201)
        status, headers, body = call(f"{gw}/v1/matrix/search", {"query_text": texts[1], "corpora": ["w"], "k": 1}, "t-123")
        assert status == 200 and body["results"][0]["id"] == "w1"
        assert headers["X-Lakehouse-Trace-Id"] == "t-123"
        # errors come from the daemon's own middlewares, as over HTTP
        status, _, body = call(f"{gw}/v1/matrix/search", {"query_text": "x", "corpora": ["w"], "k": "ten"})
        assert status == 400 and "error" in body, body
        status, _, body = call(f"{gw}/v1/matrix/nowhere")
        assert status == 404
