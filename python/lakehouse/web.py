"""What every daemon shares: the app factory base, errors, body decoding, auth, trace ids.

A daemon module builds its app with :func:`make_app` and adds its routes; handlers stay thin:

    async def handle_search(request):
        body = await read_json(request, SearchRequest)    # 400 on bad JSON / unknown field
        ...
        return json_response({"results": hits})

Errors: raise :class:`ApiError` (or one of its helpers) and the error middleware answers
``{"error": {"code", "message"}}`` with the status. aiohttp's own 404 / 405 / 413 get the same
body. Anything unexpected is logged with its traceback and answered as a JSON 500; reaching
that path is a bug (no client input may produce a 500), so tests treat it as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import ipaddress
import logging
import os
import random
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec
import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from .bodycheck import MAX_JSON_DEPTH, TooDeep, depth_check, explain, raw_depth_exceeds
from .config import AuthConfig, Config, ConfigError
from .openapi import API_OPERATIONS, api_routes, document
from .openapi.page import render as render_docs

__all__ = [
    "ApiError",
    "APP_CONFIG",
    "APP_NAME",
    "BODY_LIMIT",
    "TRACE_HEADER",
    "read_json",
    "decode_json",
    "json_response",
    "error_response",
    "make_app",
    "internal_session",
    "run_app",
    "settle_gc",
    "check_bind",
    "mint_trace_id",
    "trace_id",
    "adopt_trace_id",
    "valid_trace_id",
    "AuthGate",
]

log = logging.getLogger("lakehouse")
_random = random.Random()

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TRACE_HEADER = "X-Lakehouse-Trace-Id"
APP_CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
APP_NAME: web.AppKey[str] = web.AppKey("service_name", str)
#: the largest request body the app reads (its ``client_max_size``)
BODY_LIMIT: web.AppKey[int] = web.AppKey("body_limit", int)
#: builds the app's OpenAPI document (the gateway sets its own: the merged /v1 one)
API_DOCUMENT: web.AppKey[Callable[[web.Application], dict[str, Any]]] = web.AppKey(
    "api_document", object  # type: ignore[arg-type]
)
TRACE_ID: web.RequestKey[str] = web.RequestKey("trace_id", str)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    """An error answered to the client as ``{"error": {"code", "message"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.headers = headers or {}

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, message)

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        return cls(404, message)

    @classmethod
    def conflict(cls, message: str) -> ApiError:
        return cls(409, message)

    @classmethod
    def upstream(cls, message: str) -> ApiError:
        return cls(502, message)


# -- JSON in and out -------------------------------------------------------------------


def _default(obj: Any) -> Any:
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(data: Any) -> bytes:
    """JSON bytes via orjson; falls back to msgspec for what orjson refuses but a client can
    send (integers wider than 64 bits, decoded from a request body and echoed back)."""
    try:
        return orjson.dumps(data, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return msgspec.json.encode(data, enc_hook=_default)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code or _CODES.get(status, "error"), "message": message}}
    return json_response(body, status=status, headers=headers)


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    # One Decoder per type: building its validation plan on every request is measurable.
    dec = _DECODERS.get(tp)
    if dec is None:
        dec = _DECODERS[tp] = msgspec.json.Decoder(tp, strict=True)
    return dec


def decode_json(data: bytes, type: type[T], what: str = "request body") -> T:  # noqa: A002
    """Strictly decode ``data`` into ``type``; ApiError(400) names what was wrong and where.

    The messages are the project's own (see docs/errors.md): UTF-8, nesting depth
    (:data:`lakehouse.bodycheck.MAX_JSON_DEPTH` for every body) and the shape of the body
    (:func:`lakehouse.bodycheck.explain`) are checked here, not left to msgspec's wording.
    """
    if not data or not data.strip():
        raise ApiError(400, f"{what}: empty body, expected JSON")
    try:
        value = _decoder(type).decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        # Only a failed decode pays for these checks (a successful strict decode has
        # validated every string it read).
        _check_utf8(data, what)
        if isinstance(exc, RecursionError) or raw_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ApiError(400, f"{what}: {TooDeep()}") from None
        if isinstance(exc, msgspec.ValidationError):
            raise ApiError(400, f"{what}: {explain(type, data) or 'does not match the expected shape'}") from None
        raise ApiError(400, f"{what}: malformed JSON ({_syntax_position(exc)})") from None
    check = depth_check(type)
    if check is not None and check(value, 1):
        raise ApiError(400, f"{what}: {TooDeep()}")
    return value


