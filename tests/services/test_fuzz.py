"""Fuzzing every daemon from its own OpenAPI description (issue 17.4).

Every daemon of the stack runs in this process (one event loop on a thread, real sockets on
127.0.0.1, a fake Ollama behind chatd and embedd's hash provider), with a bearer token.
Schemathesis generates requests for every described operation, valid ones and invalid ones,
and every answer is checked: no 5xx, a status the description lists, the described media
type, a body that matches the described schema, and an answer within the timeout (a hang is
a failure). The same operations are then sent without the token (each must be a described
401), and through the gateway's merged ``/v1`` description.

Budgets: ``FUZZ_EXAMPLES`` cases per operation and generation mode (default 4, a bounded
run of about 2,500 cases in all that takes about half a minute); the slow set runs
``FUZZ_SLOW_EXAMPLES`` (default 60: several thousand cases). README's "API description and
fuzzing" section has the counts.

Findings already assigned elsewhere (issue 17 item 3, branch ``errors``) are recognised by
:data:`KNOWN` and reported as xfail naming the finding; any other failure fails the test.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from lakehouse.config import Config, load_config
from lakehouse.fakes import FakeOllama
from lakehouse.services import AIOHTTP_DAEMONS, app_factory
from testkit import free_port

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: a request taking longer than this is a hang
TIMEOUT = 20.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
SLOW_EXAMPLES = int(os.environ.get("FUZZ_SLOW_EXAMPLES", "60"))


# -- the stack, in process --------------------------------------------------------------------


class InProcessStack:
    """Every daemon (and a fake Ollama) served from one event loop on a background thread."""

    def __init__(self, config: Config) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}
        self.config = config

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(120)

    async def _start(self) -> None:
        fake = FakeOllama()
        fake_port = free_port()
        await self._serve(fake.app(), fake_port)
        config = self.config
        for name in AIOHTTP_DAEMONS:
            config = config.replace(name, port=free_port())
        config = config.replace(
            "chatd", ollama_url=f"http://127.0.0.1:{fake_port}", timeout_secs=5.0
        )
        self.config = config
        for name in AIOHTTP_DAEMONS:  # dependency order
            await self._serve(app_factory(name)(config), config.section(name).port)
            self.urls[name] = config.base_url(name)

    async def _serve(self, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.runners.append(runner)

    def stop(self) -> None:
        async def stop() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    config = load_config(env={}, data_dir=str(data)).replace("auth", token=TOKEN)
    st = InProcessStack(config)
    st.start()
    # an index for the routes under /vectors/index/fuzz to reach their body decoding
    requests.post(
        f"{st.urls['vectord']}/vectors/index",
        json={"name": "fuzz", "dimension": 4},
        headers=AUTH,
        timeout=TIMEOUT,
    ).raise_for_status()
    try:
        yield st
    finally:
        st.stop()


_SCHEMAS: dict[str, Any] = {}


def schema_of(stack: InProcessStack, daemon: str) -> Any:
    """The schemathesis schema of the description ``daemon`` serves (fetched once)."""
    if daemon not in _SCHEMAS:
        doc = requests.get(f"{stack.urls[daemon]}/openapi.json", headers=AUTH, timeout=60).json()
        _SCHEMAS[daemon] = schemathesis.openapi.from_dict(doc)
    return _SCHEMAS[daemon]


# -- running cases ------------------------------------------------------------------------------


@dataclass
class Finding:
    case: str
    status: int | None
    problem: str
    body: bytes = b""
    request_body: Any = None
    path: str = ""


@dataclass
class Outcome:
    cases: int = 0
    findings: list[Finding] = field(default_factory=list)


def bounded(examples: int, *, seeded: bool = True) -> settings:
    """Hypothesis settings for a bounded run: ``examples`` cases, generated only (no
    shrinking, no example database), the same ones every run when ``seeded``."""
    return settings(
        max_examples=examples,
        derandomize=seeded,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def fuzz(
    operation: Any,
    base_url: str,
    headers: dict[str, str] | None,
    examples: int,
    outcome: Outcome,
    *,
    seeded: bool = True,
) -> None:
    """Send ``examples`` positive and ``examples`` negative cases of ``operation``; every
    failed check is recorded (the run goes on), nothing is shrunk (a bounded run).

    ``seeded``: the same cases every run (the default run, so CI is repeatable); the slow
    run draws new ones each time."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception as exc:  # an operation with nothing negative to generate
            if mode is GenerationMode.NEGATIVE:
                continue
            raise AssertionError(f"{operation.label}: no strategy: {exc}") from exc

        @bounded(examples, seeded=seeded)
        @given(case=strategy)
        def run(case: Any) -> None:
            outcome.cases += 1
            try:
                response = case.call(base_url=base_url, headers=headers, timeout=TIMEOUT)
            except requests.Timeout:
                outcome.findings.append(
                    Finding(case.as_curl_command(), None, "hang", b"", case.body, case.path)
                )
                return
            except requests.ConnectionError as exc:
                outcome.findings.append(
                    Finding(
                        case.as_curl_command(), None, f"broken: {exc}", b"", case.body, case.path
                    )
                )
                return
            try:
                case.validate_response(response, checks=CHECKS)
            except (AssertionError, FailureGroup) as exc:
                outcome.findings.append(
                    Finding(
                        case.as_curl_command(),
                        response.status_code,
                        str(exc)[:2000],
                        response.content[:500],
                        case.body,
                        case.path,
                    )
                )

        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise  # nothing negative to send (no parameter, no body) is fine


