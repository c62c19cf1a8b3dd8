"""Test helper: catalogd, ingestd and queryd on real loopback ports, wired to each other.

The daemons share the object store of ``config`` (local directory or the moto S3 server),
as they do in a deployment; storaged is not needed for this path (they use the store
in-process).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from lakehouse.clients.catalogd import CatalogdClient
from lakehouse.clients.ingestd import IngestdClient
from lakehouse.clients.queryd import QuerydClient
from lakehouse.config import Config
from lakehouse.services import catalogd, ingestd, queryd
from lakehouse.web import internal_session
from testkit import free_port


@dataclass
class DataStack:
    config: Config
    session: aiohttp.ClientSession
    catalog: CatalogdClient
    ingest: IngestdClient
    query: QuerydClient


async def start_data_stack(aiohttp_server, config: Config, **queryd_changes) -> DataStack:
    """Start the three daemons (queryd settings overridable) and return their clients."""
    config = config.replace("catalogd", port=free_port())
    config = config.replace("ingestd", port=free_port())
    config = config.replace("queryd", port=free_port(), **queryd_changes)
    await aiohttp_server(catalogd.create_app(config), port=config.catalogd.port)
    await aiohttp_server(ingestd.create_app(config), port=config.ingestd.port)
    await aiohttp_server(queryd.create_app(config), port=config.queryd.port)
    session = internal_session(config)
    return DataStack(
        config=config,
        session=session,
        catalog=CatalogdClient(session, config.base_url("catalogd")),
        ingest=IngestdClient(session, config.base_url("ingestd")),
        query=QuerydClient(session, config.base_url("queryd")),
    )
