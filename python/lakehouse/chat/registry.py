"""Routing by model name, provider registration, and API keys (contract section 12).

Routing (:func:`route`), first match wins:

===========================  ==============  ==============================
model string                 provider        model sent upstream
===========================  ==============  ==============================
``ollama/<m>``               ollama          ``<m>``
``ollama_cloud/<m>``         ollama_cloud    ``<m>``
``openrouter/<vendor>/<m>``  openrouter      ``<vendor>/<m>``
``opencode/<m>``             opencode        ``<m>``
``kimi/<m>``                 kimi            ``<m>``
``<m>:cloud``                ollama_cloud    ``<m>:cloud`` (as is)
anything else (bare)         ollama          as is
===========================  ==============  ==============================

An explicit prefix beats the ``:cloud`` suffix (``ollama/x:cloud`` goes to the local
Ollama, which can itself proxy cloud models). A name with an unknown ``vendor/`` part and no
known prefix is a bare Ollama name (Ollama names may contain slashes: ``hf.co/org/m``).

Registration (:func:`build_registry`): the local Ollama is registered when
``[chatd].ollama_url`` is set; each cloud provider when its URL is set **and** it has a
key. A key comes from the environment variable named by ``<provider>_key_env`` first, then
from ``<key_dir>/<provider>.env`` (``KEY=value`` lines, ``export`` and quotes allowed, or a
single bare line). An unregistered provider answers 404; one listed in
``[chatd].disabled_providers`` stays listed but answers 503.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ChatdConfig
from .providers import OllamaCloudProvider, OllamaProvider, OpenAICompatProvider, Provider
from .types import ProviderDisabled, ProviderNotFound

__all__ = [
    "PROVIDERS",
    "Registry",
    "build_registry",
    "read_key_file",
    "resolve_key",
    "route",
]

#: every provider chatd knows, in routing-table order
PROVIDERS = ("ollama", "ollama_cloud", "openrouter", "opencode", "kimi")

_PREFIXES = (
    ("ollama/", "ollama"),
    ("ollama_cloud/", "ollama_cloud"),
    ("openrouter/", "openrouter"),
    ("opencode/", "opencode"),
    ("kimi/", "kimi"),
)

_ROUTES = {
    "ollama": ["ollama/<model>", "<bare model>"],
    "ollama_cloud": ["ollama_cloud/<model>", "<model>:cloud"],
    "openrouter": ["openrouter/<vendor>/<model>"],
    "opencode": ["opencode/<model>"],
    "kimi": ["kimi/<model>"],
}


def route(model: str) -> tuple[str, str]:
    """``(provider, upstream model)`` for a model string; ValueError when nothing is left."""
    name = model.strip()
    if not name:
        raise ValueError("model: must be a non-empty string")
    for prefix, provider in _PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if not rest:
                raise ValueError(f"model {model!r}: no model name after {prefix!r}")
            return provider, rest
    if name.endswith(":cloud"):
        return "ollama_cloud", name
    return "ollama", name


def read_key_file(path: Path, env_name: str) -> str:
    """The key in a provider ``.env`` file ("" when absent, empty or unreadable).

    Accepts ``ENV_NAME=value`` (optionally ``export``-ed and quoted) or, for a file of one
    line without ``=``, that line. Other variables in the file are ignored.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    for line in lines:
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, sep, value = line.partition("=")
        if sep and key.strip() == env_name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return value.strip()
    if len(lines) == 1 and "=" not in lines[0]:
        return lines[0]
    return ""


def resolve_key(env_name: str, key_file: Path | None, env: Mapping[str, str]) -> str:
    """The reference's ResolveKey: the environment first, then the key file."""
    if env_name and env.get(env_name, "").strip():
        return env[env_name].strip()
    if key_file is not None:
        return read_key_file(key_file, env_name)
    return ""


@dataclass
class Registry:
    """The registered providers, by name."""

    providers: dict[str, Provider] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    #: why each known provider is not registered (shown in errors)
    missing: dict[str, str] = field(default_factory=dict)

    def resolve(self, model: str) -> tuple[Provider, str]:
        """The provider and upstream model for ``model``.

        ValueError for an empty name; :class:`ProviderNotFound` (404) when the provider is
        not registered; :class:`ProviderDisabled` (503) when it is switched off.
        """
        name, upstream = route(model)
        provider = self.providers.get(name)
        if provider is None:
            why = self.missing.get(name, "not configured")
            raise ProviderNotFound(f"{model!r} routes to {name!r}, which is not registered ({why})")
        if name in self.disabled:
            raise ProviderDisabled(f"{model!r} routes to {name!r}, which is disabled by configuration")
        return provider, upstream

    def describe(self) -> dict[str, Any]:
        """``GET /providers``: the registered names, and details without any key."""
        return {
            "providers": list(self.providers),
            "details": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "base_url": p.base_url,
                    "enabled": p.name not in self.disabled,
                    "authenticated": bool(p.api_key),
                    "routes": _ROUTES[p.name],
                }
                for p in self.providers.values()
            ],
        }


def build_registry(
    cfg: ChatdConfig, *, key_dir: Path | None, env: Mapping[str, str] | None = None
) -> Registry:
    """Register the providers ``cfg`` enables (reads key files: call off the event loop)."""
    env = os.environ if env is None else env
    registry = Registry(disabled=frozenset(cfg.disabled_providers))
    timeout = cfg.timeout_secs
    if cfg.ollama_url:
        registry.providers["ollama"] = OllamaProvider("ollama", cfg.ollama_url, "", timeout)
    else:
        registry.missing["ollama"] = "[chatd].ollama_url is empty"
    cloud: list[tuple[str, str, str, type[Provider]]] = [
        ("ollama_cloud", cfg.ollama_cloud_url, cfg.ollama_cloud_key_env, OllamaCloudProvider),
        ("openrouter", cfg.openrouter_url, cfg.openrouter_key_env, OpenAICompatProvider),
        ("opencode", cfg.opencode_url, cfg.opencode_key_env, OpenAICompatProvider),
        ("kimi", cfg.kimi_url, cfg.kimi_key_env, OpenAICompatProvider),
    ]
    for name, url, env_name, cls in cloud:
        key_file = key_dir / f"{name}.env" if key_dir is not None else None
        key = resolve_key(env_name, key_file, env)
        if not url:
            registry.missing[name] = f"[chatd].{name}_url is empty"
        elif not key:
            where = f"${env_name}" + (f" or {key_file}" if key_file is not None else "")
            registry.missing[name] = f"no API key in {where}"
        else:
            registry.providers[name] = cls(name, url, key, timeout)
    return registry