# -- findings assigned elsewhere (issue 17 item 3, branch "errors") ------------------------------


def _deep(value: Any, depth: int = 0) -> int:
    if isinstance(value, dict):
        return max([_deep(v, depth + 1) for v in value.values()], default=depth + 1)
    if isinstance(value, list):
        return max([_deep(v, depth + 1) for v in value], default=depth + 1)
    return depth


def _big_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_big_int(v) for v in value)
    return False


#: name -> (why, does this finding explain it)
KNOWN: dict[str, tuple[str, Callable[[str, str, Finding], bool]]] = {
    "catalogd-int-bounds": (
        "issue 17.3 finding 4: catalogd row_count / size of 2^63 or more -> 500",
        lambda daemon, path, f: (
            daemon in ("catalogd", "gateway")
            and path.endswith("/catalog/register")
            and f.status == 500
            and _big_int(f.request_body)
        ),
    ),
    "json-nesting": (
        "issue 17.3 finding 1: deeply nested JSON -> 500 RecursionError",
        lambda daemon, path, f: (
            f.status == 500
            and (
                _deep(f.request_body) > 60
                if not isinstance(f.request_body, str)
                else f.request_body.startswith("nesting") and int(f.request_body.split()[1]) > 60
            )
        ),
    ),
    "parser-level": (
        "issue 17.3 finding 8: aiohttp's parser answers text/plain, not the JSON error body",
        lambda daemon, path, f: (
            f.status in (400, 431)
            and "without the JSON error body" in f.problem
            and not f.body.startswith(b"{")
        ),
    ),
    "bearer-bytes": (
        "issue 17.3 finding 2: a non-ASCII Authorization header -> 500 UnicodeEncodeError",
        lambda daemon, path, f: (
            f.status == 500
            and isinstance(f.request_body, str)
            and f.request_body.startswith("Authorization")
        ),
    ),
    "upstream-4xx-as-502": (
        "issue 17.3 finding 5: an upstream's 4xx (vectord, ollama) answered as 502",
        lambda daemon, path, f: (
            f.status == 502
            and any(p in path for p in ("/matrix/", "/chat", "/iterate", "/observer/workflow"))
        ),
    ),
}


def judge(daemon: str, outcome: Outcome) -> None:
    """Fail on any finding not assigned elsewhere; xfail naming the known ones."""
    print(f"fuzz cases: {outcome.cases}")  # summed for README by the slow run's -s output
    unknown, known = [], set()
    for f in outcome.findings:
        names = [name for name, (_, match) in KNOWN.items() if match(daemon, f.path, f)]
        if names:
            known.update(names)
            print(f"known ({', '.join(names)}): {f.status} {f.case[:160]}")
        else:
            unknown.append(f)
    if unknown:
        lines = [f"{len(unknown)} of {outcome.cases} cases failed; the first ones:"]
        for f in unknown[:3]:
            lines += [f"--- {f.case}", f"status {f.status}: {f.problem}", f"body: {f.body!r}"]
        pytest.fail("\n".join(lines), pytrace=False)
    if known:
        pytest.xfail("; ".join(KNOWN[name][0] for name in sorted(known)))


