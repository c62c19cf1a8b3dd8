"""``GET /docs``: an OpenAPI document rendered as one self-contained HTML page.

Rendered on the server, once, from the same document ``/openapi.json`` serves: no script, no
font, no stylesheet or image from anywhere (the CSS is inline), so the page reads the same on
a machine with no network. Each operation shows its parameters, its request body and its
answers; every schema is a table of fields, and a reference is a link to it.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render"]

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;margin-top:2.2rem}h3{font-size:1.05rem;margin:1.4rem 0 .3rem}
code,.m{font-family:ui-monospace,monospace}table{border-collapse:collapse;margin:.3rem 0 .8rem}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.m{display:inline-block;min-width:4.2rem;font-weight:bold}.get{color:#1565c0}.post{color:#2e7d32}
.put{color:#ef6c00}.delete{color:#c62828}.head{color:#6a1b9a}.d{color:#555}nav a{margin-right:.8rem}
"""


def render(doc: dict[str, Any]) -> str:
    """The HTML page of ``doc`` (an OpenAPI 3.1 document)."""
    info = doc.get("info", {})
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info.get('title', 'API'))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))} <small>{escape(info.get('version', ''))}</small></h1>",
        f"<p class=d>{escape(info.get('description', ''))}</p>",
        '<p>The machine-readable description: <a href="openapi.json"><code>openapi.json</code></a>'
        " (OpenAPI " + escape(doc.get("openapi", "")) + ").</p>",
    ]
    if doc.get("security"):
        out.append(
            "<p>Every route except <code>/health</code> needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>"
        )
    tags: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            tag = (op.get("tags") or ["other"])[0]
            tags.setdefault(tag, []).append((path, method, op))
    out.append(
        "<nav>" + "".join(f'<a href="#tag-{escape(t)}">{escape(t)}</a>' for t in tags) + "</nav>"
    )
    for tag, ops in tags.items():
        out.append(f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>')
        for path, method, op in ops:
            out.append(_operation(path, method, op))
    schemas = doc.get("components", {}).get("schemas", {})
    if schemas:
        out.append("<h2 id=schemas>Schemas</h2>")
        for name, schema in schemas.items():
            out.append(f'<h3 id="schema-{escape(name)}"><code>{escape(name)}</code></h3>')
            out.append(_schema_block(schema))
    out.append("</body></html>")
    return "\n".join(out)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    out = [
        f'<h3 id="{escape(op.get("operationId", ""))}"><span class="m {method}">{method.upper()}</span>'
        f"<code>{escape(path)}</code></h3>",
        f"<p>{escape(op.get('summary', ''))}</p>",
    ]
    params = op.get("parameters") or []
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{_type(p.get('schema', {}))}</td><td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in params
        )
        out.append(
            f"<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th></th></tr>{rows}</table>"
        )
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            out.append(
                f"<p>Body (<code>{escape(media)}</code>): {_type(content.get('schema', {}))}</p>"
            )
    rows = []
    for status, resp in op.get("responses", {}).items():
        if "$ref" in resp:
            what = 'the error body <code>{"error": {"code", "message"}}</code>'
        else:
            contents = resp.get("content", {})
            what = escape(resp.get("description", "")) + "".join(
                f" <code>{escape(media)}</code> {_type(c.get('schema', {}))}"
                for media, c in contents.items()
            )
        rows.append(f"<tr><td>{escape(status)}</td><td>{what}</td></tr>")
    out.append(f"<table><tr><th>status</th><th>answer</th></tr>{''.join(rows)}</table>")
    return "\n".join(out)


def _type(schema: dict[str, Any]) -> str:
    """A short, linked rendering of a schema's type."""
    if not schema:
        return "any JSON"
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{escape(name)}"><code>{escape(name)}</code></a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    if "enum" in schema:
        return " | ".join(f"<code>{escape(repr(v))}</code>" for v in schema["enum"])
    if "const" in schema:
        return f"<code>{escape(repr(schema['const']))}</code>"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object":
        props = schema.get("properties")
        if props:
            return "{" + ", ".join(f"{escape(k)}: {_type(v)}" for k, v in props.items()) + "}"
        extra = schema.get("additionalProperties")
        return f"object of {_type(extra)}" if isinstance(extra, dict) else "object"
    text = escape(str(kind or "any JSON"))
    bounds = [
        f"{k} {schema[k]}"
        for k in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems")
        if k in schema
    ]
    return text + (f" ({escape(', '.join(bounds))})" if bounds else "")


def _schema_block(schema: dict[str, Any]) -> str:
    out = []
    if schema.get("description") or schema.get("title"):
        out.append(f"<p class=d>{escape(schema.get('description') or schema.get('title'))}</p>")
    props = schema.get("properties")
    if not props:
        out.append(f"<p>{_type(schema)}</p>")
        return "\n".join(out)
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{_type(s)}</td>"
        f"<td>{'yes' if name in required else 'no'}</td>"
        f"<td>{escape(str(s.get('default', '')) if 'default' in s else '')}</td>"
        f"<td>{escape(s.get('description', ''))}</td></tr>"
        for name, s in props.items()
    )
    out.append(
        f"<table><tr><th>field</th><th>type</th><th>required</th><th>default</th><th></th></tr>{rows}</table>"
    )
    return "\n".join(out)
