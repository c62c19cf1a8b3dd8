"""gateway (:3110): the edge. Proxies ``/v1/<x>`` to its daemon's ``/<x>`` (contract 1.3-1.5, 2).

Routes:
- ``GET /health`` (local, always open).
- ``* /v1/<prefix>[/...]`` -> the daemon that owns ``<prefix>`` (see :data:`ROUTES`), with
  ``/v1`` stripped and the path (still percent-encoded, exactly as received) and query string
  kept. Method, headers (minus hop-by-hop ones), status and body pass unchanged in both
  directions; bodies stream, so a 1 GiB storage PUT never sits in the gateway's memory and
  the gateway's own body cap does not apply (each daemon enforces its own).
- Anything else under ``/v1`` -> 404 JSON. A path with a ``.`` or ``..`` segment -> 400.

A body over :data:`BUFFER_LIMIT` (or of unknown length) is sent upstream with ``Expect:
100-continue``, so a daemon's early refusal (storaged's 413 from Content-Length) reaches the
client at once. Upstream failures: not reachable -> 502 naming the daemon; no answer within
``[gateway].upstream_timeout`` seconds of silence -> 504. Once an answer has started to
stream, a failure can only cut the connection (the client sees a short body).

Auth (ADR-003 / ADR-006) and trace ids come from :func:`lakehouse.web.make_app`; the gateway
sends ``X-Lakehouse-Trace-Id`` to every upstream and returns it, and forwards the client's
``Authorization`` header (every daemon enforces the same ``[auth]``). It appends the client
address to ``X-Forwarded-For``; note that the daemons see the gateway's own address, so an
``[auth].allowed_ips`` list must include it (``lakehouse doctor`` warns when it does not).

Langfuse tracing (:mod:`lakehouse.langfuse`) is on when the ``LANGFUSE_*`` variables are set.

Performance: one :class:`aiohttp.ClientSession` for the app, a keep-alive pool of
``[gateway].max_connections``, no cookie jar, no decompression; answers up to
:data:`BUFFER_LIMIT` bytes with a known length are relayed in one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..config import Config
from ..langfuse import LangfuseBatcher, LangfuseSettings
from ..openapi import api_routes, merged_document
from ..web import (
    API_DOCUMENT,
    APP_CONFIG,
    TRACE_HEADER,
    ApiError,
    app_document,
    error_response,
    make_app,
    trace_id,
)

__all__ = ["create_app", "ROUTES", "SESSION", "LANGFUSE", "LOCAL_PEERS", "LocalPeer"]

log = logging.getLogger("lakehouse.gateway")

#: first path segment after ``/v1`` -> the daemon serving it (contract 1.1 and 2).
#: ``/v1/<x>`` and ``/v1/<x>/...`` both go to the daemon, as ``/<x>`` and ``/<x>/...``.
ROUTES: dict[str, str] = {
    "storage": "storaged",
    "catalog": "catalogd",
    "ingest": "ingestd",
    "sql": "queryd",
    "vectors": "vectord",
    "embed": "embedd",
    "pathway": "pathwayd",
    "matrix": "matrixd",
    "observer": "observerd",
    "chat": "chatd",
    "validate": "validatord",
    "iterate": "validatord",
    "roster": "validatord",  # ours: GET /roster, POST /roster/reload
}

#: RFC 9110 section 7.6.1 connection-specific headers, plus those the proxy sets itself
#: (Host: the upstream's; Expect: the gateway already answered 100-continue to the client).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",
    }
)
#: response headers replaced rather than copied (aiohttp computes them for the relay)
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}

#: answers with a known length up to this size are read whole and relayed in one write;
#: longer or unknown-length answers stream chunk by chunk
BUFFER_LIMIT = 256 * 1024

UPSTREAMS: web.AppKey[dict[str, tuple[str, str]]] = web.AppKey("upstreams", dict)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
LANGFUSE: web.AppKey[LangfuseBatcher] = web.AppKey("langfuse", LangfuseBatcher)
DAEMON: web.RequestKey[str] = web.RequestKey("daemon", str)


@dataclass(frozen=True)
class LocalPeer:
    """A daemon serving from the gateway's own process (``[up].topology = "shared"``): its
    app's request handler (routing, middlewares, handler) and its body limit."""

    handle: Callable[[web.Request], Awaitable[web.StreamResponse]]
    body_limit: int
    #: the Host header it would have received over HTTP (its own address)
    host: str


#: daemon -> its app in this process; the gateway hands their requests over in-process
LOCAL_PEERS: web.AppKey[dict[str, LocalPeer]] = web.AppKey("local_peers", dict)