# -- the tests -----------------------------------------------------------------------------------


def _operations() -> list[tuple[str, str, str]]:
    """(daemon, METHOD, path) of every described operation, from apps built (not started)."""
    from lakehouse.openapi import API_OPERATIONS, openapi_path

    config = load_config(env={}, data_dir=str(Path("/nonexistent")))
    out = []
    for name in AIOHTTP_DAEMONS:
        if name == "gateway":
            continue
        for op in app_factory(name)(config)[API_OPERATIONS]:
            out.append((name, op.method, openapi_path(op.path)))
    return out


OPERATIONS = _operations()
IDS = [f"{d}:{m}:{p}" for d, m, p in OPERATIONS]


def _operation(stack: InProcessStack, daemon: str, method: str, path: str) -> Any:
    return schema_of(stack, daemon)[path][method]


@pytest.mark.parametrize(("daemon", "method", "path"), OPERATIONS, ids=IDS)
def test_fuzz_with_token(stack, daemon, method, path):
    outcome = Outcome()
    fuzz(_operation(stack, daemon, method, path), stack.urls[daemon], AUTH, EXAMPLES, outcome)
    judge(daemon, outcome)


@pytest.mark.parametrize(("daemon", "method", "path"), OPERATIONS, ids=IDS)
def test_fuzz_without_token(stack, daemon, method, path):
    """Without the token every answer is the described 401 (or /health's 200)."""
    outcome = Outcome()
    fuzz(_operation(stack, daemon, method, path), stack.urls[daemon], None, 1, outcome)
    judge(daemon, outcome)


def test_fuzz_through_the_gateway(stack):
    """The gateway's merged description, every operation, a few cases each."""
    schema = schema_of(stack, "gateway")
    outcome = Outcome()
    for result in schema.get_all_operations():
        op = result.ok()
        fuzz(op, stack.urls["gateway"], AUTH, 2, outcome)
    judge("gateway", outcome)
    assert outcome.cases > 100


@pytest.mark.slow
@pytest.mark.parametrize(("daemon", "method", "path"), OPERATIONS, ids=IDS)
def test_fuzz_with_token_long(stack, daemon, method, path):
    outcome = Outcome()
    operation = _operation(stack, daemon, method, path)
    fuzz(operation, stack.urls[daemon], AUTH, SLOW_EXAMPLES, outcome, seeded=False)
    judge(daemon, outcome)


def test_the_harness_sees_a_wrong_answer(stack):
    """A description whose answer schema the daemon does not meet is reported, as is an
    undescribed status: the checks above can fail."""
    doc = requests.get(f"{stack.urls['embedd']}/openapi.json", headers=AUTH, timeout=60).json()
    doc["components"]["schemas"]["EmbedStats"]["required"].append("no_such_field")
    del doc["paths"]["/embed"]["post"]["responses"]["400"]
    schema = schemathesis.openapi.from_dict(doc)
    outcome = Outcome()
    fuzz(schema["/embed/stats"]["GET"], stack.urls["embedd"], AUTH, 2, outcome)
    assert outcome.findings and "no_such_field" in outcome.findings[0].problem
    outcome = Outcome()
    fuzz(schema["/embed"]["POST"], stack.urls["embedd"], AUTH, 10, outcome)
    assert any(f.status == 400 for f in outcome.findings)


# -- what the description cannot express: nesting, encodings, sizes, header bytes ----------------


