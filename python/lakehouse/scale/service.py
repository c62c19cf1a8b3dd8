"""vectord's sharded indexes: what the daemon needs beside its plain registry.

vectord keeps its :class:`~lakehouse.vectors.registry.VectorRegistry` for the indexes created with
1 shard x 1 replica (today's code path, unchanged) and a :class:`ShardedIndexes` for the
others. A sharded index answers the same routes with the same shapes; its replicas run on
the Ray cluster named by ``[vectord].ray_address`` ("" = none: creating one is refused with
a 400 saying what is needed; an address that does not answer: a 503 within seconds, not a
hang in ``ray.init``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..config import Config
from ..data.storage import ObjectStore, open_store, put_limit
from ..vectors.registry import IndexExists, IndexNotFound, IndexParams
from ..web import ApiError
from .backend import Backend
from .ray_probe import unreachable
from .router import ShardedIndex, ShardUnavailable, read_layouts

__all__ = ["SHARD_BACKEND", "ClusterUnreachable", "ShardedIndexes", "ShardingUnavailable", "shard_errors_middleware"]

log = logging.getLogger("lakehouse.vectord")

BackendFactory = Callable[[], Backend]
#: set on vectord's app before it starts to run sharded indexes on another backend (tests:
#: the in-process LocalBackend); by default the Ray cluster of ``[vectord].ray_address``
SHARD_BACKEND: web.AppKey[BackendFactory] = web.AppKey("shard_backend", BackendFactory)  # type: ignore[arg-type]


class ShardingUnavailable(RuntimeError):
    """Sharded indexes need a Ray cluster and the ray extra; the message says which is missing."""


class ClusterUnreachable(ShardingUnavailable):
    """The configured Ray cluster does not answer now (vectord: 503, try again later)."""


def ray_backend_for(config: Config) -> Backend:
    """The Ray backend ``config`` describes (``[vectord].ray_address``)."""
    section = config.vectord
    if not section.ray_address:
        raise ShardingUnavailable(
            "an index with more than 1 shard or replica needs a Ray cluster: install "
            "'lakehouse[ray]' and set [vectord].ray_address (\"auto\", \"local\" or "
            "host:port; docs/scale-out.md)"
        )
    try:
        from .ray_backend import RayBackend
    except ImportError as exc:
        raise ShardingUnavailable(
            "[vectord].ray_address is set but Ray is not installed: pip install 'lakehouse[ray]'"
        ) from exc
    # ray.init would retry an unreachable address for minutes, holding the request (or the
    # start-up) that needed the cluster
    if (why := unreachable(section.ray_address)) is not None:
        raise ClusterUnreachable(
            f"{why}: start it (ray start --head, or lakehouse up --engine ray), or fix "
            "[vectord].ray_address"
        )
    wal = config.path(section.wal_dir) if section.durability != "none" else None
    return RayBackend(
        functools.partial(open_store, config),
        str(wal) if wal is not None else None,
        durability=section.durability,
        save_min_interval=section.save_min_interval,
        max_object_bytes=put_limit(config.storaged, "_vectors/"),
        address=section.ray_address,
    )


class ShardedIndexes:
    """The sharded indexes of one vectord (thread-safe). The backend is made on first use
    (``backend_factory``; default: :func:`ray_backend_for` the config)."""

    def __init__(
        self, config: Config, store: ObjectStore | None, backend_factory: BackendFactory | None = None
    ) -> None:
        self._config = config
        self._store = store
        self._factory = backend_factory or functools.partial(ray_backend_for, config)
        self._backend: Backend | None = None
        self._lock = threading.Lock()
        self._indexes: dict[str, ShardedIndex] = {}
        self._creating: set[str] = set()
        self.heal_interval = 1.0

    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = self._factory()
            return self._backend

    def load_all(self) -> list[str]:
        """Reattach every sharded index whose layout is in the store. Without a backend
        they are logged and left alone (their data stays)."""
        if self._store is None:
            return []
        layouts = read_layouts(self._store)
        if not layouts:
            return []
        try:
            backend = self.backend()
        except ShardingUnavailable as exc:
            names = ", ".join(lay["params"]["name"] for lay in layouts)
            log.error("sharded indexes not loaded (%s): %s", names, exc)
            return []
        loaded = []
        for layout in layouts:
            ix = ShardedIndex.attach(layout, backend, store=self._store, heal_interval=self.heal_interval)
            with self._lock:
                self._indexes[ix.name] = ix
            loaded.append(ix.name)
        return loaded

    def create(self, params: IndexParams, shards: int, replicas: int, taken: Callable[[str], bool]) -> ShardedIndex:
        """A new sharded index (ValueError for bad values, IndexExists for a name in use
        here or, per ``taken``, by a plain index; ShardingUnavailable without Ray)."""
        params.validate()
        with self._lock:
            if params.name in self._indexes or params.name in self._creating or taken(params.name):
                raise IndexExists(params.name)
            self._creating.add(params.name)
        try:
            ix = ShardedIndex.create(
                params, shards, replicas, self.backend(), store=self._store, heal_interval=self.heal_interval
            )
            with self._lock:
                self._indexes[params.name] = ix
            return ix
        finally:
            with self._lock:
                self._creating.discard(params.name)

    def __contains__(self, name: object) -> bool:
        return name in self._indexes or name in self._creating

    def get(self, name: str) -> ShardedIndex:
        try:
            return self._indexes[name]
        except KeyError:
            raise IndexNotFound(name) from None

    def indexes(self) -> list[ShardedIndex]:
        with self._lock:
            return [self._indexes[n] for n in sorted(self._indexes)]

    def drop(self, name: str) -> None:
        with self._lock:
            ix = self._indexes.pop(name, None)
        if ix is None:
            raise IndexNotFound(name)
        ix.drop()

    def close(self) -> None:
        for ix in self.indexes():
            try:
                ix.close()
            except Exception:
                log.exception("closing sharded index %r", ix.name)


@web.middleware
async def shard_errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Any:
    """A shard with no replica answering is a 503 (the client retries), never a 500."""
    try:
        return await handler(request)
    except ShardUnavailable as exc:
        raise ApiError(503, str(exc)) from None
