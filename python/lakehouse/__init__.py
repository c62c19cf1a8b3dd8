"""Lakehouse: a retrieval substrate for a small-model staffing co-pilot.

The vector index (``VectorIndex``) is a C++ HNSW core; the daemons are aiohttp applications
under :mod:`lakehouse.services`. The compiled module is imported lazily so that daemons that
do not use it start without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["VectorIndex", "Hit", "SaveCoalescer", "__version__"]

if TYPE_CHECKING:
    from .vectors.index import Hit, SaveCoalescer, VectorIndex


def __getattr__(name: str) -> Any:
    if name in ("VectorIndex", "Hit", "SaveCoalescer"):
        from .vectors import index

        return getattr(index, name)
    raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")