def _json_body_routes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(daemon, path, the body's field names) of every route taking a JSON body."""
    from lakehouse.openapi import API_OPERATIONS, openapi_path

    config = load_config(env={}, data_dir=str(Path("/nonexistent")))
    return [
        (
            name,
            openapi_path(op.path).replace("{name}", "fuzz").replace("{uid}", "fuzz"),
            tuple(f.encode_name for f in msgspec.structs.fields(op.body)),
        )
        for name in AIOHTTP_DAEMONS
        if name != "gateway"
        for op in app_factory(name)(config)[API_OPERATIONS]
        if op.body is not None
    ]


JSON_ROUTES = _json_body_routes()


@dataclass
class RawAnswer:
    status: int
    content_type: str
    body: bytes


def raw_request(
    url: str, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> RawAnswer:
    """One HTTP/1.1 request with exactly these bytes (requests would re-encode them)."""
    host, port = url.removeprefix("http://").split(":")
    head = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
    head += [name + b": " + value for name, value in headers]
    head += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        return RawAnswer(response.status, response.getheader("Content-Type", ""), data)


@st.composite
def hostile_bodies(draw: st.DrawFn, fields: tuple[str, ...]) -> tuple[bytes, str]:
    """A request body and what makes it hostile: one of the body's fields (or another name)
    set to a hostile value."""
    kind = draw(
        st.sampled_from(
            [
                "nesting",
                "bad-utf8",
                "surrogate",
                "other-encoding",
                "big-number",
                "long-string",
                "bytes",
                "bom",
            ]
        )
    )
    field_name = draw(st.sampled_from([*fields, "no_such_field"]))
    if kind == "nesting":
        depth = draw(st.sampled_from([2, 30, 127, 128, 256, 1000, 5000]))
        shape = draw(st.sampled_from(["list", "dict"]))
        opener, closer = (b"[", b"]") if shape == "list" else (b'{"k":', b"}")
        nested = opener * depth + b"1" + closer * depth
        return b'{"' + field_name.encode() + b'": ' + nested + b"}", f"nesting {depth}"
    if kind == "bad-utf8":
        junk = draw(st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b)))
        return b'{"' + field_name.encode() + b'": "' + junk + b'"}', kind
    if kind == "surrogate":
        return b'{"' + field_name.encode() + b'": "\\ud800x\\udfff"}', kind
    if kind == "other-encoding":
        codec = draw(st.sampled_from(["utf-16", "utf-32", "latin-1"]))
        text = '{"' + field_name + '": "é ü \u00ff"}'
        return text.encode(codec), kind
    if kind == "big-number":
        number = draw(
            st.sampled_from(
                ["1e400", "-1e400", str(2**64), str(-(2**63) - 1), str(10**400), "-0", "1E-400"]
            )
        )
        return (
            b'{"' + field_name.encode() + b'": ' + number.encode() + b"}",
            f"number {number[:12]}",
        )
    if kind == "long-string":
        size = draw(st.sampled_from([10_000, 1_000_000]))
        return msgspec.json.encode({field_name: "x" * size}), f"string of {size}"
    if kind == "bom":
        return b"\xef\xbb\xbf" + msgspec.json.encode({field_name: []}), kind
    return draw(st.binary(max_size=200)), kind


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_answer(
    daemon: str, path: str, what: str, request_body: Any, answer: RawAnswer, outcome: Outcome
) -> None:
    outcome.cases += 1
    problem = ""
    if answer.status >= 500:
        problem = f"{answer.status} for {what}"
    elif answer.status >= 400:
        try:
            error = msgspec.json.decode(answer.body)["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
        except Exception:
            if not (path.endswith("/validate") and answer.status == 422):
                problem = f"{answer.status} without the JSON error body for {what}"
    if problem:
        outcome.findings.append(
            Finding(
                f"{daemon} POST {path}: {what}",
                answer.status,
                problem,
                answer.body[:300],
                request_body,
                path,
            )
        )


def _send(
    stack: InProcessStack,
    route: tuple[str, str, tuple[str, ...]],
    via_gateway: bool,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    what: str,
    outcome: Outcome,
) -> None:
    """POST ``body`` to ``route`` (directly or through the gateway) and check the answer."""
    daemon, path, _ = route
    url = stack.urls["gateway"] if via_gateway else stack.urls[daemon]
    target = "/v1" + path if via_gateway else path
    try:
        answer = raw_request(url, "POST", target, headers, body)
    except OSError as exc:
        outcome.cases += 1
        problem = f"no answer: {exc!r}"
        outcome.findings.append(
            Finding(f"{daemon} POST {target}: {what}", None, problem, b"", what, path)
        )
        return
    _check_answer(daemon, path, what, what, answer, outcome)


JSON_HEADERS = [
    (b"Authorization", f"Bearer {TOKEN}".encode()),
    (b"Content-Type", b"application/json"),
]


def test_hostile_bodies(stack):
    """Deep nesting, broken or foreign encodings, huge numbers, long strings and random bytes,
    to every route that takes a JSON body, directly and through the gateway: a 4xx with the
    JSON error body each time (never a 5xx, never a hang)."""
    outcome = Outcome()

    @bounded(max(60, EXAMPLES * 40))
    @given(route=st.sampled_from(JSON_ROUTES), data=st.data(), via_gateway=st.booleans())
    def run(
        route: tuple[str, str, tuple[str, ...]], data: st.DataObject, via_gateway: bool
    ) -> None:
        body, what = data.draw(hostile_bodies(route[2]))
        _send(stack, route, via_gateway, JSON_HEADERS, body, what, outcome)

    run()
    judge("any", outcome)


def test_deep_nesting_in_every_field(stack):
    """Every field of every JSON body, nested 64, 1,000 and 10,000 deep (lists and objects):
    a 4xx with the JSON error body, never a 5xx."""
    outcome = Outcome()
    for daemon, path, fields in JSON_ROUTES:
        for name in fields:
            for depth in (64, 1000, 10_000):
                for opener, closer in ((b"[", b"]"), (b'{"k":', b"}")):
                    body = (
                        b'{"'
                        + name.encode()
                        + b'": '
                        + opener * depth
                        + b"1"
                        + closer * depth
                        + b"}"
                    )
                    what = f"nesting {depth} in {name}"
                    answer = raw_request(stack.urls[daemon], "POST", path, JSON_HEADERS, body)
                    _check_answer(daemon, path, what, what, answer, outcome)
    assert outcome.cases > 500
    judge("any", outcome)


@st.composite
def hostile_headers(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], str]:
    value = draw(
        st.binary(min_size=1, max_size=40).filter(
            lambda b: b"\r" not in b and b"\n" not in b and b"\x00" not in b
        )
    )
    which = draw(st.sampled_from(["bearer", "authorization", "trace", "content-type"]))
    if which == "bearer":
        return [(b"Authorization", b"Bearer " + value)], "Authorization: Bearer <bytes>"
    if which == "authorization":
        return [(b"Authorization", value)], "Authorization: <bytes>"
    auth = [(b"Authorization", f"Bearer {TOKEN}".encode())]
    if which == "trace":
        return [*auth, (b"X-Lakehouse-Trace-Id", value)], "X-Lakehouse-Trace-Id: <bytes>"
    return [*auth, (b"Content-Type", value)], "Content-Type: <bytes>"


