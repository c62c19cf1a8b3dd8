"""Writing ``lakehouse.toml``: the effective configuration, and the commented example.

:func:`dump_toml` renders a :class:`~lakehouse.config.Config` as TOML that
:func:`~lakehouse.config.load_config` reads back to an equal value (``lakehouse up`` hands
each daemon the stack's exact configuration this way). :func:`example_toml` renders the
defaults with a comment on every key, taken from the ``#:`` comments in config.py; the
repository's ``lakehouse.example.toml`` is its output::

    lakehouse config --example > lakehouse.example.toml

``lakehouse config [--config F] [--data-dir D]`` prints the effective configuration (file,
then environment overrides), with secrets masked.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
from typing import Any

from .config import OTHER_ENV_VARS, SECTIONS, Config, load_config

__all__ = ["dump_toml", "example_toml", "toml_value", "main"]

#: keys whose values are secrets: masked by ``lakehouse config``
SECRET_KEYS = frozenset({("auth", "token"), ("auth", "secondary_tokens"), ("s3", "secret_key")})

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """One configuration value (str, int, float, bool or list of str) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # always has "." or "e": a TOML float
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a configuration value")


def dump_toml(config: Config, *, mask_secrets: bool = False) -> str:
    """``config`` as TOML, every key written (``load_config`` reads it back equal)."""
    lines = [f"data_dir = {toml_value(config.data_dir)}"]
    for name in SECTIONS:
        section = config.section(name)
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if mask_secrets and (name, f.name) in SECRET_KEYS and value:
                value = "***" if isinstance(value, str) else ["***"] * len(value)
            lines.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


# -- the commented example -------------------------------------------------------------------

_FIELD = re.compile(r"^\s+(\w+)\s*:")

#: comments for keys that config.py leaves uncommented (shared by many sections)
_GENERIC = {
    "host": "bind address; a non-loopback address refuses to start without an auth token",
    "port": "TCP port",
    "max_body_bytes": "request body cap in bytes for JSON routes (413 above it)",
}


def _field_comments(cls: type) -> dict[str, list[str]]:
    """The ``#:`` comment lines written just above each field, for ``cls`` and its bases."""
    comments: dict[str, list[str]] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = _FIELD.match(line)
            if match and pending:
                comments[match.group(1)] = pending
            if stripped and not stripped.startswith("#"):
                pending = []
    return comments


def _section_header(name: str) -> list[str]:
    from .config import DAEMON_PORTS

    cls = SECTIONS[name]
    if name in DAEMON_PORTS:
        from .services import DAEMONS

        summary = DAEMONS[name].summary if name in DAEMONS else ""
        return [f"{name} (:{DAEMON_PORTS[name]}): {summary}".rstrip(": ")]
    doc = inspect.getdoc(cls) or ""
    return [line for line in doc.splitlines() if line.strip()] or [name]


#: comments for keys of sections whose config.py fields carry none
_EXTRA = {
    ("storaged", "max_put_bytes_vectors"): "the PUT cap for keys under _vectors/ (saved indexes)",
    ("matrixd", "playbook_corpus"): "default corpus of playbook memory (the reference's name)",
    ("chatd", "ollama_url"): "local Ollama (model names without a provider prefix go here)",
    ("chatd", "ollama_cloud_key_env"): "environment variable holding the Ollama Cloud key",
    ("chatd", "openrouter_key_env"): "environment variable holding the OpenRouter key",
    ("chatd", "opencode_key_env"): "environment variable holding the OpenCode key",
    ("chatd", "kimi_key_env"): "environment variable holding the Kimi key",
    ("validatord", "chat_timeout_secs"): "seconds one chatd call of /iterate may take",
    ("embedd", "ollama_url"): "Ollama server used by the ollama provider",
    ("s3", "endpoint"): 'S3 endpoint URL; "" = AWS itself',
    ("s3", "bucket"): "bucket holding every object",
    ("s3", "region"): "region name sent to the endpoint",
    ("s3", "secret_key"): "secret key (prefer the environment or ~/.aws to this file)",
    ("s3", "prefix"): "key prefix inside the bucket; \"\" = the bucket root",
    ("models", "local_fast"): "hot path: local, fast (bare names route to local Ollama)",
    ("models", "local_judge"): "local judge (playbook gate, rejudge)",
    ("models", "cloud_judge"): "oversight judge on Ollama Cloud",
    ("models", "cloud_review"): "oversight review model on Ollama Cloud",
    ("models", "frontier_review"): "frontier review model (OpenRouter)",
    ("models", "frontier_arch"): "frontier architecture model (OpenRouter)",
    ("models", "frontier_free"): "frontier model on OpenCode",
    ("models", "weak_models"): "models the downgrade gate treats as weak",
}


