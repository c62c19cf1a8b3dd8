"""Whether a Ray cluster address answers at all, checked before ``ray.init`` is called.

``ray.init`` retries an unreachable address for minutes; a daemon starting up or a request
creating a sharded index must not hang that long. :func:`unreachable` tries a TCP connection
to the cluster's bootstrap address (or to the cluster this process has joined already) for
a few seconds and says what went wrong, or None. Nothing here imports Ray at module level:
the default install has no Ray.
"""

from __future__ import annotations

import socket

__all__ = ["unreachable"]


def _resolve(address: str) -> str | None:
    """The ``host:port`` to probe for ``address``; None when there is nothing to probe
    (``local``, or ``auto`` where Ray will say itself that it finds no cluster)."""
    if address in ("", "local"):
        return None
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # no Ray (the caller says so), or a Ray that moved the helper
            return None
        try:
            return canonicalize_bootstrap_address("auto")
        except Exception:  # Ray's own "no cluster found": ray.init reports it quickly
            return None
    return address


def unreachable(address: str, timeout: float = 3.0) -> str | None:
    """None if the cluster at ``address`` (``host:port``, ``auto``, ``local``) accepts a TCP
    connection within ``timeout`` seconds, or has nothing to probe; else a sentence saying
    which address did not answer and why. Blocking: run it off the event loop."""
    try:
        import ray
    except ImportError:
        ray = None
    if ray is not None and ray.is_initialized():
        # Joined already: probe the cluster this process is in (it may have gone away).
        hostport: str | None = ray.get_runtime_context().gcs_address
    else:
        hostport = _resolve(address)
    if hostport is None:
        return None
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return f"the Ray cluster address {hostport!r} is not host:port"
    except OSError as exc:
        return f"the Ray cluster at {hostport} does not answer ({exc.strerror or exc})"
