"""Where replicas run: the router talks to them through a backend.

A backend starts replicas and calls their methods. A call returns a *pending* result at once
(so the router can send one call to every shard before waiting for any), and
:meth:`Backend.results` waits for a list of them. A failure of the replica itself (its
process died, it is restarting, it has not caught up, it did not answer in time) comes back
as :class:`ReplicaUnavailable`; an error of the call (bad input: ``ValueError``) comes back
as itself.

- :class:`LocalBackend`: replicas are objects in this process; a call runs at once. It has
  no parallelism and no fault isolation: it exists so the routing, merging and catch-up
  logic is tested without Ray, and answers exactly like the Ray backend.
- :class:`lakehouse.scale.ray_backend.RayBackend`: each replica is a Ray actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..vectors.registry import IndexParams
from .replica import NotServing, ShardReplica, StoreSource

__all__ = ["Backend", "LocalBackend", "ReplicaUnavailable", "ReplicaSpec"]


class ReplicaUnavailable(RuntimeError):
    """A replica did not answer (down, restarting, or not caught up yet)."""


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    params: IndexParams
    shard: int
    replica: int


class Backend(Protocol):
    #: a short name for info answers ("local", "ray")
    engine: str

    def start(self, spec: ReplicaSpec) -> Any:
        """A handle on the replica (started, or found running); it is not serving yet."""

    def call(self, handle: Any, method: str, *args: Any) -> Any:
        """Start ``handle.method(*args)``; a pending result for :meth:`results`."""

    def results(self, pending: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Each call's value, or its exception (ReplicaUnavailable for a replica failure)."""

    def restart(self, handle: Any, spec: ReplicaSpec) -> Any:
        """A handle on a fresh start of a replica that is down (may be ``handle`` itself)."""

    def stop(self, handle: Any) -> None:
        """Forget the replica (its process ends; its data stays)."""


@dataclass(slots=True)
class _Done:
    value: Any = None
    error: BaseException | None = None


class LocalBackend:
    """Replicas as objects in this process (see the module docstring)."""

    engine = "local"

    def __init__(
        self,
        store: StoreSource = None,
        wal_dir: str | None = None,
        *,
        durability: str = "fsync",
        save_min_interval: float = 1.0,
        max_object_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._wal_dir = wal_dir
        self._opts = {
            "durability": durability,
            "save_min_interval": save_min_interval,
            "max_object_bytes": max_object_bytes,
        }
        #: replicas marked as crashed by a test: calls fail until restart()
        self.crashed: set[int] = set()

    def start(self, spec: ReplicaSpec) -> ShardReplica:
        return ShardReplica(spec.params, spec.shard, spec.replica, self._store, self._wal_dir, **self._opts)  # type: ignore[arg-type]

    def call(self, handle: ShardReplica, method: str, *args: Any) -> _Done:
        if id(handle) in self.crashed:
            return _Done(error=ReplicaUnavailable("the replica is down"))
        try:
            return _Done(getattr(handle, method)(*args))
        except NotServing as exc:
            return _Done(error=ReplicaUnavailable(str(exc)))
        except Exception as exc:
            return _Done(error=exc)

    def results(self, pending: Sequence[_Done], timeout: float | None = None) -> list[Any]:
        return [p.error if p.error is not None else p.value for p in pending]

    def crash(self, handle: ShardReplica) -> None:
        """For tests: the replica stops answering, as if its process died (its files stay)."""
        self.crashed.add(id(handle))

    def restart(self, handle: ShardReplica, spec: ReplicaSpec) -> ShardReplica:
        # A restarted process reloads what it had on disk: its own snapshot and log.
        self.crashed.discard(id(handle))
        handle._close(save=False)
        return self.start(spec)

    def stop(self, handle: ShardReplica) -> None:
        self.crashed.discard(id(handle))