def _syntax_position(exc: Exception) -> str:
    """Where the decoder stopped, from msgspec's message if it says, in our words."""
    match = re.search(r"char (\d+)", str(exc))
    return f"invalid JSON at byte {match.group(1)}" if match else "invalid JSON"


def _check_utf8(data: bytes, what: str) -> None:
    """ApiError(400) naming the first byte of ``data`` that is not UTF-8, if there is one."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"{what}: not UTF-8: invalid byte at offset {exc.start}") from None


async def read_json(request: web.Request, type: type[T]) -> T:  # noqa: A002
    """Read and strictly decode the request body (unknown fields and wrong types are 400).

    Bodies over the app's ``client_max_size`` raise aiohttp's 413, which the error
    middleware turns into the JSON error body.
    """
    data = await request.read()
    return decode_json(data, type)


# -- middlewares ------------------------------------------------------------------------


def mint_trace_id() -> str:
    """A time-ordered hex id, shaped like the reference's ``18abbb5a008061b7-008061e9``.

    The random part only separates ids minted in the same nanosecond; it needs no
    cryptographic source (secrets.token_hex costs a system call per request).
    """
    return f"{time.time_ns():016x}-{_random.getrandbits(32):08x}"


#: a trace id a client may choose: visible ASCII, at most this long (anything else is
#: replaced by a minted id, so it can go into headers, logs and JSON bodies unchanged)
MAX_TRACE_ID = 128


def valid_trace_id(tid: str) -> bool:
    """Whether ``tid`` can be used as a trace id as given (1-128 visible ASCII characters)."""
    return 0 < len(tid) <= MAX_TRACE_ID and tid.isascii() and tid.isprintable() and " " not in tid


def trace_id(request: web.Request) -> str:
    """The request's trace id (taken from X-Lakehouse-Trace-Id or minted by the middleware)."""
    return request.get(TRACE_ID) or mint_trace_id()


def adopt_trace_id(request: web.Request, tid: str) -> None:
    """Make ``tid`` the request's trace id: it is sent upstream and returned in the header."""
    request[TRACE_ID] = tid


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(TRACE_HEADER)
    request[TRACE_ID] = given if given and valid_trace_id(given) else mint_trace_id()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[TRACE_HEADER] = request[TRACE_ID]
        raise
    if not response.prepared:
        # A handler may adopt another id (validatord's /iterate takes the body's trace_id):
        # the header answers with whatever the request ended up using.
        response.headers[TRACE_HEADER] = request[TRACE_ID]
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.code, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        message = exc.text if exc.text and exc.text != exc.reason else exc.reason
        if exc.status == 413:
            message = f"request body too large: {message}"
        elif isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"method {exc.method} is not allowed on {request.path}; allowed: {allowed}"
        return error_response(exc.status, message or exc.reason, headers=headers)
    except asyncio.CancelledError:
        raise
    except (TimeoutError, ConnectionResetError) as exc:
        if isinstance(exc, asyncio.TimeoutError):
            return error_response(504, "timed out")
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error (logged)")


