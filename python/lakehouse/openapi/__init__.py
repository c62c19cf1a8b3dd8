"""Every daemon's API description: OpenAPI 3.1, built from the msgspec types that decode bodies.

A daemon registers each route together with what it takes and answers, in one place::

    r = api_routes(app)
    r.post("/vectors/index/{name}/search", handle_search,
           body=SearchRequest, ok=answers.VectorSearch, errors=(400, 404))

``body`` is the very type the handler passes to ``read_json`` / ``decode_json``, so the
description cannot drift from what the daemon accepts; ``ok`` (a msgspec type or a JSON
Schema dict) describes the answer, and ``errors`` the statuses answered with the error body
``{"error": {"code", "message"}}``. Registration stores an :class:`Operation` beside the
route; nothing runs per request. :func:`lakehouse.web.make_app` serves the result:

- ``GET /openapi.json``: the document, built on first use and cached (:func:`document`);
- ``GET /docs``: an HTML page rendering it (:mod:`lakehouse.openapi.page`), with no script
  and no asset from anywhere, so it reads the same with no network.

The gateway serves the merged ``/v1`` description (:func:`merged_document`). docs/api.md
has the decisions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

__all__ = [
    "API_OPERATIONS",
    "ApiRoutes",
    "ErrorBody",
    "ErrorDetail",
    "Operation",
    "Param",
    "api_routes",
    "document",
    "merged_document",
    "openapi_path",
]

OPENAPI_VERSION = "3.1.0"


class ErrorDetail(msgspec.Struct):
    #: a stable word per status (``bad_request``, ``not_found``...)
    code: str
    #: what was wrong, in plain words
    message: str


class ErrorBody(msgspec.Struct):
    """Every error answer of every daemon (except where a route says otherwise)."""

    error: ErrorDetail


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    description: str = ""
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One route's description (see :meth:`ApiRoutes.add`)."""

    method: str
    path: str
    summary: str
    body: Any = None
    #: a non-JSON body: media type -> schema (ingestd's CSV, storaged's objects)
    raw_body: Mapping[str, Mapping[str, Any]] | None = None
    ok: Any = None
    status: int = 200
    ok_media: str = "application/json"
    errors: tuple[int, ...] = ()
    #: status -> type or schema, for answers that are not the error body (validatord's 422)
    responses: Mapping[int, Any] = field(default_factory=dict)
    query: tuple[Param, ...] = ()
    #: False for /health: answered without a token
    secured: bool = True
    #: the gateway's catch-all: described by the daemons' own operations, not by itself
    proxy: bool = False


API_OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("api_operations", list)