def _comment_for(section: str, key: str, comments: dict[str, list[str]]) -> list[str]:
    from .config import DAEMON_PORTS

    if key in comments:
        return comments[key]
    if (section, key) in _EXTRA:
        return [_EXTRA[section, key]]
    if key in _GENERIC:
        return [_GENERIC[key]]
    if key.endswith("_url") and key[:-4] in DAEMON_PORTS:
        return [f'{key[:-4]} base URL; "" = derived from [{key[:-4]}] host and port']
    if key.endswith("_url"):
        return [f"{key[:-4]} base URL"]
    if key.endswith("_bytes"):
        return [key.replace("_", " ")]
    return []


def example_toml() -> str:
    """The default configuration with a comment on every key: ``lakehouse.example.toml``."""
    defaults = Config()  # the embedded defaults, whatever the environment or directory
    out = [
        "# lakehouse.toml: every key with its default value. Every key is optional: copy",
        "# only what you change. Environment variables override the file:",
        "# LAKEHOUSE_<SECTION>_<KEY> (e.g. LAKEHOUSE_VECTORD_PORT=4215), LAKEHOUSE_DATA_DIR;",
        "# lists take a JSON array or a comma-separated string. Command-line flags override",
        "# both. An unknown key or a bad value is an error that names the key; so is an",
        "# unknown LAKEHOUSE_* variable, except these, which are read outside this file:",
        *[f"#   {name}: {text}" for name, text in OTHER_ENV_VARS.items()],
        "#",
        "# Generated from python/lakehouse/config.py by `lakehouse config --example`.",
        "",
        "# Where daemons keep their files (relative paths below resolve under it).",
        f"data_dir = {toml_value(defaults.data_dir)}",
    ]
    for name in SECTIONS:
        section = defaults.section(name)
        comments = _field_comments(type(section))
        out += ["", *[f"# {line}" for line in _section_header(name)], f"[{name}]"]
        for f in dataclasses.fields(section):
            for line in _comment_for(name, f.name, comments):
                out.append(f"# {line}" if line else "#")
            value = getattr(section, f.name)
            line = f"{f.name} = {toml_value(value)}"
            if "_bytes" in f.name and isinstance(value, int) and not isinstance(value, bool):
                line += f"  # {_human_bytes(value)}"
            out.append(line)
    return "\n".join(out) + "\n"


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def main(argv: list[str]) -> int:
    """``lakehouse config``: print the effective configuration, or the commented example."""
    parser = argparse.ArgumentParser(
        prog="lakehouse config", description="print the effective configuration as TOML"
    )
    parser.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
    parser.add_argument("--data-dir", help="data directory (default: ./lakehouse-data)")
    parser.add_argument(
        "--example", action="store_true", help="print the commented defaults (lakehouse.example.toml)"
    )
    parser.add_argument("--show-secrets", action="store_true", help="do not mask tokens and keys")
    args = parser.parse_args(argv)
    if args.example:
        print(example_toml(), end="")
        return 0
    config = load_config(args.config, data_dir=args.data_dir)
    print(dump_toml(config, mask_secrets=not args.show_secrets), end="")
    return 0