def _header_bytes(value: str) -> bytes:
    """A header value as the bytes the client sent, never raising: aiohttp decodes header
    bytes that are not UTF-8 as lone surrogates, which a plain ``.encode()`` refuses."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace")


class AuthGate:
    """ADR-003 / ADR-006 as a check any server can apply (aiohttp here, mcpd's ASGI app).

    :meth:`check` answers None (let the request through) or ``(status, message)``: 403 for an
    address outside the allow-list, then 401 for a missing or wrong bearer token. An empty
    token makes the gate open (development mode). Token comparison is constant-time against
    pre-encoded ``Bearer <token>`` headers.
    """

    def __init__(self, auth: AuthConfig) -> None:
        self.expected = [f"Bearer {t}".encode() for t in auth.tokens()]
        self.networks = [ipaddress.ip_network(c, strict=False) for c in auth.allowed_ips]

    @property
    def enabled(self) -> bool:
        return bool(self.expected)

    def check(self, remote: str | None, authorization: bytes) -> tuple[int, str] | None:
        if not self.expected:
            return None
        if self.networks:
            remote = remote or ""
            try:
                addr = ipaddress.ip_address(remote.split("%", 1)[0])
            except ValueError:
                addr = None
            if addr is None or not any(addr in net for net in self.networks):
                return 403, f"address {remote or '?'} is not allowed"
        ok = False
        for candidate in self.expected:
            # compare every candidate so the time taken does not say which one matched
            ok |= hmac.compare_digest(authorization, candidate)
        if not ok:
            return 401, "missing bearer token" if not authorization else "invalid bearer token"
        return None


def auth_middleware(auth: AuthConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    """:class:`AuthGate` as an aiohttp middleware; /health is always open."""
    gate = AuthGate(auth)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not gate.enabled or request.path == "/health":
            return await handler(request)
        refused = gate.check(request.remote, _header_bytes(request.headers.get("Authorization", "")))
        if refused is not None:
            status, message = refused
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return error_response(status, message, headers=headers)
        return await handler(request)

    return middleware


# -- parser-level errors ----------------------------------------------------------------


def _parser_error_message(status: int, exc: BaseException | None) -> str:
    """Our words for what aiohttp's HTTP parser refused (it never reaches a middleware)."""
    if isinstance(exc, http_exceptions.LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "?"
        return f"request line or a header is longer than the server's limit of {limit} bytes"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "malformed HTTP request: invalid header"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return "malformed HTTP request line"
    if isinstance(exc, http_exceptions.PayloadEncodingError):
        return "malformed HTTP request body encoding"
    if isinstance(exc, http_exceptions.BadHttpMessage):
        return "malformed HTTP request"
    if status == 504:
        return "timed out"
    return "internal error (logged)" if status >= 500 else "bad request"


_aiohttp_handle_error = RequestHandler.handle_error


def _json_handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """RequestHandler.handle_error answering ``{"error": {"code", "message"}}``.

    aiohttp answers what its parser rejects (a path or header over 8190 bytes, a bad request
    line) from the protocol object, before any application or middleware sees a request, in
    text/plain. There is no per-app hook for it, so lakehouse.web wraps the method once, for
    every server in the process: aiohttp's version still logs and still refuses when a
    response has started; only the body changes.
    """
    plain = _aiohttp_handle_error(self, request, status, exc, message)
    response = error_response(plain.status, _parser_error_message(plain.status, exc))
    response.force_close()
    return response


RequestHandler.handle_error = _json_handle_error  # type: ignore[method-assign]


# -- the app ----------------------------------------------------------------------------


def internal_session(config: Config, **kwargs: Any) -> aiohttp.ClientSession:
    """A client session for calls to this stack's own daemons.

    Every daemon enforces the same ``[auth]``, so when a token is configured the session sends
    it as a bearer token. Use it only for configured upstream daemons: calls to anything else
    (model providers, Ollama, a caller-supplied judge URL) get a plain session, so the token
    never leaves the stack.
    """
    token = config.auth.resolved_token()
    headers = dict(kwargs.pop("headers", None) or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return aiohttp.ClientSession(headers=headers, **kwargs)


def make_app(
    name: str,
    config: Config,
    *,
    client_max_size: int | None = None,
    middlewares: list[Any] | None = None,
) -> web.Application:
    """A daemon's base application: middlewares, config under APP_CONFIG, ``GET /health``."""
    section = getattr(config, name, None)
    if client_max_size is None:
        client_max_size = getattr(section, "max_body_bytes", 4 << 20)
    app = web.Application(
        client_max_size=client_max_size,
        middlewares=[
            trace_middleware,
            error_middleware,
            auth_middleware(config.auth),
            *(middlewares or []),
        ],
    )
    app[APP_CONFIG] = config
    app[APP_NAME] = name
    app[BODY_LIMIT] = client_max_size
    app[API_DOCUMENT] = app_document

    async def health(request: web.Request) -> web.Response:
        """Liveness: answered without a token."""
        return json_response({"status": "ok", "service": name})

    r = api_routes(app)
    r.get("/health", health, ok=HealthAnswer, secured=False)
    _serve_description(app)
    return app


class HealthAnswer(msgspec.Struct):
    status: str
    service: str


def app_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s described routes (:mod:`lakehouse.openapi`)."""
    from . import __version__

    return document(
        app[APP_NAME],
        app[API_OPERATIONS],
        version=__version__,
        secured=bool(app[APP_CONFIG].auth.resolved_token()),
    )


def _serve_description(app: web.Application) -> None:
    """``GET /openapi.json`` and ``GET /docs``, built on first use (off the event loop: the
    gateway's imports every daemon) and cached for the app's life."""
    cache: dict[str, bytes] = {}
    lock = asyncio.Lock()

    async def built(request: web.Request) -> dict[str, bytes]:
        async with lock:
            if not cache:
                doc = await asyncio.to_thread(request.app[API_DOCUMENT], request.app)
                cache["json"] = orjson.dumps(doc)
                cache["html"] = render_docs(doc).encode()
        return cache

    async def openapi_json(request: web.Request) -> web.Response:
        """This daemon's OpenAPI 3.1 description."""
        return web.Response(body=(await built(request))["json"], content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        """The description as an HTML page (no script, no outside asset)."""
        return web.Response(
            body=(await built(request))["html"], content_type="text/html", charset="utf-8"
        )

    r = api_routes(app)
    r.get("/openapi.json", openapi_json, ok={"type": "object"})
    r.get("/docs", docs, ok={"type": "string"}, ok_media="text/html")


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def check_bind(host: str, auth: AuthConfig) -> None:
    """Refuse a non-loopback bind without a token (ADR-003), for every daemon."""
    if not is_loopback(host) and not auth.resolved_token():
        raise ConfigError(
            f"refusing to bind {host}: a non-loopback address needs an auth token "
            f"([auth].token or the environment variable {auth.token_env or 'AUTH_TOKEN'})"
        )


def setup_logging(name: str) -> None:
    level = os.environ.get("LAKEHOUSE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def check_port(name: str, host: str, port: int) -> None:
    """Probe the port first so a taken port is a one-line error, not a traceback."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from exc
    finally:
        probe.close()


def run_app(
    app: web.Application | Callable[[], web.Application],
    host: str,
    port: int,
    auth: AuthConfig,
    *,
    workers: int = 1,
) -> None:
    """Serve until SIGINT / SIGTERM (graceful: cleanup contexts run).

    ``app``: the application, or a factory building it (with ``workers`` > 1 every worker
    builds its own after the fork). ``workers`` > 1 runs that many processes on one port
    with SO_REUSEPORT (see :func:`_fork_workers`); this process is worker 0 and stops the
    others when it stops.
    """
    check_bind(host, auth)
    gen0 = gc_gen0()
    first = app() if callable(app) and not isinstance(app, web.Application) else app
    name = first[APP_NAME]
    check_port(name, host, port)
    children: list[int] = []
    if workers > 1:
        children = _fork_workers(workers - 1)
        if children is None:  # a forked worker: its own app, the shared port
            _serve(app() if callable(app) and not isinstance(app, web.Application) else first, host, port, True, gen0)
            os._exit(0)
        log.info("%s listening on http://%s:%d with %d worker processes", name, host, port, workers)
    else:
        log.info("%s listening on http://%s:%d", name, host, port)
    try:
        _serve(first, host, port, workers > 1, gen0)
    finally:
        _stop_workers(children)


def _serve(app: web.Application, host: str, port: int, reuse_port: bool, gen0: int) -> None:
    async def settle(_: web.Application) -> None:
        settle_gc(gen0)

    app.on_startup.append(settle)  # last: after the daemon has loaded what it serves
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        access_log=None,
        handle_signals=True,
        reuse_port=reuse_port or None,
        loop=_event_loop(),
    )


def _fork_workers(n: int) -> list[int] | None:
    """Fork ``n`` worker processes; their pids (in the parent) or None (in a worker).

    Forked before any event loop or thread exists. A worker dies with its parent (Linux
    PR_SET_PDEATHSIG), so a killed daemon leaves no orphan holding its port. The kernel
    spreads new connections over every process bound with SO_REUSEPORT; a keep-alive
    connection stays with the worker that accepted it.
    """
    parent = os.getpid()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            _die_with(parent)
            return None
        pids.append(pid)
    return pids


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def _stop_workers(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM the workers (each stops gracefully), SIGKILL what is left after ``grace``."""
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                break
            time.sleep(0.02)


def run_shared(
    apps: dict[str, tuple[web.Application, str, int]],
    auth: AuthConfig,
    wire: Callable[[dict[str, web.AppRunner]], None] | None = None,
) -> None:
    """Serve several daemons' apps from this one process, each on its own host and port,
    until SIGINT / SIGTERM (``[up].topology = "shared"``). They start in the order given
    and stop in reverse, their cleanup contexts run as with :func:`run_app`. ``wire`` is
    called with every app's runner once all have started up, before any port opens."""
    for name, (_, host, port) in apps.items():
        check_bind(host, auth)
        check_port(name, host, port)
    gen0 = gc_gen0()
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    runners: list[web.AppRunner] = []

    async def start() -> None:
        by_name: dict[str, web.AppRunner] = {}
        for name, (app, _, _) in apps.items():
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            by_name[name] = runner
        if wire is not None:
            wire(by_name)
        settle_gc(gen0)
        for name, (_, host, port) in apps.items():
            await web.TCPSite(by_name[name], host, port).start()
            log.info("%s listening on http://%s:%d (shared process)", name, host, port)

    async def stop() -> None:
        for runner in reversed(runners):
            await runner.cleanup()

    import signal

    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        loop.run_until_complete(start())
        loop.run_until_complete(stopping.wait())
    finally:
        loop.run_until_complete(stop())
        loop.close()


#: the cyclic garbage collector's youngest-generation threshold in a serving daemon
#: (Python's own is 700); LAKEHOUSE_GC_GEN0 overrides it, 0 leaves the collector as Python
#: sets it. docs/performance.md, "The garbage collector under load", has the measurements.
GC_GEN0 = 10_000


def gc_gen0() -> int:
    """The youngest-generation threshold :func:`settle_gc` sets: LAKEHOUSE_GC_GEN0 or
    :data:`GC_GEN0`. ConfigError for a value that is not a whole number >= 0."""
    raw = os.environ.get("LAKEHOUSE_GC_GEN0", "").strip()
    if not raw:
        return GC_GEN0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"LAKEHOUSE_GC_GEN0={raw!r}: expected a whole number >= 0 (0 = Python's own collector settings)")
    return value


def settle_gc(gen0: int) -> None:
    """Set the collector up for serving, once a daemon has started (``gen0`` 0: leave it).

    What the daemon built while starting (modules, types, routes, whatever it loaded: some
    48,000 objects in the benchmark's daemons, almost all of them from imports) is collected once and then frozen out of every later collection, so a full
    collection no longer walks it while requests wait (12-25 ms each, about one a second
    under load, before this); and the youngest generation is collected every ``gen0``
    allocations instead of every 700, because nearly all of a request's objects die with
    it before that. Cyclic garbage made while serving is still collected, only later."""
    if gen0 == 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
    log.info("garbage collector: %d objects frozen, the youngest generation collected every %d allocations",
             gc.get_freeze_count(), gen0)


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (10-15% more requests per second on vectord, README),
    else asyncio's; LAKEHOUSE_UVLOOP=0 forces asyncio's."""
    if os.environ.get("LAKEHOUSE_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