def test_hostile_headers(stack):
    """Arbitrary bytes in the headers every daemon reads (token, trace id, content type)."""
    outcome = Outcome()

    @bounded(max(40, EXAMPLES * 20))
    @given(route=st.sampled_from(JSON_ROUTES), hostile=hostile_headers(), via_gateway=st.booleans())
    def run(
        route: tuple[str, str, tuple[str, ...]],
        hostile: tuple[list[tuple[bytes, bytes]], str],
        via_gateway: bool,
    ) -> None:
        headers, what = hostile
        _send(stack, route, via_gateway, headers, b"{}", what, outcome)

    run()
    judge("any", outcome)


def test_body_over_the_limit_is_a_json_413(stack):
    """A body one byte over a daemon's max_body_bytes: the JSON 413, directly and through
    the gateway (which relays the daemon's answer)."""
    limit = stack.config.pathwayd.max_body_bytes
    body = b'{"content": "' + b"x" * (limit - 14) + b'"}'
    assert len(body) == limit + 1
    for url, path in (
        (stack.urls["pathwayd"], "/pathway/add"),
        (stack.urls["gateway"], "/v1/pathway/add"),
    ):
        answer = raw_request(
            url, "POST", path, [(b"Authorization", AUTH["Authorization"].encode())], body
        )
        assert answer.status == 413, answer.body[:200]
        assert msgspec.json.decode(answer.body)["error"]["code"] == "payload_too_large"
