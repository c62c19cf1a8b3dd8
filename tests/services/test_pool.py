"""The lean keep-alive client matrixd uses for its hot upstream calls (lakehouse.clients.pool)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from lakehouse.clients.base import ServiceClient, UpstreamError
from lakehouse.clients.pool import HttpPool
from testkit import free_port


@pytest.fixture
async def upstream(aiohttp_server):
    seen: list[tuple[str, str, bytes, dict[str, str]]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, request.path_qs, body, dict(request.headers)))
        return web.json_response({"n": len(body)}, headers={"X-Peer": str(request.transport.get_extra_info("peername")[1])})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"a": ', b"1", b"}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def closing(request: web.Request) -> web.Response:
        resp = web.Response(body=b"bye")
        resp.force_close()
        return resp

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(body=b"late")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def error(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "bad_request", "message": "nope"}}, status=400)

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/closing", closing)
    app.router.add_get("/slow", slow)
    app.router.add_get("/empty", empty)
    app.router.add_get("/error", error)
    server = await aiohttp_server(app)
    return server, seen


async def test_requests_reuse_one_keep_alive_connection(upstream):
    server, seen = upstream
    pool = HttpPool(str(server.make_url("")).rstrip("/"), headers={"Authorization": "Bearer t"})
    peers = set()
    for i in range(5):
        status, headers, body = await pool.request("POST", "/echo", b"x" * i, {"Content-Type": "application/json"}, timeout=5)
        assert status == 200 and body == f'{{"n": {i}}}'.encode()
        peers.add(headers["X-Peer"])
    assert len(peers) == 1  # the same connection every time
    assert all(h["Authorization"] == "Bearer t" for *_, h in seen)
    status, _, body = await pool.request("GET", "/echo", None, {}, timeout=5)
    assert status == 200 and seen[-1][:3] == ("GET", "/echo", b"")
    pool.close()


async def test_chunked_close_delimited_and_empty_answers(upstream):
    server, _ = upstream
    pool = HttpPool(str(server.make_url("")).rstrip("/"))
    assert (await pool.request("GET", "/chunked", None, {}, timeout=5))[2] == b'{"a": 1}'
    assert (await pool.request("GET", "/closing", None, {}, timeout=5))[2] == b"bye"
    assert not pool._idle  # a "Connection: close" answer's connection is not kept
    assert (await pool.request("GET", "/empty", None, {}, timeout=5))[:1] == (204,)
    # after all that, a normal request still works
    assert (await pool.request("GET", "/chunked", None, {}, timeout=5))[0] == 200


async def test_timeout_and_unreachable(upstream):
    server, _ = upstream
    pool = HttpPool(str(server.make_url("")).rstrip("/"))
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/slow", None, {}, timeout=0.2)
    assert not pool._idle  # the timed-out connection is dropped, not reused
    assert (await pool.request("POST", "/echo", b"ok", {}, timeout=5))[0] == 200
    dead = HttpPool(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(OSError):
        await dead.request("GET", "/", None, {}, timeout=5)


async def test_a_connection_closed_by_the_server_while_idle_is_replaced(upstream):
    server, _ = upstream
    pool = HttpPool(str(server.make_url("")).rstrip("/"))
    await pool.request("POST", "/echo", b"1", {}, timeout=5)
    (conn,) = pool._idle
    conn.transport.close()  # as a daemon closing an idle keep-alive connection would
    await asyncio.sleep(0.05)
    assert (await pool.request("POST", "/echo", b"2", {}, timeout=5))[0] == 200


async def test_service_client_through_the_pool_keeps_its_errors(upstream):
    server, _ = upstream
    import aiohttp

    async with aiohttp.ClientSession() as session:
        client = ServiceClient(session, str(server.make_url("")), "peer", timeout=0.3)
        client.pool = HttpPool(client.base_url)
        assert await client.post("/echo", {"a": 1}) == {"n": len(b"{\"a\":1}")}
        with pytest.raises(UpstreamError) as exc:
            await client.get("/error")
        assert exc.value.status == 400 and exc.value.message == "nope"
        with pytest.raises(UpstreamError) as exc:
            await client.get("/slow")
        assert exc.value.status is None and "timed out" in exc.value.message
        down = ServiceClient(session, f"http://127.0.0.1:{free_port()}", "peer")
        down.pool = HttpPool(down.base_url)
        with pytest.raises(UpstreamError) as exc:
            await down.get("/x")
        assert exc.value.status is None and "unreachable" in exc.value.message


def test_only_plain_http():
    with pytest.raises(ValueError):
        HttpPool("https://example.com")
