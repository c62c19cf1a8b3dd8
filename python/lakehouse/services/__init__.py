"""The daemons: one module each, every one exposing ``create_app(config) -> web.Application``
(mcpd's is an ASGI app, served by the module's own ``serve(config)``: the MCP SDK's transport).

``DAEMONS`` lists them in the dependency order of contract section 1.6 (a daemon comes after
every daemon it requires); ``lakehouse up`` starts them in this order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..config import Config


@dataclass(frozen=True)
class Daemon:
    name: str
    requires: tuple[str, ...] = ()
    summary: str = ""
    #: served by an ASGI app (mcpd: the MCP SDK's transport), not an aiohttp create_app
    asgi: bool = False

    @property
    def module(self) -> str:
        return f"lakehouse.services.{self.name}"


DAEMONS: dict[str, Daemon] = {
    d.name: d
    for d in [
        Daemon("storaged", (), "objects over a local directory or S3"),
        Daemon("catalogd", ("storaged",), "Parquet dataset manifests"),
        Daemon("ingestd", ("storaged", "catalogd"), "CSV -> Parquet -> storaged -> catalogd"),
        Daemon("queryd", ("catalogd",), "read-only DuckDB SQL over cataloged Parquet"),
        Daemon("vectord", (), "named HNSW indexes, persisted"),
        Daemon("embedd", (), "text -> vectors, with an LRU cache"),
        Daemon("matrixd", ("embedd", "vectord"), "multi-corpus retrieval and the playbook"),
        Daemon("pathwayd", (), "versioned memory traces"),
        Daemon("observerd", (), "op witness, inbox, DAG workflows"),
        Daemon("chatd", (), "LLM dispatcher by model-name prefix"),
        Daemon("validatord", (), "validators and generate -> validate -> correct"),
        Daemon("gateway", (), "the edge: /v1 proxy, auth, trace ids"),
        Daemon("mcpd", ("gateway",), "MCP server: the stack's main operations as tools", asgi=True),
    ]
}

#: the daemons whose create_app builds an aiohttp application (with /openapi.json and /docs)
AIOHTTP_DAEMONS: list[str] = [name for name, d in DAEMONS.items() if not d.asgi]


def app_factory(name: str) -> Callable[[Config], web.Application]:
    """The ``create_app`` of daemon ``name`` (ValueError for an unknown name)."""
    if name not in DAEMONS:
        raise ValueError(f"unknown daemon {name!r} (known: {', '.join(DAEMONS)})")
    module = importlib.import_module(DAEMONS[name].module)
    return module.create_app
