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
    assert "unknown field `q`" in (await r.json())["error"]["message"]
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
