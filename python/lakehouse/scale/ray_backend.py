"""Replicas as Ray actors (the ``ray`` extra: ``pip install 'lakehouse[ray]'``).

Each replica is one actor running :class:`~lakehouse.scale.replica.ShardReplica` in its own
worker process, named ``lakehouse/<index>/s<shard>r<replica>`` in the Ray namespace
``lakehouse`` (so a router that restarts finds the running actors again). Actors are spread
over the cluster's nodes (``SPREAD``) and hold no CPU reservation (a replica is idle between
calls; the core's threads do the work). Ray restarts an actor whose process dies
(``max_restarts``); the restarted replica reloads its own snapshot + log and does not serve
until the router has caught it up (:meth:`ShardedIndex.heal`).

Where replicas keep data: the object store the actor opens (``store_factory``: on a real
cluster an S3 store, so a replica restarted on another node finds its snapshot) and the
write-ahead log under ``wal_dir`` on the node's local disk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..data.storage import ObjectStore
from .backend import ReplicaSpec, ReplicaUnavailable
from .replica import NotServing, ShardReplica

try:
    import ray
    from ray import exceptions as ray_exc
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "sharded indexes on Ray need the ray extra: pip install 'lakehouse[ray]'"
    ) from exc

__all__ = ["RayBackend", "NAMESPACE", "connect"]

NAMESPACE = "lakehouse"


def connect(address: str | None = None, **kwargs: Any) -> None:
    """Join the Ray cluster at ``address`` ("auto": the one this machine belongs to; "local"
    or None: start one in this process) unless already connected."""
    if ray.is_initialized():
        return
    addr = None if address in (None, "", "local") else address
    ray.init(address=addr, namespace=NAMESPACE, log_to_driver=False, **kwargs)


class _Replica(ShardReplica):
    """The actor class: a ShardReplica whose "not serving" and errors cross the process
    boundary as plain values the router can tell apart."""

    def call(self, method: str, *args: Any) -> tuple[str, Any]:
        try:
            return "ok", getattr(self, method)(*args)
        except NotServing as exc:
            return "unavailable", str(exc)
        except ValueError as exc:
            return "value", str(exc)

    def pid(self) -> int:
        return os.getpid()


_RemoteReplica = ray.remote(_Replica)


class RayBackend:
    """See the module docstring. ``store_factory`` opens the object store inside each actor
    (it is pickled to the actor: a function of picklable values, e.g.
    ``functools.partial(open_store, config)``)."""

    engine = "ray"

    def __init__(
        self,
        store_factory: Callable[[], ObjectStore] | None,
        wal_dir: str | None,
        *,
        durability: str = "fsync",
        save_min_interval: float = 1.0,
        max_object_bytes: int | None = None,
        max_restarts: int = -1,
        address: str | None = None,
    ) -> None:
        connect(address)
        self._store_factory = store_factory
        self._wal_dir = wal_dir
        self._opts = {
            "durability": durability,
            "save_min_interval": save_min_interval,
            "max_object_bytes": max_object_bytes,
        }
        self._max_restarts = max_restarts

    @staticmethod
    def actor_name(spec: ReplicaSpec) -> str:
        return f"{spec.params.name}/s{spec.shard:03d}r{spec.replica}"

    def start(self, spec: ReplicaSpec) -> Any:
        return _RemoteReplica.options(
            name=self.actor_name(spec),
            namespace=NAMESPACE,
            get_if_exists=True,
            num_cpus=0,
            scheduling_strategy="SPREAD",
            max_restarts=self._max_restarts,
            # A call that was running when the process died is not retried: the router
            # decides (marks the replica out of sync, asks another).
            max_task_retries=0,
        ).remote(
            spec.params, spec.shard, spec.replica, self._store_factory, self._wal_dir, **self._opts
        )

    def call(self, handle: Any, method: str, *args: Any) -> Any:
        return handle.call.remote(method, *args)

    def results(self, pending: Sequence[Any], timeout: float | None = None) -> list[Any]:
        out: list[Any] = []
        # The refs run in parallel; waiting for them one by one costs no more than the slowest.
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout) if pending else ([], [])
        done = set(ready)
        for ref in pending:
            if ref not in done:
                ray.cancel(ref, force=False)
                out.append(ReplicaUnavailable(f"no answer within {timeout}s"))
                continue
            try:
                kind, value = ray.get(ref)
            except (ray_exc.RayActorError, ray_exc.ActorUnavailableError, ray_exc.GetTimeoutError) as exc:
                out.append(ReplicaUnavailable(type(exc).__name__))
                continue
            except ray_exc.RayTaskError as exc:
                out.append(exc.cause if isinstance(exc.cause, Exception) else RuntimeError(str(exc)))
                continue
            if kind == "ok":
                out.append(value)
            elif kind == "unavailable":
                out.append(ReplicaUnavailable(value))
            else:
                out.append(ValueError(value))
        return out

    def pid(self, handle: Any, timeout: float = 30.0) -> int:
        """The process id of a replica's actor (tests kill it)."""
        return int(ray.get(handle.pid.remote(), timeout=timeout))

    def restart(self, handle: Any, spec: ReplicaSpec) -> Any:
        # Ray restarts a dead actor by itself (max_restarts); an actor that is gone for good
        # (out of restarts, or its node left) is started again under the same name.
        try:
            ray.get(handle.ping.remote(), timeout=30)
            return handle
        except (ray_exc.RayActorError, ray_exc.ActorUnavailableError, ray_exc.GetTimeoutError):
            pass
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
        return self.start(spec)

    def stop(self, handle: Any) -> None:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
