"""The shared web layer: JSON errors, strict bodies, auth, trace ids, health."""

from __future__ import annotations

import msgspec
import pytest

from lakehouse.config import ConfigError, load_config
from lakehouse.web import (
    TRACE_HEADER,
    ApiError,
    check_bind,
    json_response,
    make_app,
    read_json,
    trace_id,
)


class Body(msgspec.Struct, forbid_unknown_fields=True):
    sql: str


def build(config):
    app = make_app("queryd", config)

    async def echo(request):
        body = await read_json(request, Body)
        if body.sql == "boom":
            raise ApiError.conflict("boom")
        if body.sql == "crash":
            raise RuntimeError("bug")
        return json_response({"sql": body.sql, "trace": trace_id(request)})

    app.router.add_post("/sql", echo)
    return app


async def test_health_and_errors(aiohttp_client, config):
    client = await aiohttp_client(build(config))
    r = await client.get("/health")
    assert r.status == 200 and await r.json() == {"status": "ok", "service": "queryd"}
    for body, status in [(b'{"q": "x"}', 400), (b"{bad", 400), (b"", 400), (b'{"sql": 1}', 400), (b'{"sql":"boom"}', 409), (b'{"sql":"crash"}', 500), (b'{"sql": "\xff\xfe"}', 400)]:
        r = await client.post("/sql", data=body)
        assert r.status == status, body
        err = (await r.json())["error"]
        assert set(err) == {"code", "message"}
    r = await client.post("/sql", data=b'{"q": "x"}')
    assert (await r.json())["error"]["message"] == "request body: unknown field 'q'"
    r = await client.get("/nope")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await client.get("/sql")
    assert r.status == 405


async def test_body_cap_is_413_json(aiohttp_client, config):
    client = await aiohttp_client(build(config.replace("queryd", max_body_bytes=100)))
    r = await client.post("/sql", data=b'{"sql": "' + b"x" * 200 + b'"}')
    assert r.status == 413
    assert (await r.json())["error"]["code"] == "payload_too_large"


async def test_trace_id_taken_or_minted(aiohttp_client, config):
    client = await aiohttp_client(build(config))
    r = await client.post("/sql", json={"sql": "a"}, headers={TRACE_HEADER: "abc"})
    assert r.headers[TRACE_HEADER] == "abc" and (await r.json())["trace"] == "abc"
    r = await client.post("/sql", json={"sql": "a"})
    assert len(r.headers[TRACE_HEADER]) > 8
    for unusable in ("x" * 129, "a b", "\u00e9t\u00e9"):  # replaced by a minted id, never echoed
        r = await client.post("/sql", json={"sql": "a"}, headers={TRACE_HEADER: unusable})
        assert r.status == 200 and r.headers[TRACE_HEADER] != unusable


async def test_auth_rules(aiohttp_client, config):
    cfg = config.replace("auth", token="t1", secondary_tokens=["t2"])
    client = await aiohttp_client(build(cfg))
    assert (await client.get("/health")).status == 200
    assert (await client.post("/sql", json={"sql": "a"})).status == 401
    assert (await client.post("/sql", json={"sql": "a"}, headers={"Authorization": "Bearer nope"})).status == 401
    for tok in ("t1", "t2"):
        r = await client.post("/sql", json={"sql": "a"}, headers={"Authorization": f"Bearer {tok}"})
        assert r.status == 200
    cfg = cfg.replace("auth", allowed_ips=["10.0.0.0/8"])
    client = await aiohttp_client(build(cfg))
    r = await client.post("/sql", json={"sql": "a"}, headers={"Authorization": "Bearer t1"})
    assert r.status == 403
    assert (await client.get("/health")).status == 200


def test_non_loopback_bind_needs_a_token():
    cfg = load_config(env={})
    check_bind("127.0.0.1", cfg.auth)
    with pytest.raises(ConfigError, match="non-loopback"):
        check_bind("0.0.0.0", cfg.auth)
    check_bind("0.0.0.0", cfg.replace("auth", token="x").auth)


def test_dumps_handles_integers_wider_than_64_bits():
    import json

    from lakehouse.web import dumps

    big = {"n": 2**70, "neg": -(2**80), "nested": [{"x": 10**30}]}
    assert json.loads(dumps(big)) == big  # orjson itself parses big ints as floats


# -- hostile input (issue 17): nesting, header bytes, 405 and parser errors as JSON ----------

import asyncio  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lakehouse.bodycheck import MAX_JSON_DEPTH, explain, raw_depth_exceeds  # noqa: E402
from lakehouse.web import decode_json  # noqa: E402


