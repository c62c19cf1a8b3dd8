"""Every daemon's API description: valid OpenAPI 3.1, complete, and readable offline (issue 14.3)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest
from openapi_spec_validator import validate

from lakehouse.config import Config, load_config
from lakehouse.openapi import API_OPERATIONS, openapi_path
from lakehouse.services import AIOHTTP_DAEMONS, app_factory
from lakehouse.services.gateway import ROUTES

NAMES = list(AIOHTTP_DAEMONS)


@pytest.fixture
def auth_config(tmp_path: Path) -> Config:
    cfg = load_config(env={}, data_dir=str(tmp_path / "data"))
    return cfg.replace("auth", token="s3cret")


async def _get(client, path: str, **kw):
    resp = await client.get(path, **kw)
    return resp, await resp.read()


@pytest.mark.parametrize("name", NAMES)
async def test_description_is_valid_and_lists_every_route(name, config, aiohttp_client):
    app = app_factory(name)(config)
    client = await aiohttp_client(app)
    resp, body = await _get(client, "/openapi.json")
    assert resp.status == 200, body
    assert resp.content_type == "application/json"
    doc = msgspec.json.decode(body)
    validate(doc)  # raises on an invalid document
    assert doc["openapi"].startswith("3.1")
    assert "security" not in doc  # no token configured: nothing to send

    described = {(p, m.upper()) for p, item in doc["paths"].items() for m in item}
    routes = list(app.router.routes())
    assert routes
    for route in routes:
        path = openapi_path(route.resource.canonical)
        if name == "gateway" and path == "/v1/{tail}":
            continue  # the proxy: checked below, through the daemons it reaches
        assert (path, route.method) in described, f"{name}: {route.method} {path} is not described"
    # and nothing is described that the app does not serve
    served = {(openapi_path(r.resource.canonical), r.method) for r in routes}
    for path, method in described:
        if not path.startswith("/v1/"):
            assert (path, method) in served, f"{name}: {method} {path} is described but not served"


async def test_gateway_describes_what_it_proxies_under_v1(config, aiohttp_client):
    client = await aiohttp_client(app_factory("gateway")(config))
    _, body = await _get(client, "/openapi.json")
    doc = msgspec.json.decode(body)
    validate(doc)
    for segment, daemon in ROUTES.items():
        sub = app_factory(daemon)(config)
        ops = [op for op in sub[API_OPERATIONS] if openapi_path(op.path).split("/")[1] == segment]
        assert ops, f"{daemon} has no route under /{segment}"
        for op in ops:
            item = doc["paths"].get("/v1" + openapi_path(op.path))
            assert item is not None and op.method.lower() in item, (segment, op.method, op.path)
            # the daemon's own schema, renamed: vectord's SearchRequest is not matrixd's
            responses = item[op.method.lower()]["responses"]
            assert {"502", "504"} <= set(responses)
    # no daemon-local route leaks in (chatd's /providers is not under a gateway prefix)
    assert "/v1/providers" not in doc["paths"] and "/v1/health" not in doc["paths"]
    names = doc["components"]["schemas"]
    assert "vectord.SearchRequest" in names and "matrixd.SearchRequest" in names
    assert names["vectord.SearchRequest"] != names["matrixd.SearchRequest"]


async def test_request_schemas_are_the_decoding_types(config, aiohttp_client):
    """The body schema is msgspec's own for the type the handler decodes with: a field added
    to a request type shows in the description with no other edit."""
    from lakehouse.services.vectord import CreateRequest

    client = await aiohttp_client(app_factory("vectord")(config))
    _, body = await _get(client, "/openapi.json")
    doc = msgspec.json.decode(body)
    op = doc["paths"]["/vectors/index"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    (expected,), components = msgspec.json.schema_components(
        [CreateRequest], ref_template="#/components/schemas/{name}"
    )
    assert schema == components["CreateRequest"]
    assert schema["additionalProperties"] is False  # unknown fields are a 400
    assert set(schema["required"]) == {"name", "dimension"}
    assert op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/IndexParams"
    )


async def test_error_bodies_are_described(config, aiohttp_client):
    client = await aiohttp_client(app_factory("validatord")(config))
    _, body = await _get(client, "/openapi.json")
    doc = msgspec.json.decode(body)
    error = doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    error_schema = doc["components"]["schemas"][error["$ref"].rsplit("/", 1)[1]]
    assert error_schema["required"] == ["error"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    validate_op = doc["paths"]["/validate"]["post"]
    assert validate_op["responses"]["400"] == {"$ref": "#/components/responses/Error"}
    # /validate's 422 is the reference's ValidationError, not the error body
    schema = validate_op["responses"]["422"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"Schema", "Completeness", "Consistency", "Policy"}
    assert schema["maxProperties"] == 1


async def test_description_says_a_token_is_needed(auth_config, aiohttp_client):
    client = await aiohttp_client(app_factory("pathwayd")(auth_config))
    resp, _ = await _get(client, "/openapi.json")
    assert resp.status == 401  # the description is behind the token like every route
    resp, body = await _get(client, "/openapi.json", headers={"Authorization": "Bearer s3cret"})
    doc = msgspec.json.decode(body)
    validate(doc)
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert "401" in doc["paths"]["/pathway/add"]["post"]["responses"]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for key, value in attrs:
            if key in ("href", "src", "action", "srcset", "data") and value is not None:
                self.refs.append(value)


@pytest.mark.parametrize("name", ["vectord", "gateway"])
async def test_docs_page_renders_offline(name, config, aiohttp_client):
    client = await aiohttp_client(app_factory(name)(config))
    resp, body = await _get(client, "/docs")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = body.decode()
    parser = _Refs()
    parser.feed(html)
    # nothing fetched: no script, no external stylesheet, image or font
    assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert "url(" not in html and "@import" not in html
    for ref in parser.refs:
        # in-page anchors, or the daemon's own description
        assert ref.startswith("#") or ref == "openapi.json", ref
    resp, _ = await _get(client, "/openapi.json")
    assert resp.status == 200
    # every operation of the description is on the page
    _, body = await _get(client, "/openapi.json")
    doc = msgspec.json.decode(body)
    for item in doc["paths"].values():
        for op in item.values():
            assert f'id="{op["operationId"]}"' in html


async def test_description_is_built_once(config, aiohttp_client):
    client = await aiohttp_client(app_factory("embedd")(config))
    _, first = await _get(client, "/openapi.json")
    _, second = await _get(client, "/openapi.json")
    assert first == second
