"""Helpers shared by test modules (import as ``from testkit import ...``).

They live here, not in conftest.py: the tree has several conftest.py files, and which of them
answers to ``import conftest`` depends on collection order.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