class Free(msgspec.Struct, forbid_unknown_fields=True):
    meta: dict[str, Any] | None = None
    raw: msgspec.Raw = msgspec.Raw()
    items: list[dict[str, Any]] = []
    vector: list[float] = []


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@pytest.mark.parametrize("field", ["meta", "raw", "items"])
def test_one_nesting_limit_for_every_body(field):
    wrap = {"meta": b'{"meta": {"a": %s}}', "raw": b'{"raw": %s}', "items": b'{"items": [{"a": %s}]}'}[field]
    outer = {"meta": 2, "raw": 1, "items": 3}[field]  # levels the body adds around the value
    ok = wrap % nested(MAX_JSON_DEPTH - outer)
    decode_json(ok, Free)
    for depth in (MAX_JSON_DEPTH - outer + 1, 900, 5000, 200_000):  # past the limit, and past msgspec's recursion
        with pytest.raises(ApiError) as info:
            decode_json(wrap % nested(depth), Free)
        assert info.value.status == 400
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in info.value.message


def test_brackets_inside_strings_do_not_count():
    text = orjson.dumps({"meta": {"s": "[" * 500 + '\\"{' * 100, "t": ["]]]", "\\\\"]}})
    decode_json(text, Free)
    assert not raw_depth_exceeds(text, 3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(alphabet='[]{}"\\ab'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=3), inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=12))
def test_raw_depth_scan_equals_the_real_depth(value, limit):
    data = orjson.dumps(value)
    assert raw_depth_exceeds(data, limit) == (depth_of(value) > limit)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"items": [{}, 3]}', "items[1]: expected an object, got a number"),
        (b'{"vector": [1, "x"]}', "vector[1]: expected a number, got a string"),
        (b'{"meta": {"a": 1}, "extra": 1}', "unknown field 'extra'"),
        (b"[]", "expected an object, got an array"),
    ],
)
def test_shape_errors_are_in_our_words(body, message):
    assert explain(Free, body) == message
    with pytest.raises(ApiError) as info:
        decode_json(body, Free)
    assert info.value.message == f"request body: {message}"


async def raw_http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("token", ["", "t1"])
async def test_header_bytes_that_are_not_utf8_never_raise(aiohttp_server, config, token):
    server = await aiohttp_server(build(config.replace("auth", token=token)))
    for header in (b"Authorization: Bearer \xff\xfe", b"Authorization: \xc3(", b"X-Lakehouse-Trace-Id: \xff"):
        req = b"POST /sql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 11\r\n" + header + b'\r\n\r\n{"sql":"a"}'
        status, headers, body = await raw_http(server.port, req)
        assert status in ((401,) if token and b"Authorization" in header else (200, 401)), (header, body)
        if status == 401:
            assert orjson.loads(body)["error"]["code"] == "unauthorized"


async def test_405_names_the_allowed_methods(aiohttp_client, config):
    client = await aiohttp_client(build(config))
    r = await client.delete("/sql")
    assert r.status == 405 and r.headers["Allow"] == "POST"
    err = (await r.json())["error"]
    assert err["code"] == "method_not_allowed" and "allowed: POST" in err["message"]


async def test_parser_rejections_are_json(aiohttp_server, config):
    server = await aiohttp_server(build(config))
    for req in (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00 not http\r\n\r\n",
    ):
        status, headers, body = await raw_http(server.port, req)
        assert status == 400 and headers["content-type"].startswith("application/json"), body
        err = orjson.loads(body)["error"]
        assert err["code"] == "bad_request" and err["message"]


@pytest.mark.parametrize(
    ("daemon", "path", "wrap"),
    [
        ("pathwayd", "/pathway/add", b'{"content": %s}'),
        ("observerd", "/observer/event", b'{"op": "x", "metadata": {"a": %s}}'),
        ("vectord", "/vectors/index", b'{"name": "x", "dimension": 2, "m": %s}'),
    ],
)
async def test_deep_bodies_are_the_same_400_on_daemon_routes(aiohttp_client, config, daemon, path, wrap):
    """The limit lives in decode_json, so every daemon's routes answer it alike (issue 17
    found 500 RecursionError on 12 routes)."""
    import importlib

    module = importlib.import_module(f"lakehouse.services.{daemon}")
    client = await aiohttp_client(module.create_app(config))
    for depth in (70, 5000, 100_000):
        r = await client.post(path, data=wrap % nested(depth))
        assert r.status == 400, await r.text()
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in (await r.json())["error"]["message"]
