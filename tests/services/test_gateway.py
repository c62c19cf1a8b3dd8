"""gateway over HTTP: routing by prefix, streaming, upstream failures, auth, trace ids, Langfuse.

The upstreams are small fake aiohttp apps (one per daemon, each answering with what it
received), so these tests need none of the real daemons.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from yarl import URL

from lakehouse import cli
from lakehouse.config import ConfigError
from lakehouse.services.gateway import LANGFUSE, LOCAL_PEERS, ROUTES, LocalPeer, create_app
from lakehouse.web import TRACE_HEADER, check_bind
from testkit import free_port

MiB = 1 << 20
DAEMONS = sorted(set(ROUTES.values()))

# -- fake upstreams ------------------------------------------------------------------------


class Fake:
    """One fake daemon: records every request and answers with what it saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict] = []
        #: the no-buffering tests: set when the first body chunk arrived / was read back
        self.first_chunk = asyncio.Event()
        self.client_read_first = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1)  # a fake that only streams bodies
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail.endswith("/handshake-up"):
            return await self._handshake_up(request)
        if tail.endswith("/handshake-down"):
            return await self._handshake_down(request)
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        seen = {
            "daemon": self.name,
            "method": request.method,
            "raw_path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "size": size,
            "sha256": digest.hexdigest(),
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
        }
        self.requests.append(seen)
        if tail.endswith("/conflict"):
            resp = web.Response(status=409, text="already there\n", content_type="text/plain")
            resp.headers["X-Custom"] = "kept"
            resp.headers["Keep-Alive"] = "timeout=5"
            resp.headers[TRACE_HEADER] = "upstream-made-this-up"
            resp.set_cookie("a", "1")
            resp.set_cookie("b", "2")
            return resp
        if tail.endswith("/big"):
            n = int(request.query["n"])
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await resp.prepare(request)
            block = bytes(range(256)) * 256  # 64 KiB
            sent = 0
            while sent < n:
                part = block[: n - sent]
                await resp.write(part)
                sent += len(part)
            await resp.write_eof()
            return resp
        if tail.endswith("/broken"):
            resp = web.StreamResponse()
            resp.content_length = 2 * MiB
            await resp.prepare(request)
            await resp.write(b"z" * 300_000)
            request.transport.close()  # dies mid-answer
            return resp
        if tail.endswith("/slow"):
            await asyncio.sleep(float(request.query.get("s", "5")))
        if tail.endswith("/empty"):
            return web.Response(status=204)
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": "12345", "X-Object-Sha256": "ab"})
        return web.json_response(seen)

    async def _handshake_up(self, request: web.Request) -> web.Response:
        # The first chunk must arrive while the client still holds back the rest.
        first = await request.content.readany()
        self.first_chunk.set()
        rest = await request.content.read()
        return web.json_response({"first": len(first), "total": len(first) + len(rest)})

    async def _handshake_down(self, request: web.Request) -> web.StreamResponse:
        # The client must see the first chunk before the rest is even produced.
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        await asyncio.wait_for(self.client_read_first.wait(), 10)
        await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp


@pytest.fixture
async def fakes(aiohttp_server) -> dict[str, Fake]:
    out = {}
    for name in DAEMONS:
        fake = Fake(name)
        server = await aiohttp_server(fake.app())
        fake.url = str(server.make_url("")).rstrip("/")
        fake.server = server
        out[name] = fake
    return out


def wire(config, fakes: dict[str, Fake], **gateway):
    urls = {f"{name}_url": fake.url for name, fake in fakes.items()}
    return config.replace("gateway", **urls, **gateway)


def in_process(app: web.Application, fakes: dict[str, Fake]) -> web.Application:
    """The gateway handing every daemon's requests to its app in this process, as in the
    "shared" topology (the fakes' apps are served too, but their sockets go unused)."""
    app[LOCAL_PEERS].update(
        {
            name: LocalPeer(fake.server.runner.server.request_handler, 1, URL(fake.url).raw_authority)
            for name, fake in fakes.items()
        }
    )
    return app


@pytest.fixture
async def gw_http(aiohttp_client, config, fakes):
    """The gateway relaying over HTTP only: answers a daemon streams (storaged's objects,
    queryd's results) come from daemons that never share the gateway's process."""
    return await aiohttp_client(create_app(wire(config, fakes)))


