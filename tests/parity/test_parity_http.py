"""The HTTP parity probe: two in-process instances of this runtime agree on every fixture; a
right side that changes one field is caught (exit status 1); invalid sides never match."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession, web

from lakehouse.parity import (
    IGNORED,
    Answer,
    Side,
    daemons_of,
    invalid_reason,
    load_fixtures,
    local_runtime,
    main,
    normalise,
    parse_side,
    roster_for,
    run_probe,
    select,
)

FIXTURES = Path(__file__).resolve().parents[2] / "parity" / "fixtures"
HTTP = load_fixtures(FIXTURES, kind="http")
MERGE = select(HTTP, "b-near 0.05 beats a-near 0.1")


# -- the normaliser ------------------------------------------------------------------------


def test_normalise_ignores_noise_and_rounds_float32_digits():
    body = {
        "elapsed_ms": 12, "trace_id": "18abbb5a008061b7-008061e9",
        "results": [{"id": "w-1", "distance": 0.32829999923706055, "metadata": {"recorded_at": "2026"}}],
        "per_corpus": {"W_p1234abcd": 1.0},
        "nested": {"uid": "9f1c", "count": 3, "ratio": 0.123456789},
    }
    out = normalise(body, token="p1234abcd", ignore_paths=["nested.count"], digits=4)
    assert out == {
        "elapsed_ms": IGNORED, "trace_id": IGNORED,
        "results": [{"id": "w-1", "distance": 0.3283, "metadata": {"recorded_at": IGNORED}}],
        "per_corpus": {"W_{run}": 1},
        "nested": {"uid": IGNORED, "count": IGNORED, "ratio": 0.1235},
    }
    assert isinstance(out["per_corpus"]["W_{run}"], int)  # 1.0 and 1 are one JSON number
    assert normalise([1.5, {"a": [0.1, 0.2]}], ignore_paths=["1.a.*"]) == [1.5, {"a": [IGNORED, IGNORED]}]


def test_side_specs():
    gw = parse_side("http://go-host:3110/", "left")
    assert gw.url("matrixd", "/matrix/search") == "http://go-host:3110/v1/matrix/search"
    ports = parse_side("ports:127.0.0.1", "right")
    assert ports.url("validatord", "/validate") == "http://127.0.0.1:3221/validate"
    assert ports.url("matrixd", "/matrix/search") == "http://127.0.0.1:3218/matrix/search"
    shifted = parse_side("ports:go-host:1000", "right")
    assert shifted.url("storaged", "/storage") == "http://go-host:4211/storage"
    named = parse_side("matrixd=http://a:1,vectord=http://b:2/", "x")
    assert named.url("vectord", "/vectors/index") == "http://b:2/vectors/index"
    with pytest.raises(LookupError):
        named.url("chatd", "/chat")
    for bad in ("ftp://x", "ports:", "matrixd=nope", "3110"):
        with pytest.raises(ValueError):
            parse_side(bad, "left")


def test_the_validity_gate():
    fx = {"contract": "§9", "name": "n", "kind": "http", "daemon": "matrixd", "request": {"path": "/x"},
          "valid": {"required": ["results"]}}
    assert invalid_reason(fx, Answer(200, b'{"results": []}')) is None
    assert "server error" in invalid_reason(fx, Answer(503, b'{"results": []}'))
    assert "not JSON" in invalid_reason(fx, Answer(200, b"<html>"))
    assert "lacks 'results'" in invalid_reason(fx, Answer(200, b'{"hits": []}'))
    assert "refused" in invalid_reason(fx, Answer(error="connection refused"))
    assert "setup step" in invalid_reason(fx, Answer(setup_error="setup step 1 (POST /x): status 500"))
    # a 5xx is valid only where the fixture lists it; a listed status is then required
    listed = {**fx, "valid": {"status": [502]}, "compare": "status"}
    assert invalid_reason(listed, Answer(502, b"upstream")) is None
    assert "allows [502]" in invalid_reason(listed, Answer(200, b"{}"))
    raw = {**fx, "valid": {"status": [422]}, "expect_raw": '{"Policy":{"reason":"x"}}'}
    assert invalid_reason(raw, Answer(422, b'{"Policy":{"reason":"x"}}')) is None
    assert "byte for byte" in invalid_reason(raw, Answer(422, b'{"Policy": {"reason": "x"}}'))


# -- two instances of this runtime ---------------------------------------------------------


async def test_two_instances_match_on_every_fixture(tmp_path):
    daemons = daemons_of(HTTP)
    async with (
        local_runtime(daemons, tmp_path / "left", label="left", roster=roster_for(FIXTURES)) as left,
        local_runtime(daemons, tmp_path / "right", label="right", roster=roster_for(FIXTURES)) as right,
    ):
        report = await run_probe(HTTP, left, right)
    assert report.ok, report.render()
    assert report.summary() == f"{len(HTTP)}/{len(HTTP)} matched"
    assert {"matrixd", "validatord", "vectord"} <= set(daemons)


def tamper(target: str, change) -> web.Application:
    """A proxy in front of ``target`` that passes everything through, except that ``change``
    rewrites the JSON of /matrix/search answers."""

    async def proxy(request: web.Request) -> web.Response:
        async with ClientSession() as s, s.request(
            request.method, target + request.path_qs, data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as r:
            body = await r.read()
            if request.path == "/matrix/search" and r.status == 200:
                data = orjson.loads(body)
                change(data)
                body = orjson.dumps(data)
            return web.Response(status=r.status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def spec(side: Side, **override: str) -> str:
    return ",".join(f"{k}={override.get(k, v)}" for k, v in side.daemons.items())


async def run_cli(argv: list[str]) -> int:
    # main() runs its own event loop: give it a thread, so this loop keeps serving the sides
    return await asyncio.to_thread(main, argv)


async def test_a_changed_field_is_a_mismatch_with_a_diff_and_exit_1(tmp_path, aiohttp_server, capsys):
    daemons = daemons_of(MERGE)

    def relabel(data):
        data["results"][0]["source"] = "boost"  # outside the fixture's expectation

    async with (
        local_runtime(daemons, tmp_path / "left", label="left") as left,
        local_runtime(daemons, tmp_path / "right", label="right") as right,
    ):
        fake = await aiohttp_server(tamper(right.daemons["matrixd"], relabel))
        argv = ["--fixtures", str(FIXTURES), "--only", "b-near 0.05 beats a-near 0.1",
                "--left", spec(left), "--right", spec(right, matrixd=str(fake.make_url("")).rstrip("/"))]
        assert await run_cli(argv) == 1
        out = capsys.readouterr().out
        assert "MISMATCH" in out and "0/1 matched (1 mismatch)" in out
        assert '-        "source": "retrieval"' in out and '+        "source": "boost"' in out
        # the same comparison against the real right side matches, and exits 0
        argv[-1] = spec(right)
        assert await run_cli(argv) == 0
        assert "1/1 matched" in capsys.readouterr().out


async def test_an_answer_that_breaks_the_contract_is_invalid_not_a_mismatch(tmp_path, aiohttp_server):
    daemons = daemons_of(MERGE)

    def nudge(data):
        data["results"][0]["distance"] = 0.06  # the contract says b-near is at 0.05

    async with (
        local_runtime(daemons, tmp_path / "left", label="left") as left,
        local_runtime(daemons, tmp_path / "right", label="right") as right,
    ):
        fake = await aiohttp_server(tamper(right.daemons["matrixd"], nudge))
        bad = Side("right", daemons={**right.daemons, "matrixd": str(fake.make_url("")).rstrip("/")})
        report = await run_probe(MERGE, left, bad)
    (outcome,) = report.outcomes
    assert outcome.status == "invalid" and not report.ok
    assert "right: INVALID" in outcome.detail and "left" not in outcome.detail.split(":")[0]
    assert '"distance": 0.06' in outcome.detail


async def test_identical_invalid_sides_never_count_as_a_match(aiohttp_server):
    async def broken(request):
        return web.json_response({"error": "boom"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", broken)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    # the same server on both sides: byte-identical answers, and still no match
    report = await run_probe(HTTP[:5], parse_side(url, "left"), parse_side(url, "right"))
    assert report.matched == 0 and not report.ok
    assert all(o.status == "invalid" for o in report.outcomes)
    assert all("left: INVALID" in o.detail and "right: INVALID" in o.detail for o in report.outcomes)


async def test_a_side_that_does_not_answer_in_time_is_invalid(aiohttp_server):
    async def slow(request):
        await asyncio.sleep(2)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    fx = select(HTTP, "playbook_overfull")
    report = await run_probe(fx, parse_side(url, "left"), parse_side("http://127.0.0.1:9", "right"), timeout=0.3)
    (outcome,) = report.outcomes
    assert outcome.status == "invalid"
    assert "no answer within 0.3 s" in outcome.detail
    assert "right: INVALID" in outcome.detail


async def test_the_command_against_two_local_instances(capsys):
    argv = ["--left", "local", "--right", "local", "--fixtures", str(FIXTURES), "--only", "§13.2"]
    assert await run_cli(argv) == 0
    out = capsys.readouterr().out
    n = len(select(HTTP, "§13.2"))
    assert f"{n}/{n} matched" in out and "validate playbook_overfull" in out


async def test_bad_usage_exits_2(capsys, tmp_path):
    assert await run_cli(["--left", "3110", "--right", "local", "--fixtures", str(FIXTURES)]) == 2
    assert await run_cli(["--left", "local", "--right", "local", "--fixtures", str(tmp_path)]) == 2
    assert await run_cli(["--left", "local", "--right", "local", "--fixtures", str(FIXTURES), "--only", "zzz-none"]) == 2


async def test_gateway_side_matches_daemon_side(tmp_path):
    # the right side reached through this runtime's gateway (/v1 prefix), the left directly
    fixtures = select(HTTP, "§13.2") + select(HTTP, "§9.4") + select(HTTP, "§7.3")
    daemons = daemons_of(fixtures)
    async with (
        local_runtime(daemons, tmp_path / "left", label="left", roster=roster_for(FIXTURES)) as left,
        local_runtime([*daemons, "gateway"], tmp_path / "right", roster=roster_for(FIXTURES)) as right,
    ):
        via_gateway = parse_side(right.daemons["gateway"], "right")
        report = await run_probe(fixtures, left, via_gateway)
    assert report.ok, report.render()
    assert "gateway http://127.0.0.1:" in report.render()
