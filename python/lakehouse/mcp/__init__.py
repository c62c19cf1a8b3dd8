"""mcpd's library: the stack as a Model Context Protocol server (docs/mcp.md).

Built on the official MCP Python SDK (the top-level ``mcp`` package, imported absolutely;
this package is ``lakehouse.mcp`` and never shadows it). :mod:`lakehouse.mcp.tools` builds
the server (tools and resources), :mod:`lakehouse.mcp.answers` shapes answers and failures;
``lakehouse/services/mcpd.py`` serves it over streamable HTTP and stdio.
"""

from __future__ import annotations

from .tools import TOOL_NAMES, TRACE_META_KEY, Upstream, build_server, resolve_model

__all__ = ["TOOL_NAMES", "TRACE_META_KEY", "Upstream", "build_server", "resolve_model"]
