"""Where an item lives: a stable hash of its id picks its shard.

The hash is BLAKE2b (8-byte digest) of the id's UTF-8 bytes, taken modulo the number of
shards: the same id maps to the same shard in every process, on every machine and in every
Python version (Python's own ``hash()`` of a string is salted per process, so it cannot be
used). The shard count of an index is fixed when it is created (re-sharding would move
items between shards; see docs/scale-out.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_SHARDS", "MAX_REPLICAS", "shard_of", "group_by_shard", "validate_layout"]

#: an index has at most this many shards and each shard at most this many replicas
MAX_SHARDS = 256
MAX_REPLICAS = 8


def shard_of(item: str, shards: int) -> int:
    """The shard (0 .. shards - 1) that owns id ``item``."""
    if shards == 1:
        return 0
    digest = hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def group_by_shard(ids: Sequence[str], shards: int) -> dict[int, list[int]]:
    """``{shard: [positions in ids]}`` in the order the ids came (a later duplicate of an
    id stays after the earlier one, so "the last occurrence wins" holds in its shard)."""
    out: dict[int, list[int]] = {}
    for pos, item in enumerate(ids):
        out.setdefault(shard_of(item, shards), []).append(pos)
    return out


def _count(what: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not 1 <= value <= high:
        raise ValueError(f"{what} must be between 1 and {high}, got {value}")
    return value


def validate_layout(shards: Any, replicas: Any) -> tuple[int, int]:
    """``(shards, replicas)`` if both are valid, else ValueError saying which is not."""
    return _count("shards", shards, MAX_SHARDS), _count("replicas", replicas, MAX_REPLICAS)
