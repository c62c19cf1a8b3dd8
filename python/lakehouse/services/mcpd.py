"""mcpd (:3222 + stdio): the stack as a Model Context Protocol server (SPEC section 4, docs/mcp.md).

Routes (HTTP):
- ``GET /health`` -> ``{"status": "ok", "service": "mcpd"}`` (always open);
- ``/mcp``: the MCP streamable HTTP transport of the official SDK (``POST`` JSON-RPC; the
  server runs stateless and answers JSON, so any HTTP client can call it).

The tools and resources are :func:`lakehouse.mcp.build_server`'s; each calls through the
gateway (``[mcpd].gateway_url``, default the configured gateway). ``lakehouse mcp`` serves
the same server on stdio, for desktop clients that start it as a subprocess.

Unlike the other daemons this is not an aiohttp application: the SDK's transport is ASGI
(Starlette), so :func:`create_app` returns an ASGI app and :func:`serve` runs it with uvicorn
(``lakehouse serve mcpd`` calls it). The same ``[auth]`` guards it as every daemon
(:class:`lakehouse.web.AuthGate`: 403 outside the allow-list, 401 without the bearer token,
``/health`` open); stdio has no network side and no auth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

import orjson

from ..config import Config, load_config
from ..mcp import Upstream, build_server
from ..web import AuthGate, check_bind, check_port, setup_logging

__all__ = ["create_app", "serve", "stdio_main", "MCP_PATH"]

log = logging.getLogger("lakehouse.mcpd")

MCP_PATH = "/mcp"

Scope = dict[str, Any]


def _json(status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, list, bytes]:
    data = orjson.dumps(body)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    return status, head + (headers or []), data


async def _send(send: Any, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class McpdApp:
    """The ASGI app: ``/health``, the auth gate, then the SDK's streamable HTTP app."""

    def __init__(self, config: Config, upstream: Upstream, inner: Any) -> None:
        self.config = config
        self.upstream = upstream
        self.inner = inner
        self.gate = AuthGate(config.auth)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if scope["path"] == "/health":
            await _send(send, *_json(200, {"status": "ok", "service": "mcpd"}))
            return
        if self.gate.enabled:
            headers = dict(scope.get("headers") or [])
            client = scope.get("client")
            refused = self.gate.check(client[0] if client else None, headers.get(b"authorization", b""))
            if refused is not None:
                status, message = refused
                extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
                code = "unauthorized" if status == 401 else "forbidden"
                await _send(send, *_json(status, {"error": {"code": code, "message": message}}, extra))
                return
        await self.inner(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Any, send: Any) -> None:
        """The SDK's lifespan (its session manager), then close the gateway session."""

        async def on_send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.upstream.close()
            await send(message)

        await self.inner(scope, receive, on_send)


def create_app(config: Config, *, upstream: Upstream | None = None) -> McpdApp:
    """mcpd's ASGI application for ``config``."""
    upstream = upstream or Upstream(config)
    server = build_server(config, upstream, transport="http")
    host = config.mcpd.host
    inner = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        max_request_body_size=config.mcpd.max_body_bytes,
        host=host,
    )
    return McpdApp(config, upstream, inner)


def serve(config: Config) -> None:
    """Serve mcpd on ``[mcpd].host:port`` until SIGINT / SIGTERM (``lakehouse serve mcpd``)."""
    import uvicorn

    section = config.mcpd
    check_bind(section.host, config.auth)
    check_port("mcpd", section.host, section.port)
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=section.host,
            port=section.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    log.info("mcpd listening on http://%s:%d%s", section.host, section.port, MCP_PATH)
    asyncio.run(server.serve())


# -- lakehouse mcp (stdio) -----------------------------------------------------------------


def stdio_main(argv: list[str]) -> int:
    """``lakehouse mcp``: the MCP server on standard input and output."""
    parser = argparse.ArgumentParser(
        prog="lakehouse mcp",
        description=(
            "serve the stack's MCP tools on stdin/stdout, for desktop MCP clients; every tool "
            "calls the gateway, so the stack must be up (lakehouse up)"
        ),
        epilog=(
            "example, as a client's mcpServers entry: "
            '{"lakehouse": {"command": "lakehouse", "args": ["mcp", "--gateway", '
            '"http://127.0.0.1:3110"]}}'
        ),
    )
    parser.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
    parser.add_argument(
        "--gateway", help="gateway base URL (default: [mcpd].gateway_url, else the configured gateway)"
    )
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.gateway:
        config = config.replace("mcpd", gateway_url=args.gateway)
    # stdout carries the protocol: logs go to stderr only
    setup_logging("mcpd")
    upstream = Upstream(config)
    server = build_server(config, upstream, transport="stdio")

    async def run() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await upstream.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(stdio_main(sys.argv[1:]))