class ApiRoutes:
    """Adds routes to an app's router and records their :class:`Operation`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        if API_OPERATIONS not in app:
            app[API_OPERATIONS] = []
        self.ops = app[API_OPERATIONS]

    def add(
        self,
        method: str,
        path: str,
        handler: Callable[..., Any],
        *,
        summary: str = "",
        body: Any = None,
        raw_body: Mapping[str, Mapping[str, Any]] | None = None,
        ok: Any = None,
        status: int = 200,
        ok_media: str = "application/json",
        errors: Iterable[int] = (),
        responses: Mapping[int, Any] | None = None,
        query: Iterable[Param] = (),
        secured: bool = True,
        proxy: bool = False,
        **route_kwargs: Any,
    ) -> web.AbstractRoute:
        if method.upper() == "GET":
            route = self.app.router.add_get(path, handler, **route_kwargs)
        else:
            route = self.app.router.add_route(method, path, handler, **route_kwargs)
        doc = (handler.__doc__ or "").strip().split("\n\n", 1)[0]
        self.ops.append(
            Operation(
                method=method.upper(),
                path=path,
                summary=summary or " ".join(doc.split()),
                body=body,
                raw_body=raw_body,
                ok=ok,
                status=status,
                ok_media=ok_media,
                errors=tuple(errors),
                responses=dict(responses or {}),
                query=tuple(query),
                secured=secured,
                proxy=proxy,
            )
        )
        return route

    def get(self, path: str, handler: Callable[..., Any], **kw: Any) -> web.AbstractRoute:
        """A GET route; like aiohttp's ``add_get`` it answers HEAD too unless
        ``allow_head=False``, and the HEAD twin is described as well (no body)."""
        allow_head = kw.pop("allow_head", True)
        route = self.add("GET", path, handler, allow_head=allow_head, **kw)
        if allow_head:
            head = self.ops[-1]
            self.ops.append(
                Operation(
                    method="HEAD",
                    path=path,
                    summary=f"{head.summary} (headers only)",
                    errors=head.errors,
                    query=head.query,
                    secured=head.secured,
                    status=head.status,
                )
            )
        return route

    def post(self, path: str, handler: Callable[..., Any], **kw: Any) -> web.AbstractRoute:
        return self.add("POST", path, handler, **kw)

    def put(self, path: str, handler: Callable[..., Any], **kw: Any) -> web.AbstractRoute:
        return self.add("PUT", path, handler, **kw)

    def delete(self, path: str, handler: Callable[..., Any], **kw: Any) -> web.AbstractRoute:
        return self.add("DELETE", path, handler, **kw)

    def head(self, path: str, handler: Callable[..., Any], **kw: Any) -> web.AbstractRoute:
        return self.add("HEAD", path, handler, **kw)


def api_routes(app: web.Application) -> ApiRoutes:
    """The described-route registrar of ``app`` (see the module docstring)."""
    return ApiRoutes(app)


# -- the document -----------------------------------------------------------------------------

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
#: statuses every secured operation may answer: the auth middleware's
_AUTH_ERRORS = (401, 403)
#: statuses every operation with a JSON body may answer: malformed, unknown field, too large
_BODY_ERRORS = (400, 413)
_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad request: malformed JSON, an unknown field, a wrong type or a bad value",
    401: "Missing or invalid bearer token (when [auth] configures one)",
    403: "Client address not in [auth].allowed_ips",
    404: "Not found",
    405: "Method not allowed",
    408: "Timed out",
    409: "Conflict",
    411: "Length required",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable",
    429: "Too many requests",
    502: "An upstream failed",
    503: "Unavailable",
    504: "An upstream timed out",
}


def openapi_path(path: str) -> str:
    """aiohttp's ``/a/{name:regex}`` as OpenAPI's ``/a/{name}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _schema_key(x: Any) -> bool:
    return x is not None and not isinstance(x, Mapping)


