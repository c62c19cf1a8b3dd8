"""The HTTP parity probe: the same requests to two runtimes, answers normalised and compared.

    lakehouse parity --left http://127.0.0.1:3110 --right http://go-host:3110 --fixtures parity/fixtures
    lakehouse parity --left local --right ports:go-host           # this runtime vs the Go one
    lakehouse parity --left local --right local                   # two fresh instances of ours

Every HTTP fixture (``"kind": "http"`` in ``parity/fixtures/*.json``, format in docs/parity.md)
is sent to both sides: its setup steps, its request, its teardown. Each side's answer first
passes the **validity gate**: a side that could not be reached, timed out, answered a 5xx the
fixture does not list, a status the fixture does not allow, a body that is not JSON where JSON
is required, a body without the fixture's required keys, or a body that differs from the
fixture's own expectation is INVALID, and an invalid side never counts as a match, even when
both sides answered the same bytes. Valid answers are then **normalised** (:func:`normalise`)
and compared as canonical JSON, byte for byte. The probe prints one line per fixture, a
unified diff per mismatch, and ``N/M matched``; :func:`main` exits 1 unless every fixture
matched.

A side is named by a spec (:func:`parse_side`):

* ``http://host:port`` -- a gateway: the fixture's daemon path goes under ``/v1``;
* ``ports:HOST`` or ``ports:HOST:SHIFT`` -- every daemon on its contract port (3211..3221)
  plus ``SHIFT``, daemon paths as they are;
* ``matrixd=URL,validatord=URL,...`` -- daemons named one by one;
* ``local`` -- (the CLI only) this runtime's daemons started in this process on free ports,
  with a fresh data directory (:func:`local_runtime`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .config import DAEMON_PORTS, Config, load_config

__all__ = [
    "DEFAULT_DIGITS",
    "IGNORED_KEYS",
    "Answer",
    "Outcome",
    "ProbeReport",
    "Side",
    "canonical",
    "contains",
    "invalid_reason",
    "load_fixtures",
    "local_runtime",
    "main",
    "normalise",
    "parse_side",
    "probe",
    "roster_for",
    "run_probe",
    "select",
]

# -- the normaliser ---------------------------------------------------------------------------

#: Keys whose values differ between two correct runs (clocks, timers, minted ids). Wherever
#: they appear, at any depth, their value becomes IGNORED; the key itself is kept, so a key
#: that one side omits still shows in the diff. A fixture can add keys or paths of its own.
IGNORED_KEYS: tuple[str, ...] = (
    "elapsed_ms",  # validatord Report, matrixd corpus jobs
    "duration_ms",  # session rows, workflow nodes, observer ops
    "trace_id",  # minted per request unless the caller sends one
    "span_id",
    "created_at_ns",  # pathwayd traces
    "updated_at_ns",
    "timestamp",  # observerd ops, session rows
    "recorded_at",  # playbook entries
    "created_at",
    "updated_at",
    "started_at",
    "run_id",
    "session_id",
    "job_id",
    "uid",  # pathwayd's uuid4 trace ids
    "predecessor_uid",
)
IGNORED = "<ignored>"
#: decimal places kept of every non-integral number: distances are float32 on the wire, whose
#: last digits depend on the order of a runtime's additions (the contract's own smoke numbers
#: have four places, "0.6566 -> 0.3283")
DEFAULT_DIGITS = 4
#: in a fixture's paths and bodies, replaced by a token unique to the side and the run (so
#: index names never collide with state a long-lived runtime kept); in answers, the token is
#: turned back into this text
RUN_PLACEHOLDER = "{run}"
DEFAULT_TIMEOUT = 15.0


def _round(x: float, digits: int) -> float | int:
    if not math.isfinite(x):
        return x
    r = round(x, digits)
    # 1 and 1.0 are the same JSON number; Go prints float32 1.0 as 1, we as 1.0.
    return int(r) if r == int(r) and abs(r) < 2**53 else r


def normalise(
    value: Any,
    *,
    ignore_keys: Iterable[str] = IGNORED_KEYS,
    ignore_paths: Iterable[str] = (),
    digits: int = DEFAULT_DIGITS,
    token: str | None = None,
) -> Any:
    """A copy of a decoded JSON value with run-to-run noise taken out.

    * the value of every key in ``ignore_keys`` (at any depth), and at every dotted path in
      ``ignore_paths`` (``*`` matches any key or list index: ``results.*.metadata``), becomes
      ``"<ignored>"``;
    * numbers that are not integers are rounded to ``digits`` decimal places, and a number
      that is then integral is written as an integer (``1.0`` and ``1`` are one JSON number);
    * the side's run ``token`` inside any string becomes ``{run}``.

    Object keys are sorted when the result is written by :func:`canonical`.
    """
    keys = frozenset(ignore_keys)
    paths = [p.split(".") for p in ignore_paths]

    def hit(path: list[str]) -> bool:
        return any(
            len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path, strict=True))
            for p in paths
        )

    def walk(v: Any, path: list[str]) -> Any:
        if path and (path[-1] in keys or hit(path)):
            return IGNORED
        if isinstance(v, dict):
            return {_untoken(str(k), token): walk(x, [*path, str(k)]) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, [*path, str(i)]) for i, x in enumerate(v)]
        if isinstance(v, float):
            return _round(v, digits)
        if isinstance(v, str):
            return _untoken(v, token)
        return v

    return walk(value, [])


def _untoken(text: str, token: str | None) -> str:
    return text.replace(token, RUN_PLACEHOLDER) if token else text


def canonical(value: Any) -> str:
    """Key-sorted, indented JSON (UTF-8 as is): equal values give equal text."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()


