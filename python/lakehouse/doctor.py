"""``lakehouse doctor``: what is configured and what is reachable.

Prints, for the effective configuration (file, environment, flags): where the data lives,
the auth mode, Langfuse, each daemon's URL and whether its ``GET /health`` answers, the
storage backend, the embedder, the chat providers (which keys are present, by variable name
only: values are never printed), the model tiers, validatord's roster (where it comes from
and, when validatord answers, how many workers it holds), and warnings about settings that
will not work together (among them: validatord without a roster). Always exits 0: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import IO, Any

import aiohttp

from .config import Config, env_overrides, load_config
from .langfuse import ENV_PUBLIC, ENV_SECRET, ENV_URL, LangfuseSettings
from .services import DAEMONS
from .web import is_loopback

__all__ = ["main", "report"]


async def _probe(session: aiohttp.ClientSession, url: str, expect: str | None) -> str:
    """``up`` / ``down (why)`` for ``GET url``; with ``expect``, the /health service name."""
    try:
        async with session.get(url) as resp:
            body: Any = None
            if expect is not None:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
            if resp.status != 200:
                return f"down (HTTP {resp.status})"
            if expect is not None:
                service = body.get("service") if isinstance(body, dict) else None
                if service != expect:
                    return f"down (something else answers: {service or 'not a lakehouse daemon'})"
            return "up"
    except TimeoutError:
        return "down (no answer in time)"
    except aiohttp.ClientConnectorError as exc:
        err = exc.os_error
        return f"down ({os.strerror(err.errno).lower() if err.errno else err})"
    except aiohttp.ClientError as exc:
        return f"down ({exc or type(exc).__name__})"


def _s3_status(config: Config) -> str:
    """Whether the configured bucket answers (boto3, short timeouts, no retries)."""
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = config.s3
    kwargs: dict[str, Any] = {
        "region_name": s3.region,
        "config": BotoConfig(
            connect_timeout=2,
            read_timeout=3,
            retries={"max_attempts": 1},
            s3={"addressing_style": s3.url_style},
        ),
    }
    if s3.endpoint:
        kwargs["endpoint_url"] = s3.endpoint
    if s3.access_key:
        kwargs["aws_access_key_id"] = s3.access_key
        kwargs["aws_secret_access_key"] = s3.secret_key
    try:
        boto3.client("s3", **kwargs).head_bucket(Bucket=s3.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        return f"unreachable (bucket answers {code})"
    except BotoCoreError as exc:
        return f"unreachable ({exc})"
    return "reachable"


def _auth_lines(config: Config) -> list[str]:
    auth = config.auth
    if not auth.resolved_token():
        where = f"[auth].token and ${auth.token_env}" if auth.token_env else "[auth].token"
        return [f"off (no token: {where} empty); daemons may bind loopback addresses only"]
    source = "[auth].token" if auth.token else f"${auth.token_env}"
    line = f"on: bearer token from {source}"
    extra = [t for t in auth.secondary_tokens if t]
    if extra:
        line += f", {len(extra)} secondary token(s)"
    ips = ", ".join(auth.allowed_ips) if auth.allowed_ips else "any address"
    return [line, f"allow-list: {ips}"]


def _warnings(config: Config) -> list[str]:
    out = []
    token = config.auth.resolved_token()
    for name in DAEMONS:
        host = config.section(name).host
        if not token and not is_loopback(host):
            out.append(
                f"[{name}].host is {host} but no auth token is set: {name} will refuse to start"
            )
    if token and config.auth.allowed_ips:
        networks = [ipaddress.ip_network(c, strict=False) for c in config.auth.allowed_ips]
        loopback = ipaddress.ip_address("127.0.0.1")
        if not any(loopback in n for n in networks):
            out.append(
                "[auth].allowed_ips does not include 127.0.0.1: daemons answer 403 to the "
                "gateway and to each other on loopback (add 127.0.0.1/32)"
            )
    ports: dict[tuple[str, int], str] = {}
    for name in DAEMONS:
        sec = config.section(name)
        key = (sec.host, sec.port)
        if sec.port and key in ports:
            out.append(f"[{ports[key]}].port and [{name}].port are both {sec.port}")
        ports[key] = name
    return out


async def _roster(session: aiohttp.ClientSession, config: Config) -> dict[str, Any] | str:
    """validatord's ``GET /roster`` answer, or why there is none."""
    token = config.auth.resolved_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(f"{config.base_url('validatord')}/roster", headers=headers) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 200 and isinstance(body, dict) and "count" in body:
                return body
            return f"GET /roster answered {resp.status}"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"GET /roster failed ({exc or type(exc).__name__})"


def _roster_source(config: Config) -> str:
    section = config.validatord
    if section.roster_path:
        return f"file {config.path(section.roster_path)}"
    if section.roster_dataset:
        return f"dataset {section.roster_dataset!r} (through queryd)"
    return ""


def _roster_lines(config: Config, live: dict[str, Any] | str | None) -> tuple[str, list[str]]:
    """The report's roster line, and the warnings about validatord's roster."""
    source = _roster_source(config)
    warnings = []
    if not source:
        warnings.append(
            "validatord has no roster ([validatord].roster_path and roster_dataset are empty): "
            "every fill's worker-existence check fails. Set roster_path to a roster file "
            "(lakehouse gen-roster --format jsonl) or roster_dataset to an ingested dataset"
        )
    text = source or "none configured"
    if isinstance(live, dict):
        text += f": validatord holds {live['count']:,} workers"
        if live.get("count") == 0 and source:
            why = f" ({live['last_error']})" if live.get("last_error") else ""
            warnings.append(
                f"validatord's roster is empty{why}: fix the source, then POST /roster/reload"
            )
    elif isinstance(live, str):
        text += f": {live}"
    else:
        text += ": validatord not answering"
    return text, warnings


