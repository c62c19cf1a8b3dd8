"""storaged over HTTP: routes, the key table (400), PUT caps (413), PUT slots (503), listing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.storaged import StoragedClient
from lakehouse.data.storage import open_store
from lakehouse.services.storaged import create_app
from testkit import free_port


@pytest.fixture(params=["local", "s3"])
def any_config(request, config):
    return request.getfixturevalue("s3_config") if request.param == "s3" else config


async def test_put_get_head_delete(aiohttp_client, any_config):
    client = await aiohttp_client(create_app(any_config))
    data = os.urandom(3_000_001)
    r = await client.put("/storage/a/b/c.bin", data=data)
    assert r.status == 200 and r.content_type == "application/json"
    sha = hashlib.sha256(data).hexdigest()
    assert await r.json() == {"key": "a/b/c.bin", "size": len(data), "sha256": sha}
    r = await client.get("/storage/a/b/c.bin")
    assert r.status == 200 and await r.read() == data
    assert r.headers["X-Object-Sha256"] == sha
    r = await client.head("/storage/a/b/c.bin")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
    r = await client.delete("/storage/a/b/c.bin")
    assert r.status == 200 and await r.json() == {"key": "a/b/c.bin", "deleted": True}
    for method in ("GET", "DELETE"):
        r = await client.request(method, "/storage/a/b/c.bin")
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await client.head("/storage/a/b/c.bin")
    assert r.status == 404


ENCODED_BAD_KEYS = {
    "a%00b": "NUL",
    "a%0Db": "CR",
    "a%0Ab": "LF",
    "a%09b": "TAB",
    "%2Fabs": "starts with '/'",
    "a/%2E%2E/b": "'..'",
    "a/../b": "'..'",
    "x" * 1025: "longer than 1024",
    "a//b": "empty path segment",
}


@pytest.mark.parametrize("raw", list(ENCODED_BAD_KEYS))
async def test_key_validation_is_400(aiohttp_client, config, raw):
    client = await aiohttp_client(create_app(config))
    url = URL(str(client.make_url("/storage/")) + raw, encoded=True)
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        r = await client.session.request(method, url, data=b"x" if method == "PUT" else None)
        assert r.status == 400, (method, raw)
        if method != "HEAD":
            assert ENCODED_BAD_KEYS[raw] in (await r.json())["error"]["message"]
    assert open_store(config).list().items == []


async def test_odd_but_valid_keys_round_trip(aiohttp_client, any_config):
    app = create_app(any_config)
    client = await aiohttp_client(app)
    sc = StoragedClient(client.session, str(client.make_url("")).rstrip("/"))
    keys = ["with space", "per%cent", "q?mark", "hash#tag", "ünï/cødé", "a+b=c&d", "o'brien"]
    for key in keys:
        info = await sc.put_object(key, key.encode())
        assert info["key"] == key
        assert await sc.get_object(key) == key.encode()
        assert (await sc.head_object(key))["size"] == len(key.encode())
    listed = [i["key"] async for i in sc.iter_objects()]
    assert listed == sorted(keys, key=lambda k: k.encode())
    for key in keys:
        assert await sc.delete_object(key) is True
    assert await sc.head_object("with space") is None
    assert await sc.delete_object("with space") is False
    with pytest.raises(UpstreamError) as exc:
        await sc.get_object("nope")
    assert exc.value.status == 404


async def test_key_conflict_is_409(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    assert (await client.put("/storage/a", data=b"1")).status == 200
    r = await client.put("/storage/a/b", data=b"2")
    assert r.status == 409 and "is an object" in (await r.json())["error"]["message"]


async def test_put_cap_from_content_length(aiohttp_client, any_config):
    cfg = any_config.replace("storaged", max_put_bytes=1000, max_put_bytes_vectors=5000)
    client = await aiohttp_client(create_app(cfg))
    r = await client.put("/storage/x", data=b"a" * 1001)
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"
    assert (await client.put("/storage/x", data=b"a" * 1000)).status == 200
    # _vectors/ has its own, larger cap
    assert (await client.put("/storage/_vectors/v.lhv", data=b"a" * 4000)).status == 200
    assert (await client.put("/storage/_vectors/v.lhv", data=b"a" * 5001)).status == 413
    store = open_store(cfg)
    assert store.get_bytes("x") == b"a" * 1000
    assert store.head("_vectors/v.lhv").size == 4000


async def test_put_cap_while_streaming(aiohttp_client, any_config):
    """A chunked body (no Content-Length) is cut at the cap: 413 and nothing written."""
    cfg = any_config.replace("storaged", max_put_bytes=100_000)
    client = await aiohttp_client(create_app(cfg))

    async def body():
        for _ in range(50):
            yield b"z" * 10_000

    r = await client.put("/storage/streamed", data=body())
    assert r.status == 413
    assert open_store(cfg).head("streamed") is None
    assert open_store(cfg).list().items == []

    async def small():
        for _ in range(5):
            yield b"z" * 10_000

    r = await client.put("/storage/streamed", data=small())
    assert r.status == 200 and (await r.json())["size"] == 50_000


async def test_truncated_body_is_400_and_nothing_written(aiohttp_client, config, caplog):
    client = await aiohttp_client(create_app(config))
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"PUT /storage/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
    await writer.drain()
    writer.write_eof()  # the client goes away 1,000 bytes into 100,000
    head = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400") or head == b""  # answered 400, or just closed
    await asyncio.sleep(0.2)
    assert open_store(config).list().items == []
    assert not [r for r in caplog.records if "unhandled error" in r.getMessage()]


async def test_fifth_concurrent_put_is_503(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    release = asyncio.Event()
    started = 0

    async def slow_body():
        nonlocal started
        started += 1
        yield b"first"
        await release.wait()
        yield b"rest"

    uploads = [
        asyncio.create_task(client.put(f"/storage/slot{i}", data=slow_body())) for i in range(4)
    ]
    for _ in range(200):  # wait until the four uploads hold their slots
        await asyncio.sleep(0.01)
        if started == 4:
            break
    await asyncio.sleep(0.1)
    r = await client.put("/storage/fifth", data=b"x")
    assert r.status == 503
    assert r.headers["Retry-After"] == "5"
    assert (await r.json())["error"]["code"] == "unavailable"
    release.set()
    for task in uploads:
        assert (await task).status == 200
    # the slots are free again
    assert (await client.put("/storage/fifth", data=b"x")).status == 200


async def test_listing(aiohttp_client, any_config):
    cfg = any_config.replace("storaged", list_limit=3)
    client = await aiohttp_client(create_app(cfg))
    keys = [f"p/{i:02d}" for i in range(7)] + ["q/1"]
    for k in keys:
        assert (await client.put(f"/storage/{k}", data=k.encode())).status == 200
    r = await client.get("/storage", params={"prefix": "p/"})
    page = await r.json()
    assert [i["key"] for i in page["items"]] == ["p/00", "p/01", "p/02"]
    assert page["truncated"] is True and page["next_after"] == "p/02"
    got, after = [], ""
    while True:
        page = await (await client.get("/storage", params={"prefix": "p/", "after": after, "limit": "2"})).json()
        got += [i["key"] for i in page["items"]]
        if not page["truncated"]:
            assert page["next_after"] is None
            break
        after = page["next_after"]
    assert got == keys[:7]
    page = await (await client.get("/storage/", params={"prefix": "q"})).json()
    assert page["items"] == [{"key": "q/1", "size": 3}] and page["truncated"] is False
    for bad in ({"limit": "x"}, {"limit": "0"}, {"limit": "-1"}, {"prefix": "a\nb"}):
        assert (await client.get("/storage", params=bad)).status == 400


async def test_backend_down_is_502_not_500(aiohttp_client, config):
    cfg = config.replace("s3", endpoint=f"http://127.0.0.1:{free_port()}", bucket="lakehouse-x", access_key="a", secret_key="b")
    cfg = cfg.replace("storaged", backend="s3")
    client = await aiohttp_client(create_app(cfg))
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        r = await client.request(method, "/storage/k", data=b"x" if method == "PUT" else None)
        assert r.status == 502, method
    assert (await client.get("/storage")).status == 502


def _serve(config_path: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "serve", "storaged", "--config", str(config_path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_one_gib_put_and_get_stream_in_bounded_memory(tmp_path):
    """A 1 GiB PUT and GET through a real storaged process: its peak RSS stays small."""
    cfg = tmp_path / "lakehouse.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[storaged]\nmax_put_bytes = {2 << 30}\n')
    port = free_port()
    proc = _serve(cfg, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(base + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            chunk = os.urandom(1 << 20)
            digest = hashlib.sha256()

            async def body():
                for _ in range(1024):
                    digest.update(chunk)
                    yield chunk

            t = time.monotonic()
            async with session.put(base + "/storage/big/1gib.bin", data=body()) as r:
                assert r.status == 200, await r.text()
                info = await r.json()
            assert info["size"] == 1 << 30 and info["sha256"] == digest.hexdigest()
            got = hashlib.sha256()
            n = 0
            async with session.get(base + "/storage/big/1gib.bin") as r:
                async for part in r.content.iter_chunked(1 << 20):
                    got.update(part)
                    n += len(part)
            assert n == 1 << 30 and got.hexdigest() == info["sha256"]
            peak = _peak_rss_mb(proc.pid)
            print(f"1 GiB PUT+GET in {time.monotonic() - t:.1f}s, storaged peak RSS {peak:.0f} MB")
            assert peak < 300, f"storaged peak RSS {peak:.0f} MB for a 1 GiB object"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_no_key_produces_a_500(aiohttp_client, config):
    """Fuzz: random keys (controls, escapes, unicode, dots, slashes) are 200, 400 or 409."""
    import random
    from urllib.parse import quote

    client = await aiohttp_client(create_app(config))
    rng = random.Random(0)
    alphabet = ["a", "b", "/", ".", "..", "%", " ", "?", "#", "\x00", "\n", "\t", "\x7f", "é", "ø", "-", "_", "~", "+", "\\", ".lh-tmp-"]
    for _ in range(300):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        url = URL(str(client.make_url("/storage/")) + quote(key, safe="/"), encoded=True)
        for method in ("PUT", "GET", "DELETE"):
            r = await client.session.request(method, url, data=b"x" if method == "PUT" else None)
            assert r.status in (200, 400, 404, 405, 409), (method, key, r.status)
            await r.read()
