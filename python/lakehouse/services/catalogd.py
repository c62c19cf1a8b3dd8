"""catalogd (:3212): Parquet dataset manifests with ADR-020 idempotent registration (§4).

Routes:

    POST   /catalog/register        {name, schema_fingerprint, key?, row_count?, size?,
                                     columns?: [{name, type}]}
                                    -> the manifest plus ``existing`` (200 either way)
    GET    /catalog/manifest/{name} -> the manifest; 404 when unknown
    GET    /catalog/list            -> {manifests: [...], count}   (by name; [] when empty)
    DELETE /catalog/manifest/{name} -> {deleted: true, manifest}   (ours: the data object stays)

A manifest is ``{dataset_id, name, schema_fingerprint, key, row_count, size, columns,
created_at, updated_at}``. Same name and fingerprint -> the same ``dataset_id`` with
``existing: true``; another fingerprint -> 409; an empty name or fingerprint -> 400.

The catalog lives in the object store (in-process, the same backend as storaged) under
``_catalog/manifests/`` and is reloaded on start; see :mod:`lakehouse.data.catalog`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from ..config import Config
from ..data.catalog import Catalog, Column, FingerprintConflict, ManifestNotFound
from ..data.storage import StorageError, open_store
from ..openapi import answers as A
from ..openapi import api_routes
from ..web import ApiError, json_response, make_app, read_json

log = logging.getLogger("lakehouse.catalogd")

CATALOG: web.AppKey[Catalog] = web.AppKey("catalog", Catalog)

#: the name route: "[\s\S]" so that any name (spaces, "/", encoded characters) is matched
NAME_ROUTE = r"/catalog/manifest/{name:[\s\S]+}"


class ColumnSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    type: str


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""
    schema_fingerprint: str = ""
    key: str = ""
    row_count: int | None = None
    size: int | None = None
    columns: list[ColumnSpec] | None = None


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterRequest)
    catalog = request.app[CATALOG]
    columns = None if body.columns is None else [Column(c.name, c.type) for c in body.columns]
    try:
        manifest, existing = await asyncio.to_thread(
            catalog.register,
            body.name,
            body.schema_fingerprint,
            key=body.key,
            row_count=body.row_count,
            size=body.size,
            columns=columns,
        )
    except FingerprintConflict as exc:
        raise ApiError.conflict(str(exc)) from exc
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    except StorageError as exc:
        log.error("catalogd: persisting %r failed: %s", body.name, exc)
        raise ApiError(503, f"catalogd: could not persist the manifest: {exc}") from exc
    if not existing:
        log.info("catalogd: registered %r as %s", manifest.name, manifest.dataset_id)
    return json_response({**manifest.to_json(), "existing": existing})


async def get_manifest(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        manifest = request.app[CATALOG].get(name)
    except ManifestNotFound as exc:
        raise ApiError.not_found(str(exc)) from exc
    return json_response(manifest.to_json())


async def delete_manifest(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        manifest = await asyncio.to_thread(request.app[CATALOG].delete, name)
    except ManifestNotFound as exc:
        raise ApiError.not_found(str(exc)) from exc
    except StorageError as exc:
        raise ApiError(503, f"catalogd: could not delete the manifest: {exc}") from exc
    return json_response({"deleted": True, "manifest": manifest.to_json()})


async def list_manifests(request: web.Request) -> web.Response:
    manifests = request.app[CATALOG].list()
    return json_response({"manifests": [m.to_json() for m in manifests], "count": len(manifests)})


def create_app(config: Config) -> web.Application:
    """catalogd's application (routes in the module docstring)."""
    app = make_app("catalogd", config)

    async def catalog_ctx(app: web.Application) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, config)
        catalog = Catalog(store)
        problems = await asyncio.to_thread(catalog.load)
        log.info(
            "catalogd: %d manifests loaded from %r (%d unreadable)",
            len(catalog),
            store,
            len(problems),
        )
        app[CATALOG] = catalog
        yield
        await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(catalog_ctx)
    r = api_routes(app)
    r.post("/catalog/register", register, summary="Register a dataset (idempotent by name and fingerprint)", body=RegisterRequest, ok=A.Registered, errors=(409, 503))
    r.get(NAME_ROUTE, get_manifest, summary="One dataset's manifest", ok=A.Manifest, errors=(404,))
    r.delete(NAME_ROUTE, delete_manifest, summary="Forget a dataset (its data object stays)", ok=A.ManifestDeleted, errors=(404, 503))
    r.get("/catalog/list", list_manifests, summary="Every manifest, by name", ok=A.ManifestList)
    return app
