"""The search's metadata filter (contract section 9.5).

``metadata_filter`` maps a metadata key to a wanted value:

* a scalar (string, number, boolean) matches by JSON equality: ``1`` equals ``1.0``, but
  ``true`` is not ``1`` and ``"1"`` is not ``1``;
* a list of scalars matches when any of them matches (OR within a key);
* several keys must all match (AND across keys);
* a result without the key, without metadata, or whose metadata is not a JSON object is
  dropped.

The filter runs after retrieval, so it can leave fewer than ``k`` results (raise
``per_corpus_k`` to compensate). Filter values that are not scalars or lists of scalars
(null, objects, nested or empty lists) are refused with :class:`FilterError` before anything
runs: they would match nothing, silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FilterError", "MetadataFilter"]


class FilterError(ValueError):
    """A metadata_filter that cannot be applied (the message names the key)."""


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON scalars as JSON sees them (numbers by value, bools apart)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


class MetadataFilter:
    """A compiled filter; ``MetadataFilter(None)`` and ``MetadataFilter({})`` pass everything."""

    def __init__(self, spec: Mapping[str, Any] | None) -> None:
        self._clauses: list[tuple[str, tuple[Any, ...]]] = []
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            raise FilterError("metadata_filter must be an object")
        for key, value in spec.items():
            if _is_scalar(value):
                self._clauses.append((key, (value,)))
            elif isinstance(value, list):
                if not value:
                    raise FilterError(f"metadata_filter[{key!r}]: an empty list matches nothing")
                for i, item in enumerate(value):
                    if not _is_scalar(item):
                        raise FilterError(
                            f"metadata_filter[{key!r}][{i}]: expected a string, number or boolean"
                        )
                self._clauses.append((key, tuple(value)))
            else:
                raise FilterError(
                    f"metadata_filter[{key!r}]: expected a string, number, boolean or a list of them"
                )

    def __bool__(self) -> bool:
        return bool(self._clauses)

    def matches(self, metadata: Any) -> bool:
        """True when ``metadata`` (a decoded JSON value) satisfies every clause."""
        if not self._clauses:
            return True
        if not isinstance(metadata, Mapping):
            return False
        for key, wanted in self._clauses:
            if key not in metadata:
                return False
            have = metadata[key]
            if not any(json_equal(have, w) for w in wanted):
                return False
        return True

    def apply(self, items: Iterable[Any], metadata_of: Any = None) -> tuple[list[Any], int]:
        """``(kept, dropped_count)``; ``metadata_of(item)`` reads an item's metadata
        (default: ``item["metadata"]``)."""
        get = metadata_of or (lambda item: item.get("metadata"))
        kept, dropped = [], 0
        for item in items:
            if self.matches(get(item)):
                kept.append(item)
            else:
                dropped += 1
        return kept, dropped