def test_daemons_that_can_share_the_gateways_process_answer_whole():
    # The in-process hand-over passes on answers a daemon returns whole; one it streamed
    # itself would skip the relay's headers. None of these daemons streams.
    import inspect

    from lakehouse.config import SHARED_DAEMONS
    from lakehouse.services import app_factory

    for name in [n for n in SHARED_DAEMONS if n != "gateway"]:
        source = inspect.getsource(inspect.getmodule(app_factory(name)))
        assert "StreamResponse(" not in source and ".prepare(" not in source, name


@pytest.fixture(params=["http", "in-process"])
async def gw(request, aiohttp_client, config, fakes):
    """The gateway relaying over HTTP, and handing over in-process: every test that uses
    it holds for both."""
    app = create_app(wire(config, fakes))
    if request.param == "in-process":
        in_process(app, fakes)
    return await aiohttp_client(app)


async def send_raw(client, method: str, target: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the request target exactly as given (no client rewriting)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# -- routing ---------------------------------------------------------------------------------

ROUTE_CASES = [
    ("PUT", "/v1/storage/datasets/w/a.parquet", "storaged", "/storage/datasets/w/a.parquet", ""),
    ("GET", "/v1/storage?prefix=datasets/&limit=5", "storaged", "/storage", "prefix=datasets/&limit=5"),
    ("DELETE", "/v1/storage/a%20b/c%2Fd%0A", "storaged", "/storage/a%20b/c%2Fd%0A", ""),
    ("POST", "/v1/catalog/register", "catalogd", "/catalog/register", ""),
    ("GET", "/v1/catalog/manifest/workers", "catalogd", "/catalog/manifest/workers", ""),
    ("GET", "/v1/catalog/list", "catalogd", "/catalog/list", ""),
    ("POST", "/v1/ingest?name=workers", "ingestd", "/ingest", "name=workers"),
    ("POST", "/v1/sql", "queryd", "/sql", ""),
    ("POST", "/v1/vectors/index/workers/search", "vectord", "/vectors/index/workers/search", ""),
    ("POST", "/v1/vectors/index", "vectord", "/vectors/index", ""),
    ("POST", "/v1/embed", "embedd", "/embed", ""),
    ("GET", "/v1/embed/stats", "embedd", "/embed/stats", ""),
    ("POST", "/v1/pathway/add", "pathwayd", "/pathway/add", ""),
    ("POST", "/v1/matrix/search", "matrixd", "/matrix/search", ""),
    ("POST", "/v1/matrix/playbooks/record", "matrixd", "/matrix/playbooks/record", ""),
    ("GET", "/v1/observer/stats", "observerd", "/observer/stats", ""),
    ("POST", "/v1/chat", "chatd", "/chat", ""),
    ("GET", "/v1/chat/providers", "chatd", "/chat/providers", ""),
    ("POST", "/v1/validate", "validatord", "/validate", ""),
    ("POST", "/v1/iterate?x=%2F%20&y", "validatord", "/iterate", "x=%2F%20&y"),
    ("POST", "/v1/roster/reload", "validatord", "/roster/reload", ""),
]


@pytest.mark.parametrize(("method", "path", "daemon", "upstream_path", "query"), ROUTE_CASES)
async def test_every_prefix_reaches_its_daemon(gw, fakes, method, path, daemon, upstream_path, query):
    body = b'{"k": 1}' if method in ("POST", "PUT") else None
    r = await gw.request(method, URL(path, encoded=True), data=body)
    assert r.status == 200, await r.text()
    seen = await r.json()
    assert seen["daemon"] == daemon
    assert seen["method"] == method
    assert seen["raw_path"] == upstream_path
    assert seen["query"] == query
    assert seen["size"] == (len(body) if body else 0)
    assert [len(f.requests) for f in fakes.values()].count(1) == 1  # nobody else was called


def test_route_table_covers_every_daemon_of_the_contract():
    assert set(ROUTES.values()) == {
        "storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd",
        "pathwayd", "matrixd", "observerd", "chatd", "validatord",
    }  # fmt: skip


@pytest.mark.parametrize(
    "path", ["/v1/nope", "/v1/", "/v1", "/v1/health", "/v1/storagex/a", "/v2/storage/a", "/storage/a"]
)
async def test_unknown_prefix_is_404_json(gw, fakes, path):
    r = await gw.post(path, data=b"{}")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "not_found"
    assert r.headers[TRACE_HEADER]
    assert all(not f.requests for f in fakes.values())


@pytest.mark.parametrize("path", ["/v1/storage/../sql", "/v1/storage/a/./b", "/v1/storage/%2e%2e/x"])
async def test_dot_segments_are_400(gw, fakes, path):
    status, body = await send_raw(gw, "GET", path)  # as sent, not normalised by a client
    assert status == 400
    assert "segments" in orjson.loads(body)["error"]["message"]
    assert all(not f.requests for f in fakes.values())


async def test_status_headers_and_body_pass_unchanged(gw):
    r = await gw.post("/v1/storage/x/conflict", data=b"body")
    assert r.status == 409
    assert await r.read() == b"already there\n"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["X-Custom"] == "kept"
    assert "Keep-Alive" not in r.headers  # hop-by-hop, not relayed
    assert sorted(r.headers.getall("Set-Cookie")) == ["a=1; Path=/", "b=2; Path=/"]


async def test_cookies_are_not_kept_by_the_gateway(aiohttp_client, config, fakes):
    # by name, not by IP: aiohttp's default cookie jar ignores cookies from IP addresses
    cfg = wire(config, fakes)
    cfg = cfg.replace(
        "gateway",
        storaged_url=fakes["storaged"].url.replace("127.0.0.1", "localhost"),
        catalogd_url=fakes["catalogd"].url.replace("127.0.0.1", "localhost"),
    )
    client = await aiohttp_client(create_app(cfg))
    await client.post("/v1/storage/x/conflict", data=b"")
    client.session.cookie_jar.clear()  # the test client keeps cookies; the gateway must not
    for path in ("/v1/catalog/list", "/v1/storage/y"):
        r = await client.get(path)
        assert "cookie" not in (await r.json())["headers"]


async def test_request_headers_forwarded_minus_hop_by_hop(gw):
    r = await gw.post(
        "/v1/sql",
        data=b"{}",
        headers={
            "Content-Type": "application/json",
            "X-Client": "yes",
            "Authorization": "Bearer abc",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Proxy-Authorization": "secret",
            "TE": "trailers",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    headers = (await r.json())["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["x-client"] == "yes"
    assert headers["authorization"] == "Bearer abc"  # every daemon enforces the same [auth]
    for name in ("x-drop-me", "proxy-authorization", "te"):
        assert name not in headers
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["host"] != "gateway"
    # the gateway adds no headers of its own beyond the trace id and X-Forwarded-For
    assert "accept-encoding" not in (await (await gw.get("/v1/catalog/list", skip_auto_headers=["Accept-Encoding"])).json())["headers"]


async def test_head_and_204(gw):
    r = await gw.head("/v1/storage/some/key")
    assert r.status == 200
    assert r.headers["Content-Length"] == "12345"
    assert r.headers["X-Object-Sha256"] == "ab"
    assert await r.read() == b""
    r = await gw.delete("/v1/storage/x/empty")
    assert r.status == 204 and await r.read() == b""


# -- streaming --------------------------------------------------------------------------------


async def test_body_larger_than_the_gateway_cap_streams_through(gw, fakes):
    data = os.urandom(9 * MiB)  # the gateway's own cap is 4 MiB; it must not apply
    r = await gw.put("/v1/storage/_vectors/big.lhv", data=data)
    assert r.status == 200, await r.text()
    seen = await r.json()
    assert seen["size"] == len(data)
    assert seen["sha256"] == hashlib.sha256(data).hexdigest()
    assert seen["headers"]["content-length"] == str(len(data))  # storaged checks it up front
    assert not seen["chunked"]


async def test_chunked_upload_streams_through(gw):
    digest = hashlib.sha256()

    async def gen() -> AsyncIterator[bytes]:
        for i in range(40):
            chunk = bytes([i]) * 200_000
            digest.update(chunk)
            yield chunk

    r = await gw.post("/v1/ingest?name=w", data=gen())
    seen = await r.json()
    assert r.status == 200
    assert seen["size"] == 40 * 200_000 and seen["sha256"] == digest.hexdigest()
    assert seen["chunked"]


async def test_large_answer_streams_back(gw_http):
    n = 9 * MiB + 7
    r = await gw_http.get(f"/v1/storage/x/big?n={n}")
    assert r.status == 200
    got = 0
    async for chunk in r.content.iter_any():
        got += len(chunk)
    assert got == n


async def test_request_body_is_not_buffered(gw, fakes):
    fake = fakes["storaged"]

    async def gen() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        # A buffering gateway would wait for the whole body before calling the upstream:
        # the upstream could then never see the first chunk, and this would time out.
        await asyncio.wait_for(fake.first_chunk.wait(), 10)
        yield b"b" * 5000

    r = await gw.put("/v1/storage/x/handshake-up", data=gen())
    assert r.status == 200
    assert (await r.json())["total"] == 6000


async def test_answer_is_not_buffered(gw_http, fakes):
    fake = fakes["storaged"]
    r = await gw_http.get("/v1/storage/x/handshake-down")
    first = await asyncio.wait_for(r.content.readexactly(1000), 10)
    assert first == b"x" * 1000
    fake.client_read_first.set()
    assert await r.content.read() == b"y" * 1000


# -- upstream failures ----------------------------------------------------------------------


async def test_upstream_down_is_502_naming_the_daemon(aiohttp_client, config, fakes):
    dead = f"http://127.0.0.1:{free_port()}"
    client = await aiohttp_client(create_app(wire(config, fakes).replace("gateway", queryd_url=dead)))
    t0 = time.monotonic()
    r = await client.post("/v1/sql", data=b'{"sql": "select 1"}')
    assert r.status == 502
    err = (await r.json())["error"]
    assert err["code"] == "upstream_error"
    assert "queryd" in err["message"] and dead in err["message"]
    assert time.monotonic() - t0 < 2
    # the other daemons are still reachable
    assert (await client.get("/v1/catalog/list")).status == 200


@pytest.mark.parametrize("mode", ["http", "in-process"])
async def test_upstream_silence_is_504(aiohttp_client, config, fakes, mode):
    app = create_app(wire(config, fakes, upstream_timeout=0.3))
    if mode == "in-process":
        in_process(app, fakes)
    client = await aiohttp_client(app)
    started = time.monotonic()
    r = await client.post("/v1/chat/slow?s=3", data=b"{}")
    assert r.status == 504 and time.monotonic() - started < 2.5
    assert "chatd" in (await r.json())["error"]["message"]
    # in-process, the handler runs on to its end (as a daemon's does): nothing of it
    # reaches the client, whose next request is answered on its own
    r = await client.post("/v1/chat/x", data=b"{}")
    assert r.status == 200 and (await r.json())["raw_path"] == "/chat/x"


async def test_an_answer_that_breaks_off_is_cut_not_completed(gw_http):
    r = await gw_http.get("/v1/storage/x/broken")
    assert r.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()
    assert (await gw_http.get("/v1/catalog/list")).status == 200  # the gateway carries on


async def test_no_path_the_client_sends_is_a_500(gw):
    rng = random.Random(7)
    alphabet = ["a", "/", "%", "%2F", "%00", "%0A", ".", "..", "?", "&", "=", "#", "~", "%20", "ü", "v1", "storage", "chat", "%zz", "%2e"]
    for _ in range(300):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        target = rng.choice(["/v1/", "/v1/storage/", "/v1/chat", "/", "/v1"]) + tail
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"])
        status, _ = await send_raw(gw, method, target)
        assert status < 500, (method, target, status)


# -- auth (ADR-003 / ADR-006) ----------------------------------------------------------------


@pytest.fixture
async def secured(aiohttp_client, config, fakes):
    cfg = wire(config, fakes).replace("auth", token="primary-token", secondary_tokens=["rotated"])
    return await aiohttp_client(create_app(cfg))


async def test_missing_token_is_401(secured, fakes):
    r = await secured.post("/v1/sql", data=b"{}")
    assert r.status == 401
    assert (await r.json())["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert not fakes["queryd"].requests


async def test_wrong_token_is_401(secured, fakes):
    for value in ("Bearer nope", "Bearer primary-token-x", "primary-token", "Basic cHJpbWFyeS10b2tlbg=="):
        r = await secured.post("/v1/sql", data=b"{}", headers={"Authorization": value})
        assert r.status == 401, value
    assert not fakes["queryd"].requests


async def test_primary_and_secondary_tokens_are_accepted(secured):
    for token in ("primary-token", "rotated"):
        r = await secured.post("/v1/sql", data=b"{}", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200
        assert (await r.json())["headers"]["authorization"] == f"Bearer {token}"


async def test_token_from_the_environment_variable_named_by_token_env(aiohttp_client, config, fakes, monkeypatch):
    monkeypatch.setenv("MY_LAKEHOUSE_TOKEN", "from-env")
    cfg = wire(config, fakes).replace("auth", token_env="MY_LAKEHOUSE_TOKEN")
    client = await aiohttp_client(create_app(cfg))
    assert (await client.get("/v1/catalog/list")).status == 401
    r = await client.get("/v1/catalog/list", headers={"Authorization": "Bearer from-env"})
    assert r.status == 200


async def test_address_outside_the_allow_list_is_403(aiohttp_client, config, fakes):
    cfg = wire(config, fakes).replace(
        "auth", token="t", allowed_ips=["10.0.0.0/8", "2001:db8::/32"]
    )
    client = await aiohttp_client(create_app(cfg))
    r = await client.get("/v1/catalog/list", headers={"Authorization": "Bearer t"})
    assert r.status == 403
    assert (await r.json())["error"]["code"] == "forbidden"
    assert not fakes["catalogd"].requests
    # inside the list: allowed
    cfg = cfg.replace("auth", allowed_ips=["127.0.0.0/8"])
    client = await aiohttp_client(create_app(cfg))
    r = await client.get("/v1/catalog/list", headers={"Authorization": "Bearer t"})
    assert r.status == 200


async def test_health_is_always_open(aiohttp_client, config, fakes):
    cfg = wire(config, fakes).replace("auth", token="t", allowed_ips=["10.0.0.0/8"])
    client = await aiohttp_client(create_app(cfg))
    r = await client.get("/health")
    assert r.status == 200 and await r.json() == {"status": "ok", "service": "gateway"}


async def test_empty_token_disables_auth(gw):
    assert (await gw.get("/v1/catalog/list")).status == 200


def test_non_loopback_bind_without_a_token_refuses_to_start(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    for host in ("0.0.0.0", "192.0.2.10", "::"):
        code = cli.main(["serve", "gateway", "--host", host, "--port", str(free_port())])
        assert code == 2
        assert "non-loopback" in capsys.readouterr().err
    # a token (here from the environment) lifts the refusal; loopback never needs one
    monkeypatch.setenv("AUTH_TOKEN", "t")
    from lakehouse.config import load_config

    check_bind("0.0.0.0", load_config(env={}).auth)
    monkeypatch.delenv("AUTH_TOKEN")
    check_bind("127.0.0.1", load_config(env={}).auth)
    with pytest.raises(ConfigError):
        check_bind("0.0.0.0", load_config(env={}).auth)


# -- trace ids -------------------------------------------------------------------------------


async def test_trace_id_is_taken_sent_upstream_and_returned(gw):
    r = await gw.post("/v1/matrix/search", data=b"{}", headers={TRACE_HEADER: "18abbb5a008061b7-008061e9"})
    assert r.headers[TRACE_HEADER] == "18abbb5a008061b7-008061e9"
    assert (await r.json())["headers"][TRACE_HEADER.lower()] == "18abbb5a008061b7-008061e9"


async def test_trace_id_is_minted_when_absent(gw):
    r = await gw.post("/v1/matrix/search", data=b"{}")
    minted = r.headers[TRACE_HEADER]
    assert len(minted) >= 16
    assert (await r.json())["headers"][TRACE_HEADER.lower()] == minted
    r2 = await gw.post("/v1/matrix/search", data=b"{}")
    assert r2.headers[TRACE_HEADER] != minted


async def test_trace_id_wins_over_the_upstreams_and_on_streamed_answers(gw_http):
    r = await gw_http.post("/v1/storage/x/conflict", data=b"", headers={TRACE_HEADER: "mine"})
    assert r.headers.getall(TRACE_HEADER) == ["mine"]
    r = await gw_http.get("/v1/storage/x/big?n=3000000", headers={TRACE_HEADER: "mine2"})
    assert r.headers[TRACE_HEADER] == "mine2"
    await r.read()
    r = await gw_http.post("/v1/nope", headers={TRACE_HEADER: "mine3"})
    assert r.headers[TRACE_HEADER] == "mine3"


# -- Langfuse --------------------------------------------------------------------------------


class FakeLangfuse:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[dict] = []
        self.auth: list[str] = []
        self.got = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/public/ingestion", self.ingest)
        return app

    async def ingest(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.auth.append(request.headers.get("Authorization", ""))
        self.batches.append(orjson.loads(await request.read()))
        self.got.set()
        return web.json_response({"successes": [], "errors": []}, status=207)


def langfuse_env(monkeypatch, url: str) -> None:
    monkeypatch.setenv("LANGFUSE_URL", url)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-test")


async def test_langfuse_records_batches(aiohttp_client, aiohttp_server, config, fakes, monkeypatch):
    lf = FakeLangfuse()
    server = await aiohttp_server(lf.app())
    langfuse_env(monkeypatch, str(server.make_url("")).rstrip("/"))
    app = create_app(wire(config, fakes, langfuse_batch_size=4, langfuse_flush_interval=0.2))
    client = await aiohttp_client(app)
    await client.get("/health")  # not traced
    r = await client.post("/v1/matrix/search", data=b"{}", headers={TRACE_HEADER: "trace-one"})
    assert r.status == 200
    r = await client.get("/v1/nope", headers={TRACE_HEADER: "trace-two"})
    assert r.status == 404
    await asyncio.wait_for(lf.got.wait(), 5)
    deadline = time.monotonic() + 5
    while sum(len(b["batch"]) for b in lf.batches) < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    events = [e for b in lf.batches for e in b["batch"]]
    assert len(events) == 4  # trace + span for each of the two /v1 requests
    assert lf.auth[0] == "Basic " + base64.b64encode(b"pk-test:sk-test").decode()
    traces = {e["body"]["id"]: e["body"] for e in events if e["type"] == "trace-create"}
    spans = [e["body"] for e in events if e["type"] == "span-create"]
    assert set(traces) == {"trace-one", "trace-two"}
    assert traces["trace-one"]["name"] == "POST /v1/matrix/search"
    assert traces["trace-one"]["metadata"]["daemon"] == "matrixd"
    assert traces["trace-one"]["metadata"]["status"] == 200
    assert traces["trace-two"]["metadata"]["status"] == 404
    assert {s["traceId"] for s in spans} == {"trace-one", "trace-two"}
    assert all(s["endTime"] >= s["startTime"] for s in spans)
    assert app[LANGFUSE].dropped_events == 0


@pytest.mark.parametrize("mode", ["down", "slow"])
async def test_a_dead_or_slow_langfuse_never_slows_requests(
    aiohttp_client, aiohttp_server, config, fakes, monkeypatch, mode
):
    timeout = 2.0
    if mode == "down":
        langfuse_env(monkeypatch, f"http://127.0.0.1:{free_port()}")
    else:
        server = await aiohttp_server(FakeLangfuse(delay=30).app())
        langfuse_env(monkeypatch, str(server.make_url("")).rstrip("/"))
    cfg = wire(
        config,
        fakes,
        langfuse_batch_size=2,
        langfuse_flush_interval=0.05,
        langfuse_queue_size=8,
        langfuse_timeout=timeout,
    )
    app = create_app(cfg)
    client = await aiohttp_client(app)
    worst = 0.0
    for _ in range(60):
        t0 = time.monotonic()
        r = await client.post("/v1/embed", data=b"{}")
        assert r.status == 200
        await r.read()
        worst = max(worst, time.monotonic() - t0)
    # A request that waited for Langfuse would take its timeout (2 s); the bound sits well
    # below that and well above a busy machine's hiccup (a CI run once saw one request take
    # 0.504 s against a former 0.5 s bound, with the timeout at 0.5 s: indistinguishable).
    assert worst < timeout / 2, worst
    batcher = app[LANGFUSE]
    if mode == "slow":
        # two POSTs in flight, the queue full: later events were dropped, not waited for
        assert batcher.dropped_events > 0
    else:
        deadline = time.monotonic() + 3
        while batcher.failed_batches == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert batcher.failed_batches > 0
    t0 = time.monotonic()
    await client.close()  # shutdown is bounded by langfuse_timeout too
    assert time.monotonic() - t0 < timeout + 2


# -- 1 GiB through a gateway process (slow) -----------------------------------------------

COUNTING_UPSTREAM = """
import hashlib, sys
from aiohttp import web
async def put(request):
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": digest.hexdigest()})
async def health(request):
    return web.json_response({"status": "ok", "service": "storaged"})
app = web.Application()
app.router.add_put("/storage/{key:.+}", put)
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_a_1_gib_put_streams_through_a_gateway_process(tmp_path):
    import subprocess
    import sys

    from lakehouse.stack import health

    up_port, gw_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["LAKEHOUSE_GATEWAY_STORAGED_URL"] = f"http://127.0.0.1:{up_port}"
    procs = [
        subprocess.Popen([sys.executable, "-c", COUNTING_UPSTREAM, str(up_port)]),
        subprocess.Popen(
            [sys.executable, "-m", "lakehouse", "serve", "gateway", "--port", str(gw_port), "--config", os.devnull],
            env=env,
        ),
    ]
    try:
        for port in (up_port, gw_port):
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(health, f"http://127.0.0.1:{port}") is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        rss_before = _peak_rss_mib(procs[1].pid)
        block = os.urandom(1 << 20)
        digest = hashlib.sha256()
        total = 1 << 30

        async def body() -> AsyncIterator[bytes]:
            for _ in range(total >> 20):
                digest.update(block)
                yield block

        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session, session.put(
            f"http://127.0.0.1:{gw_port}/v1/storage/_vectors/big.lhv",
            data=body(),
            headers={"Content-Length": str(total)},
        ) as r:
            assert r.status == 200, await r.text()
            seen = await r.json()
        elapsed = time.monotonic() - t0
        assert seen == {"size": total, "sha256": digest.hexdigest()}
        peak = _peak_rss_mib(procs[1].pid)
        print(f"1 GiB via the gateway in {elapsed:.1f} s; gateway peak RSS {rss_before:.0f} -> {peak:.0f} MiB")
        assert peak - rss_before < 64, (rss_before, peak)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


# -- an early answer from the daemon reaches the client (issue 17) -----------------------------


async def test_storageds_early_413_is_relayed_to_a_client_still_sending(aiohttp_server, config, fakes):
    """A PUT announcing 300 MB: storaged refuses it from Content-Length, before reading the
    body; the gateway must relay that 413 at once, not wait for a body the client has not
    sent (the client waits for the answer, as one using Expect: 100-continue does)."""
    from lakehouse.services import storaged

    store = await aiohttp_server(storaged.create_app(config.replace("storaged", max_put_bytes=1 << 20)))
    cfg = wire(config, fakes).replace("gateway", storaged_url=str(store.make_url("")).rstrip("/"))
    gateway = await aiohttp_server(create_app(cfg))
    for expect, sent in ((b"", b""), (b"", b"x" * 1024), (b"Expect: 100-continue\r\n", b"")):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"PUT /v1/storage/big/object HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            + expect + b"Content-Length: %d\r\n\r\n" % (300 << 20) + sent
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if head.startswith(b"HTTP/1.1 100"):  # an interim answer; the final one follows
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status = int(head.split()[1])
        assert status == 413, head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        assert orjson.loads(body)["error"]["code"] == "payload_too_large"
        writer.close()


@pytest.mark.parametrize("token", ["", "t1"])
async def test_header_bytes_that_are_not_utf8_never_make_a_5xx(aiohttp_server, config, fakes, token):
    gateway = await aiohttp_server(create_app(wire(config, fakes).replace("auth", token=token)))
    for header in (b"Authorization: Bearer \xff\xfe", b"X-Other: \xc3(", b"X-Lakehouse-Trace-Id: \xff"):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"POST /v1/matrix/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n" + header + b"\r\n\r\n{}")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        status = int(data.split()[1])
        assert status < 500, (header, data)
        if token and header.startswith(b"Authorization"):
            assert status == 401