def document(
    app_name: str,
    ops: Iterable[Operation],
    *,
    version: str,
    description: str = "",
    secured: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one daemon's operations.

    ``secured``: the daemon requires a bearer token (``[auth]``): secured operations say so.
    """
    ops = [op for op in ops if not op.proxy]
    types: list[Any] = [ErrorBody]
    for op in ops:
        for t in (op.body, op.ok, *op.responses.values()):
            if _schema_key(t) and t not in types:
                types.append(t)
    generated, components = _schema_components(types)
    schema_of = dict(zip(map(id, types), generated, strict=True))

    def schema(x: Any) -> dict[str, Any]:
        if isinstance(x, Mapping):
            return dict(x)
        return schema_of[id(x)]

    error = {"$ref": "#/components/responses/Error"}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        path = openapi_path(op.path)
        item: dict[str, Any] = {
            "operationId": _operation_id(op.method, path),
            "summary": op.summary or f"{op.method} {path}",
            "tags": [path.strip("/").split("/", 1)[0] or app_name],
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
            for name in _PARAM.findall(op.path)
        ]
        params += [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "schema": dict(p.schema),
                **({"description": p.description} if p.description else {}),
            }
            for p in op.query
        ]
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema(op.body)}},
            }
        elif op.raw_body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {media: {"schema": dict(s)} for media, s in op.raw_body.items()},
            }
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": _REASONS.get(op.status, "OK")}
        if op.ok is not None:
            ok["content"] = {op.ok_media: {"schema": schema(op.ok)}}
        responses[str(op.status)] = ok
        # any request may be malformed at the HTTP level (a header that does not parse)
        statuses = {400, *op.errors}
        if op.body is not None or op.raw_body is not None:
            statuses.update(_BODY_ERRORS)
        if op.secured and secured:
            statuses.update(_AUTH_ERRORS)
        for status in sorted(statuses):
            responses[str(status)] = (
                {"description": _REASONS.get(status, "Error")} if op.method == "HEAD" else error
            )
        for status, shape in sorted(op.responses.items()):
            responses[str(status)] = {
                "description": _REASONS.get(status, "Error"),
                "content": {"application/json": {"schema": schema(shape)}},
            }
        item["responses"] = responses
        if secured and not op.secured:
            item["security"] = []
        paths.setdefault(path, {})[op.method.lower()] = item

    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"lakehouse {app_name}",
            "version": version,
            "description": description
            or f'The HTTP API of {app_name}. Errors answer {{"error": {{"code", "message"}}}}.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                "Error": {
                    "description": 'An error, as {"error": {"code", "message"}}',
                    "content": {"application/json": {"schema": schema(ErrorBody)}},
                }
            },
        },
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    if path.endswith("/") and path != "/":
        words += "_slash"  # /storage and /storage/ are two operations
    return f"{method.lower()}_{words}"


_SCHEMA_LOCK = threading.Lock()


def _schema_components(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """msgspec's JSON Schema of ``types``, references pointing into ``components``.

    A field whose default is a :class:`msgspec.Raw` (vectord's ``metadata``, kept as the
    client's bytes) makes msgspec fail to write the default (``to_builtins`` refuses Raw), so
    while the schema is generated its ``to_builtins`` sees a Raw as the JSON it holds (an
    empty Raw, "absent", as null).
    """
    import msgspec._json_schema as generator  # noqa: PLC0415

    original = generator.to_builtins

    def to_builtins(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, msgspec.Raw):
            return msgspec.json.decode(bytes(obj)) if len(obj) else None
        return original(obj, *args, **kwargs)

    with _SCHEMA_LOCK:
        generator.to_builtins = to_builtins
        try:
            return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
        finally:
            generator.to_builtins = original


def merged_document(
    own: dict[str, Any], daemons: Mapping[str, dict[str, Any]], routes: Mapping[str, str]
) -> dict[str, Any]:
    """The gateway's description: its own operations plus, for every ``/v1/<x>`` it proxies,
    the operations of the daemon serving ``/<x>`` under ``/v1/<x>``.

    ``daemons``: daemon name -> its document; ``routes``: first path segment -> daemon name.
    Component names get the daemon's name as a prefix (``vectord.SearchRequest``): two daemons
    may each have a ``SearchRequest``. Every proxied operation may also answer the gateway's
    own 400 (a ``.`` segment), 502 (upstream unreachable) and 504 (upstream silent).
    """
    doc = msgspec.json.decode(msgspec.json.encode(own))
    schemas = doc["components"]["schemas"]
    for daemon, sub in daemons.items():
        segments = {seg for seg, d in routes.items() if d == daemon}
        renamed = {name: f"{daemon}.{name}" for name in sub["components"]["schemas"]}
        sub = _rename_refs(sub, renamed)
        for name, s in sub["components"]["schemas"].items():
            schemas[renamed[name]] = s
        for path, item in sub["paths"].items():
            if path.strip("/").split("/", 1)[0] not in segments:
                continue  # not reachable through the gateway (/health, /docs, chatd's /providers)
            out = {}
            for method, op in item.items():
                op = dict(op, operationId=f"{daemon}_{op['operationId']}")
                responses = dict(op["responses"])
                for status in ("400", "502", "504"):
                    responses.setdefault(status, {"$ref": "#/components/responses/Error"})
                op["responses"] = dict(sorted(responses.items()))
                out[method] = op
            doc["paths"]["/v1" + path] = out
    return doc


def _rename_refs(node: Any, renamed: Mapping[str, str]) -> Any:
    prefix = "#/components/schemas/"
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(prefix):
                out[k] = prefix + renamed.get(v[len(prefix) :], v[len(prefix) :])
            else:
                out[k] = _rename_refs(v, renamed)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renamed) for v in node]
    return node
