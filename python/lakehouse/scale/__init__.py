"""Sharded, replicated vector indexes (docs/scale-out.md).

An index with ``shards`` x ``replicas`` keeps each item in one shard (a stable hash of its
id) and each shard in ``replicas`` copies; a search asks one copy of every shard and merges
the answers exactly. Each copy is today's single index (:class:`~lakehouse.vectors.registry.NamedIndex`,
with its own write-ahead log and snapshot), run in this process (:class:`LocalBackend`, for
tests) or as a Ray actor (:mod:`lakehouse.scale.ray_backend`, the ``ray`` extra).
"""

from .backend import Backend, LocalBackend, ReplicaSpec, ReplicaUnavailable
from .placement import MAX_REPLICAS, MAX_SHARDS, group_by_shard, shard_of, validate_layout
from .replica import NotServing, ShardReplica, ShardStore
from .router import ShardedIndex, ShardUnavailable, layout_key, read_layouts, wait_in_sync

__all__ = [
    "Backend",
    "LocalBackend",
    "ReplicaSpec",
    "ReplicaUnavailable",
    "MAX_REPLICAS",
    "MAX_SHARDS",
    "group_by_shard",
    "shard_of",
    "validate_layout",
    "NotServing",
    "ShardReplica",
    "ShardStore",
    "ShardedIndex",
    "ShardUnavailable",
    "layout_key",
    "read_layouts",
    "wait_in_sync",
]