def _copy_headers(src: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    """``src`` without the ``drop`` headers and without any a ``Connection`` header names
    (those are hop-by-hop too, RFC 9110 section 7.6.1)."""
    conn = src.get("Connection")
    if conn:
        drop = drop | {name.strip().lower() for name in conn.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in src.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out


def _request_headers(request: web.Request, tid: str) -> CIMultiDict[str]:
    out = _copy_headers(request.headers, HOP_BY_HOP)
    out[TRACE_HEADER] = tid
    forwarded = request.headers.get("X-Forwarded-For")
    remote = request.remote or "unknown"
    out["X-Forwarded-For"] = f"{forwarded}, {remote}" if forwarded else remote
    return out


def _response_headers(upstream: aiohttp.ClientResponse, tid: str) -> CIMultiDict[str]:
    out = _copy_headers(upstream.headers, _RESPONSE_DROP)
    out[TRACE_HEADER] = tid
    return out


def _target(request: web.Request) -> tuple[str, URL]:
    """The daemon and the upstream URL for a ``/v1/...`` request (ApiError when none); for a
    daemon in this process, the URL is relative (its path and query)."""
    tail = request.match_info["tail"]  # decoded, without the leading "/v1/"
    segment = tail.split("/", 1)[0]
    upstream = request.app[UPSTREAMS].get(segment)
    raw_path = request.rel_url.raw_path
    if upstream is None or not raw_path.startswith("/v1/"):
        raise ApiError.not_found(
            f"no route for /v1/{segment}: the gateway serves /v1/ followed by one of "
            + ", ".join(ROUTES)
        )
    if "." in tail and any(part in (".", "..") for part in tail.split("/")):
        raise ApiError.bad_request("path must not contain '.' or '..' segments")
    daemon, base = upstream
    url = raw_path[3:] if daemon in request.app[LOCAL_PEERS] else base + raw_path[3:]
    query = request.rel_url.raw_query_string
    if query:
        url = f"{url}?{query}"
    return daemon, URL(url, encoded=True)


async def proxy(request: web.Request) -> web.StreamResponse:
    """Relay one ``/v1/...`` request to its daemon and the answer back, streaming bodies."""
    daemon, url = _target(request)
    request[DAEMON] = daemon
    tid = trace_id(request)
    local = request.app[LOCAL_PEERS].get(daemon)
    if local is not None:
        return await _hand_over(request, local, daemon, url, tid)
    session = request.app[SESSION]
    body = request.content if request.body_exists else None
    announced = request.content_length
    try:
        async with session.request(
            request.method,
            url,
            headers=_request_headers(request, tid),
            data=body,
            allow_redirects=False,
            # A large or unknown-length body goes upstream only after the daemon's
            # "100 Continue": a daemon refusing it from the headers alone (storaged's 413 for
            # a PUT announcing 300 MB) is heard at once, even from a client that waits
            # before sending, instead of both sides waiting for the other.
            expect100=body is not None and (announced is None or announced > BUFFER_LIMIT),
        ) as upstream:
            headers = _response_headers(upstream, tid)
            length = upstream.content_length
            if request.method != "HEAD" and length is not None and length <= BUFFER_LIMIT:
                payload = await upstream.read()
                return web.Response(
                    status=upstream.status, reason=upstream.reason, headers=headers, body=payload
                )
            return await _stream_back(request, upstream, headers, daemon)
    except aiohttp.ConnectionTimeoutError as exc:
        raise ApiError.upstream(
            f"{daemon} did not accept a connection at {url.origin()} "
            f"within {request.app[APP_CONFIG].gateway.connect_timeout:g} s"
        ) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        limit = request.app[APP_CONFIG].gateway.upstream_timeout
        raise ApiError(504, f"{daemon} did not answer within {limit:g} s") from exc
    except aiohttp.ClientConnectorError as exc:
        err = exc.os_error
        reason = os.strerror(err.errno).lower() if err.errno else str(err)
        raise ApiError.upstream(f"{daemon} is unreachable at {url.origin()}: {reason}") from exc
    except aiohttp.ClientError as exc:
        raise ApiError.upstream(f"{daemon} failed: {exc or type(exc).__name__}") from exc


async def _hand_over(
    request: web.Request, peer: LocalPeer, daemon: str, url: URL, tid: str
) -> web.StreamResponse:
    """Serve a ``/v1/...`` request by the daemon's app in this process: the request it would
    have received over HTTP (its path, the relayed headers, the same body stream, its own
    body limit) goes through that app's routing and middlewares (trace id, errors, auth),
    without a socket. Only for daemons that answer whole: vectord, embedd and matrixd never
    stream an answer (tests/services/test_gateway.py checks), and one streamed in-process
    would reach the client without the relay's headers.

    ``[gateway].upstream_timeout`` holds as over HTTP: no answer by then is a 504 (on a
    connection then closed), and the daemon's handler runs on to its end, its answer
    dropped, as a daemon's does when the gateway stops waiting for it."""
    headers = _request_headers(request, tid)
    headers["Host"] = peer.host
    if "Transfer-Encoding" in request.headers:  # the body it reads is the client's, as sent
        headers["Transfer-Encoding"] = request.headers["Transfer-Encoding"]
    inner = request.clone(rel_url=url, headers=headers, client_max_size=peer.body_limit)
    limit = request.app[APP_CONFIG].gateway.upstream_timeout
    if not limit:
        return _relayed(await peer.handle(inner), tid)
    handling = asyncio.ensure_future(peer.handle(inner))
    try:
        return _relayed(await asyncio.wait_for(asyncio.shield(handling), limit), tid)
    except TimeoutError:
        if request.writer is not None and request.writer.output_size:
            return await handling  # it is streaming its answer already: not silent
        handling.add_done_callback(_late_answer(daemon, request.method, request.path))
        response = error_response(504, f"{daemon} did not answer within {limit:g} s")
        response.force_close()  # nothing the handler still writes can reach this connection's next request
        return response


def _relayed(response: web.StreamResponse, tid: str) -> web.StreamResponse:
    """A daemon's answer with the headers the HTTP relay would pass on."""
    if not response.prepared:
        _relay_headers(response.headers, tid)
    return response


def _relay_headers(headers: CIMultiDict[str], tid: str) -> None:
    """In place: no hop-by-hop headers (nor those ``Connection`` names), the request's trace id."""
    conn = headers.get("Connection")
    drop = HOP_BY_HOP | ({n.strip().lower() for n in conn.split(",")} if conn else set())
    for name in [n for n in headers if n.lower() in drop]:
        del headers[name]
    headers[TRACE_HEADER] = tid


def _late_answer(daemon: str, method: str, path: str) -> Callable[[asyncio.Future[web.StreamResponse]], None]:
    def done(handling: asyncio.Future[web.StreamResponse]) -> None:
        if not handling.cancelled() and handling.exception() is not None:
            log.warning("%s: %s %s failed after the gateway's 504: %r", daemon, method, path, handling.exception())

    return done


async def _stream_back(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    daemon: str,
) -> web.StreamResponse:
    length = upstream.content_length
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The status line is gone: all that is left is to cut the connection so the client
        # sees a short body rather than a complete-looking one.
        log.warning("%s: answer to %s %s broke off: %r", daemon, request.method, request.path, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


# -- Langfuse ---------------------------------------------------------------------------------


def _langfuse_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        batcher = request.app.get(LANGFUSE)
        if batcher is None or request.path == "/health":
            return await handler(request)
        start = time.time()
        status = 499  # stays so when the client goes away mid-request
        try:
            response = await handler(request)
            status = response.status
            return response
        except ApiError as exc:
            status = exc.status
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            batcher.record_request(
                trace_id=trace_id(request),
                method=request.method,
                path=request.path,
                status=status,
                start=start,
                end=time.time(),
                daemon=request.get(DAEMON),
            )

    return middleware


def _langfuse_ctx(
    settings: LangfuseSettings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        section = app[APP_CONFIG].gateway
        batcher = LangfuseBatcher(
            settings,
            batch_size=section.langfuse_batch_size,
            flush_interval=section.langfuse_flush_interval,
            queue_size=section.langfuse_queue_size,
            timeout=section.langfuse_timeout,
        )
        await batcher.start()
        app[LANGFUSE] = batcher
        log.info("langfuse tracing to %s", settings.url)
        try:
            yield
        finally:
            await batcher.close()

    return ctx


# -- the app ------------------------------------------------------------------------------


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    section = app[APP_CONFIG].gateway
    connector = aiohttp.TCPConnector(
        limit=section.max_connections,
        limit_per_host=0,
        # below aiohttp servers' 75 s, so the gateway, not the daemon, closes idle sockets
        keepalive_timeout=30.0,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None,
            sock_connect=section.connect_timeout,
            sock_read=section.upstream_timeout or None,
        ),
        # a proxy relays bytes: no decompression, no cookie jar, no headers of its own
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        read_bufsize=256 * 1024,
    )
    app[SESSION] = session
    try:
        yield
    finally:
        await session.close()


def create_app(config: Config) -> web.Application:
    """The gateway application for ``config`` (its ``[gateway]`` and ``[auth]`` sections).

    Langfuse tracing is enabled from the environment (``LANGFUSE_URL``,
    ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY``) when all three are set.
    """
    settings = LangfuseSettings.from_env()
    app = make_app(
        "gateway", config, middlewares=[_langfuse_middleware()] if settings else None
    )
    app[UPSTREAMS] = {
        segment: (daemon, config.upstream("gateway", daemon)) for segment, daemon in ROUTES.items()
    }
    # filled, when daemons share the gateway's process, before its port opens (lakehouse.stack)
    app[LOCAL_PEERS] = {}
    app.cleanup_ctx.append(_session_ctx)
    if settings is not None:
        app.cleanup_ctx.append(_langfuse_ctx(settings))
    api_routes(app).add("*", r"/v1/{tail:[\s\S]*}", proxy, proxy=True)
    app[API_DOCUMENT] = _v1_document
    return app


def _v1_document(app: web.Application) -> dict:
    """The gateway's description: its own routes plus every daemon route it proxies, under
    ``/v1`` (each daemon's app is built, not started, to read its described routes)."""
    from . import DAEMONS, app_factory

    config = app[APP_CONFIG]
    daemons = {
        name: app_document(app_factory(name)(config)) for name in DAEMONS if name in ROUTES.values()
    }
    return merged_document(app_document(app), daemons, ROUTES)