def contains(want: Any, have: Any) -> bool:
    """``want`` is contained in ``have``: objects by key, lists element by element (same
    length), recursively; everything else equal."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and contains(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list) and len(want) == len(have)
            and all(contains(a, b) for a, b in zip(want, have, strict=True))
        )
    return want == have


def _resolve(value: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


# -- sides ------------------------------------------------------------------------------------


@dataclass
class Side:
    """Where one runtime answers: a gateway (``/v1`` prefix) or one URL per daemon."""

    label: str
    gateway: str | None = None
    daemons: dict[str, str] = field(default_factory=dict)
    token: str = ""  # bearer token, when the runtime has auth on

    def url(self, daemon: str, path: str) -> str:
        if self.gateway is not None:
            return f"{self.gateway}/v1{path}"
        base = self.daemons.get(daemon)
        if base is None:
            raise LookupError(f"{self.label}: no URL for daemon {daemon!r}")
        return f"{base}{path}"


def parse_side(spec: str, label: str, token: str = "") -> Side:
    """A :class:`Side` from its command-line spec (see the module docstring)."""
    spec = spec.strip()
    if spec.startswith("ports:"):
        rest = spec[len("ports:") :]
        host, _, shift = rest.partition(":")
        try:
            offset = int(shift) if shift else 0
        except ValueError:
            raise ValueError(f"{label}: bad port shift in {spec!r}") from None
        if not host:
            raise ValueError(f"{label}: {spec!r} names no host")
        daemons = {
            name: f"http://{host}:{port + offset}"
            for name, port in DAEMON_PORTS.items()
            if name != "gateway"
        }
        return Side(label, daemons=daemons, token=token)
    if "=" in spec:
        daemons = {}
        for part in spec.split(","):
            name, _, url = part.partition("=")
            if not name.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"{label}: expected daemon=http://..., got {part!r}")
            daemons[name.strip()] = url.strip().rstrip("/")
        return Side(label, daemons=daemons, token=token)
    if spec.startswith(("http://", "https://")):
        base = spec.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return Side(label, gateway=base, token=token)
    raise ValueError(
        f"{label}: {spec!r} is not a URL, ports:HOST[:SHIFT], daemon=URL,... or local"
    )


# -- fixtures ---------------------------------------------------------------------------------


class FixtureError(ValueError):
    """A fixture file that does not follow the format (the message names file and fixture)."""


def load_fixtures(directory: str | os.PathLike[str], kind: str | None = None) -> list[dict[str, Any]]:
    """Every fixture in ``directory/*.json`` (sorted by file name), of ``kind`` if given.

    A file is ``{"about": "...", "fixtures": [...]}``; each fixture has at least
    ``contract`` (the section it encodes, ``"§9.9"``), ``name`` and ``kind``. The file name is
    added as ``file``.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FixtureError(f"{root}: not a directory")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in sorted(root.glob("*.json")):
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise FixtureError(f"{path.name}: not JSON: {exc}") from exc
        items = doc.get("fixtures") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise FixtureError(f"{path.name}: expected {{\"fixtures\": [...]}}")
        steps = doc.get("steps", {})
        for i, fx in enumerate(items):
            where = f"{path.name}[{i}]"
            if not isinstance(fx, dict):
                raise FixtureError(f"{where}: a fixture is an object")
            for part in ("setup", "teardown"):
                if part in fx:
                    fx[part] = _expand_steps(fx[part], steps, f"{where}.{part}")
            for key in ("contract", "name", "kind"):
                if not isinstance(fx.get(key), str) or not fx[key]:
                    raise FixtureError(f"{where}: missing {key!r}")
            if not fx["contract"].startswith(("§", "SPEC §")):
                raise FixtureError(f"{where}: contract must name a section (§9.9), got {fx['contract']!r}")
            if fx["kind"] not in ("http", "library"):
                raise FixtureError(f"{where}: kind must be http or library")
            if fx["name"] in seen:
                raise FixtureError(f"{where}: duplicate fixture name {fx['name']!r}")
            seen.add(fx["name"])
            if fx["kind"] == "http":
                _check_http_fixture(fx, where)
            if kind is None or fx["kind"] == kind:
                out.append({**fx, "file": path.name})
    return out


def _expand_steps(items: Any, steps: Mapping[str, Any], where: str) -> list[Any]:
    """``"@name"`` items replaced by the file's ``steps[name]`` list."""
    if not isinstance(items, list):
        raise FixtureError(f"{where}: expected a list of steps")
    out: list[Any] = []
    for item in items:
        if isinstance(item, str) and item.startswith("@"):
            if item[1:] not in steps:
                raise FixtureError(f"{where}: no steps named {item[1:]!r} in this file")
            out.extend(steps[item[1:]])
        else:
            out.append(item)
    return out


def _check_request(req: Any, where: str) -> None:
    if not isinstance(req, dict) or not isinstance(req.get("path"), str) or not req["path"].startswith("/"):
        raise FixtureError(f"{where}: a request needs a path starting with /")
    if req.get("method", "GET") not in ("GET", "POST", "PUT", "DELETE", "HEAD"):
        raise FixtureError(f"{where}: unsupported method {req.get('method')!r}")


def _check_http_fixture(fx: dict[str, Any], where: str) -> None:
    if not isinstance(fx.get("daemon"), str):
        raise FixtureError(f"{where}: an http fixture names its daemon")
    _check_request(fx.get("request"), f"{where}.request")
    for part in ("setup", "teardown"):
        for j, step in enumerate(fx.get(part, [])):
            _check_request(step, f"{where}.{part}[{j}]")
    if fx.get("compare", "body") not in ("body", "status"):
        raise FixtureError(f"{where}: compare must be body or status")


def daemons_of(fixtures: Iterable[Mapping[str, Any]]) -> list[str]:
    """The daemons the http fixtures talk to (setup and teardown steps included)."""
    names: set[str] = set()
    for fx in fixtures:
        if fx.get("kind") != "http":
            continue
        names.add(fx["daemon"])
        for step in [*fx.get("setup", []), *fx.get("teardown", [])]:
            names.add(step.get("daemon", fx["daemon"]))
    return sorted(names)


def _substitute(value: Any, token: str) -> Any:
    """``{run}`` -> the side's token; ``{"$repeat": [text, n]}`` -> text repeated n times
    (for bodies of a given size, such as the 8 KiB inbox limit)."""
    if isinstance(value, str):
        return value.replace(RUN_PLACEHOLDER, token)
    if isinstance(value, list):
        return [_substitute(v, token) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$repeat"}:
            text, count = value["$repeat"]
            return str(text) * int(count)
        return {_substitute(k, token): _substitute(v, token) for k, v in value.items()}
    return value


# -- one side's answer ------------------------------------------------------------------------


@dataclass
class Answer:
    """What one side answered: status and body, or the transport error instead."""

    status: int | None = None
    body: bytes = b""
    error: str | None = None
    setup_error: str | None = None


async def _send(
    session: aiohttp.ClientSession, side: Side, step: Mapping[str, Any], daemon: str,
    token: str, timeout: float,
) -> Answer:
    method = step.get("method", "GET")
    try:
        url = side.url(step.get("daemon", daemon), _substitute(step["path"], token))
    except LookupError as exc:
        return Answer(error=str(exc))
    headers = {str(k): str(v) for k, v in step.get("headers", {}).items()}
    if side.token:
        headers["Authorization"] = f"Bearer {side.token}"
    data: bytes | None = None
    if "body" in step:
        data = orjson.dumps(_substitute(step["body"], token))
        headers.setdefault("Content-Type", "application/json")
    elif "raw" in step:
        data = str(step["raw"]).encode("utf-8")
    try:
        async with session.request(
            method, url, data=data, headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return Answer(resp.status, await resp.read())
    except TimeoutError:
        return Answer(error=f"no answer within {timeout:g} s ({method} {url})")
    except aiohttp.ClientError as exc:
        return Answer(error=f"{type(exc).__name__}: {exc} ({method} {url})")


async def _play(
    session: aiohttp.ClientSession, side: Side, fx: Mapping[str, Any], token: str, timeout: float
) -> Answer:
    """Setup steps, the request, then the teardown (always, its answers ignored)."""
    daemon = fx["daemon"]
    try:
        for i, step in enumerate(fx.get("setup", [])):
            got = await _send(session, side, step, daemon, token, timeout)
            ok = step.get("ok")
            good = got.error is None and (
                got.status in ok if ok else got.status is not None and 200 <= got.status < 300
            )
            if not good:
                what = got.error or f"status {got.status}: {got.body[:200]!r}"
                return Answer(setup_error=f"setup step {i + 1} ({step.get('method', 'GET')} {step['path']}): {what}")
        return await _send(session, side, fx["request"], daemon, token, timeout)
    finally:
        for step in fx.get("teardown", []):
            await _send(session, side, step, daemon, token, timeout)


def _decoded(fx: Mapping[str, Any], answer: Answer, token: str) -> Any:
    """The normalised, comparable form of a valid answer."""
    if fx.get("compare", "body") == "status":
        return {"status": answer.status}
    norm = fx.get("normalise", {})
    try:
        body: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        body = answer.body.decode("utf-8", "replace")
    return {
        "status": answer.status,
        "body": normalise(
            body,
            ignore_keys=(*IGNORED_KEYS, *norm.get("ignore_keys", [])),
            ignore_paths=norm.get("ignore_paths", []),
            digits=int(norm.get("digits", DEFAULT_DIGITS)),
            token=token,
        ),
    }


def invalid_reason(fx: Mapping[str, Any], answer: Answer, token: str = "") -> str | None:
    """Why ``answer`` fails the fixture's validity gate, or None when it passes.

    The gate, in order: the side answered (no transport error, no timeout, setup steps
    succeeded); its status is one the fixture's ``valid.status`` lists, or any status below
    500 when it lists none (a 5xx is valid only where the contract itself fixes one, such as
    "vectord down -> 502"); the raw body is ``expect_raw`` byte for byte (or starts with
    ``expect_raw_prefix``) and contains every ``valid.contains`` text; the body is JSON when
    ``valid.json`` (default true unless ``compare`` is ``status``); every ``valid.required``
    dotted path exists; and the normalised answer equals ``expect`` (``expect_subset``:
    contains it, lists element by element).
    """
    if answer.setup_error:
        return answer.setup_error
    if answer.error:
        return answer.error
    assert answer.status is not None
    valid = fx.get("valid", {})
    allowed = valid.get("status")
    if allowed:
        if answer.status not in allowed:
            return f"status {answer.status}, the fixture allows {allowed}"
    elif answer.status >= 500:
        return f"status {answer.status} (server error)"
    if "expect_raw" in fx and answer.body != fx["expect_raw"].encode("utf-8"):
        return f"body is not byte for byte the fixture's {fx['expect_raw']!r}: {answer.body[:300]!r}"
    if "expect_raw_prefix" in fx and not answer.body.startswith(fx["expect_raw_prefix"].encode("utf-8")):
        return f"body does not start with {fx['expect_raw_prefix']!r}: {answer.body[:300]!r}"
    text = answer.body.decode("utf-8", "replace")
    for needle in valid.get("contains", []):
        if needle not in text:
            return f"body does not contain {needle!r}"
    wants_json = valid.get("json", fx.get("compare", "body") == "body")
    body: Any = None
    if wants_json:
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return f"body is not JSON: {answer.body[:120]!r}"
        for path in valid.get("required", []):
            if not _resolve(body, path)[0]:
                return f"body lacks {path!r}"
    decoded = _decoded(fx, answer, token)
    if "expect" in fx and decoded != fx["expect"]:
        return "differs from the fixture's expectation:\n" + _diff(fx["expect"], decoded, "expected", "answered")
    if "expect_subset" in fx and not contains(fx["expect_subset"], decoded):
        return "does not contain the fixture's expectation:\n" + _diff(
            fx["expect_subset"], decoded, "expected (subset)", "answered"
        )
    return None


def _diff(a: Any, b: Any, name_a: str, name_b: str) -> str:
    lines = difflib.unified_diff(
        canonical(a).splitlines(), canonical(b).splitlines(), name_a, name_b, lineterm="", n=3
    )
    return "\n".join(lines)


# -- the probe --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One fixture's result: ``match``, ``mismatch`` or ``invalid``."""

    fixture: Mapping[str, Any]
    status: str
    detail: str = ""

    @property
    def title(self) -> str:
        fx = self.fixture
        req = fx["request"]
        return f"{fx['contract']} {fx['name']} ({fx['daemon']} {req.get('method', 'GET')} {req['path']})"


@dataclass
class ProbeReport:
    outcomes: list[Outcome]
    left: str
    right: str
    seconds: float = 0.0

    @property
    def matched(self) -> int:
        return sum(o.status == "match" for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and self.matched == len(self.outcomes)

    def summary(self) -> str:
        n = len(self.outcomes)
        bad = {s: sum(o.status == s for o in self.outcomes) for s in ("mismatch", "invalid")}
        extra = ", ".join(f"{v} {k}" for k, v in bad.items() if v)
        return f"{self.matched}/{n} matched" + (f" ({extra})" if extra else "")

    def render(self) -> str:
        lines = [f"HTTP parity: left = {self.left}, right = {self.right}"]
        for o in self.outcomes:
            tag = {"match": "ok", "mismatch": "MISMATCH", "invalid": "INVALID"}[o.status]
            lines.append(f"  {tag:<9} {o.title}")
            if o.detail:
                lines.extend("      " + line for line in o.detail.splitlines())
        lines.append(f"{self.summary()} in {self.seconds:.1f} s")
        return "\n".join(lines)


async def run_fixture(
    session: aiohttp.ClientSession, fx: Mapping[str, Any], left: Side, right: Side,
    timeout: float = DEFAULT_TIMEOUT,
) -> Outcome:
    """Play one fixture on both sides (concurrently), gate, normalise, compare."""
    tokens = (f"p{secrets.token_hex(4)}", f"p{secrets.token_hex(4)}")
    answers = await asyncio.gather(
        _play(session, left, fx, tokens[0], timeout), _play(session, right, fx, tokens[1], timeout)
    )
    reasons = [invalid_reason(fx, a, t) for a, t in zip(answers, tokens, strict=True)]
    if any(reasons):
        detail = "\n".join(
            f"{side.label}: INVALID: {r}" for side, r in zip((left, right), reasons, strict=True) if r
        )
        return Outcome(fx, "invalid", detail)
    a, b = (canonical(_decoded(fx, x, t)) for x, t in zip(answers, tokens, strict=True))
    if a == b:
        return Outcome(fx, "match")
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), left.label, right.label, lineterm="")
    return Outcome(fx, "mismatch", "\n".join(diff))


async def run_probe(
    fixtures: Sequence[Mapping[str, Any]], left: Side, right: Side,
    timeout: float = DEFAULT_TIMEOUT,
) -> ProbeReport:
    """Every http fixture, one after another, on both sides."""
    start = time.perf_counter()
    outcomes = []
    # trust_env=False: a proxy from the environment must not sit between the probe and
    # runtimes on this machine
    async with aiohttp.ClientSession(trust_env=False) as session:
        for fx in fixtures:
            if fx.get("kind") == "http":
                outcomes.append(await run_fixture(session, fx, left, right, timeout))
    return ProbeReport(outcomes, _describe(left), _describe(right), time.perf_counter() - start)


def _describe(side: Side) -> str:
    if side.gateway:
        return f"{side.label} (gateway {side.gateway})"
    names = sorted(side.daemons)
    if len(names) > 3:
        return f"{side.label} ({len(names)} daemon URLs)"
    return f"{side.label} ({', '.join(f'{n} {side.daemons[n]}' for n in names)})"


# -- this runtime, in process -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def local_runtime(
    daemons: Iterable[str],
    data_dir: str | os.PathLike[str],
    *,
    label: str = "local",
    config: Config | None = None,
    roster: str | os.PathLike[str] | None = None,
) -> AsyncIterator[Side]:
    """This runtime's ``daemons`` (and those they require) served in this process.

    Each daemon listens on a free 127.0.0.1 port; the configuration is ``config`` (default:
    the embedded defaults, environment ignored) with ``data_dir`` and, when given, the
    validatord ``roster``. Everything stops when the block ends.
    """
    from aiohttp import web

    from .services import DAEMONS, app_factory
    from .stack import free_port

    wanted = set(daemons)
    pending = list(wanted)
    while pending:
        for req in DAEMONS[pending.pop()].requires:
            if req not in wanted:
                wanted.add(req)
                pending.append(req)
    order = [name for name in DAEMONS if name in wanted]
    cfg = config or load_config(env={}, data_dir=str(data_dir))
    cfg = cfg.replace(None, data_dir=str(data_dir))
    for name in order:
        cfg = cfg.replace(name, host="127.0.0.1", port=free_port("127.0.0.1"))
    if roster is not None and "validatord" in wanted:
        cfg = cfg.replace("validatord", roster_path=str(Path(roster).resolve()))
    runners: list[web.AppRunner] = []
    try:
        for name in order:
            runner = web.AppRunner(app_factory(name)(cfg), access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", cfg.section(name).port).start()
        yield Side(label, daemons={name: cfg.base_url(name) for name in order})
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


# -- the command ------------------------------------------------------------------------------


def _default_fixtures() -> Path | None:
    here = Path.cwd() / "parity" / "fixtures"
    return here if here.is_dir() else None


async def probe(
    fixtures: Sequence[Mapping[str, Any]],
    left: str,
    right: str,
    *,
    roster: str | os.PathLike[str] | None = None,
    left_token: str = "",
    right_token: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> ProbeReport:
    """Run ``fixtures`` between two sides given by spec (``local`` starts this runtime in
    process, with ``roster`` for validatord)."""
    async with contextlib.AsyncExitStack() as stack:
        sides = []
        for label, spec, token in (("left", left, left_token), ("right", right, right_token)):
            if spec == "local":
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"lakehouse-parity-{label}-"))
                side = await stack.enter_async_context(
                    local_runtime(daemons_of(fixtures), tmp, label=label, roster=roster)
                )
            else:
                side = parse_side(spec, label, token)
            sides.append(side)
        return await run_probe(fixtures, sides[0], sides[1], timeout)


def select(fixtures: Sequence[dict[str, Any]], only: str | None) -> list[dict[str, Any]]:
    """The fixtures whose name or contract section contains ``only`` (all when None)."""
    if not only:
        return list(fixtures)
    needle = only.lower()
    return [f for f in fixtures if needle in f["name"].lower() or needle in f["contract"].lower()]


def roster_for(fixtures_dir: str | os.PathLike[str]) -> Path | None:
    """The fixture directory's ``roster.jsonl`` (validatord's roster for local sides)."""
    path = Path(fixtures_dir) / "roster.jsonl"
    return path if path.exists() else None


def main(argv: list[str]) -> int:
    """``lakehouse parity``: exit 0 when every fixture matched, 1 otherwise, 2 on bad usage."""
    parser = argparse.ArgumentParser(
        prog="lakehouse parity",
        description="send each HTTP parity fixture to two runtimes and compare the answers",
    )
    parser.add_argument("--left", required=True, help="a gateway URL, ports:HOST[:SHIFT], daemon=URL,..., or local")
    parser.add_argument("--right", required=True, help="as --left")
    parser.add_argument("--fixtures", help="fixture directory (default: ./parity/fixtures)")
    parser.add_argument("--only", help="run the fixtures whose name or contract section contains this text")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per request")
    parser.add_argument("--left-token", default="", help="bearer token for the left side")
    parser.add_argument("--right-token", default="", help="bearer token for the right side")
    args = parser.parse_args(argv)
    if args.fixtures is None:
        found = _default_fixtures()
        if found is None:
            print("lakehouse parity: no ./parity/fixtures here; pass --fixtures DIR", file=sys.stderr)
            return 2
        args.fixtures = str(found)
    try:
        fixtures = load_fixtures(args.fixtures, kind="http")
        for spec in (args.left, args.right):
            if spec != "local":
                parse_side(spec, "side")
    except ValueError as exc:
        print(f"lakehouse parity: {exc}", file=sys.stderr)
        return 2
    fixtures = select(fixtures, args.only)
    if not fixtures:
        print("lakehouse parity: no http fixture selected", file=sys.stderr)
        return 2
    report = asyncio.run(
        probe(
            fixtures, args.left, args.right, roster=roster_for(args.fixtures),
            left_token=args.left_token, right_token=args.right_token, timeout=args.timeout,
        )
    )
    print(report.render())
    return 0 if report.ok else 1