async def _gather(config: Config, timeout: float) -> dict[str, Any]:
    checks: dict[str, tuple[str, str | None]] = {
        f"daemon:{name}": (f"{config.base_url(name)}/health", name) for name in DAEMONS
    }
    if config.embedd.provider == "ollama":
        checks["embedd:ollama"] = (f"{config.embedd.ollama_url.rstrip('/')}/api/tags", None)
    if config.chatd.ollama_url:
        checks["chatd:ollama"] = (f"{config.chatd.ollama_url.rstrip('/')}/api/tags", None)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        results = await asyncio.gather(
            *(_probe(session, url, expect) for url, expect in checks.values())
        )
        out: dict[str, Any] = dict(zip(checks, results, strict=True))
        if out["daemon:validatord"] == "up":
            out["validatord:roster"] = await _roster(session, config)
    if config.storaged.backend == "s3":
        out["s3"] = await asyncio.to_thread(_s3_status, config)
    return out


def report(
    config: Config, *, config_source: str, timeout: float = 1.0, out: IO[str] | None = None
) -> None:
    """Print the doctor's report for ``config`` to ``out`` (default: standard output)."""
    from .chat.registry import build_registry

    out = out if out is not None else sys.stdout

    status = asyncio.run(_gather(config, timeout))

    def line(label: str, text: str) -> None:
        out.write(f"{label:<10} {text}\n")

    data_dir = Path(config.data_dir).resolve()
    line("config", config_source)
    line("data_dir", f"{data_dir} ({'exists' if data_dir.is_dir() else 'will be created'})")
    for i, text in enumerate(_auth_lines(config)):
        line("auth" if i == 0 else "", text)
    lf = LangfuseSettings.from_env()
    if lf is None:
        missing = [k for k in (ENV_URL, ENV_PUBLIC, ENV_SECRET) if not os.environ.get(k, "").strip()]
        line("langfuse", f"off ({', '.join(missing)} not set)")
    else:
        line("langfuse", f"on, traces to {lf.url} (gateway)")

    out.write("\ndaemons\n")
    width = max(len(n) for n in DAEMONS)
    answering = 0
    for name in sorted(DAEMONS, key=lambda n: config.section(n).port):
        state = status[f"daemon:{name}"]
        answering += state == "up"
        out.write(f"  {name:<{width}}  {config.base_url(name):<24}  {state}\n")
    out.write(f"  {answering} of {len(DAEMONS)} answering\n\n")

    if config.storaged.backend == "local":
        root = config.path(config.storaged.root) if config.storaged.root else Path(config.data_dir) / "objects"
        line("storage", f"local directory {Path(root).resolve()}")
    else:
        s3 = config.s3
        where = s3.endpoint or "AWS"
        creds = "keys from [s3]" if s3.access_key else "boto3's credential chain"
        line("storage", f"s3 bucket {s3.bucket!r} at {where} ({creds}): {status['s3']}")
    if config.embedd.provider == "hash":
        line("embedder", f"hash (built in), {config.embedd.dimension} dimensions")
    else:
        model = config.embedd.default_model or "the provider's default"
        line(
            "embedder",
            f"ollama at {config.embedd.ollama_url}, model {model}: {status['embedd:ollama']}",
        )

    key_dir = config.path(config.chatd.key_dir)
    registry = build_registry(config.chatd, key_dir=key_dir)
    chat_lines = []
    for name, provider in registry.providers.items():
        state = "registered"
        if name == "ollama":
            state += f" at {provider.base_url}: {status.get('chatd:ollama', 'not checked')}"
        else:
            env_name = getattr(config.chatd, f"{name}_key_env", "")
            state += f" (key present, ${env_name} or key file)"
        if name in registry.disabled:
            state += ", disabled by [chatd].disabled_providers"
        chat_lines.append(f"{name}: {state}")
    for name, why in registry.missing.items():
        chat_lines.append(f"{name}: not registered ({why})")
    for i, text in enumerate(chat_lines):
        line("chat" if i == 0 else "", text)
    tiers = ", ".join(
        f"{k}={v}" for k, v in vars(config.models).items() if isinstance(v, str)
    )
    line("models", tiers)
    roster_text, roster_warnings = _roster_lines(config, status.get("validatord:roster"))
    line("roster", roster_text)

    warnings = _warnings(config) + roster_warnings
    if warnings:
        out.write("\nwarnings\n")
        for w in warnings:
            out.write(f"  - {w}\n")


def main(argv: list[str]) -> int:
    """``lakehouse doctor [--config F] [--data-dir D] [--timeout S]``."""
    parser = argparse.ArgumentParser(
        prog="lakehouse doctor", description="show what is configured and what is reachable"
    )
    parser.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
    parser.add_argument("--data-dir", help="data directory (default: ./lakehouse-data)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per reachability check")
    args = parser.parse_args(argv)
    config = load_config(args.config, data_dir=args.data_dir)
    if args.config:
        source = str(Path(args.config).resolve())
    elif Path("lakehouse.toml").exists():
        source = str(Path("lakehouse.toml").resolve())
    else:
        source = "built-in defaults (no ./lakehouse.toml)"
    overrides = env_overrides()
    if overrides:
        source += f"; environment overrides: {', '.join(overrides)}"
    report(config, config_source=source, timeout=args.timeout)
    return 0
