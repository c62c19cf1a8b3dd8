"""Helpers shared by test modules (import as ``from testkit import ...``).

They live here, not in conftest.py: the tree has several conftest.py files, and which of them
answers to ``import conftest`` depends on collection order.
"""

from __future__ import annotations

from lakehouse.stack import free_port

__all__ = ["free_port"]
