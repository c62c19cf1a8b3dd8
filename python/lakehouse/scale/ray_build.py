"""Whether matrixd's corpus builds can run on Ray now, and a message saying why not.

``[matrixd].ray_address`` ("" = none: builds run inside matrixd, through embedd, as they
always did) names the cluster a build's embed batches run on (docs/scale-out.md). Before a
build starts, :func:`prepare` makes sure the cluster can be used, in this order, each
failure a :class:`RayBuildUnavailable` (matrixd answers 503 with its message, and nothing
is created):

1. the address reaches something: a ``host:port`` (or the cluster ``auto`` finds) must
   accept a TCP connection within ``timeout`` seconds. Ray's own ``ray.init`` retries an
   unreachable address for minutes; a build request must not hang that long;
2. the ``ray`` extra is installed in matrixd's Python;
3. this process joins the cluster (once; ``local`` starts one here).

Nothing here imports Ray at module level: the default install has no Ray.
"""

from __future__ import annotations

import socket

__all__ = ["RayBuildUnavailable", "prepare"]

#: what the messages tell an operator who does not want Ray for builds
_OFF = 'or set [matrixd].ray_address = "" to build inside matrixd'


class RayBuildUnavailable(RuntimeError):
    """The configured Ray cluster cannot run a build now; the message says what to do."""


def _resolve(address: str) -> str | None:
    """The ``host:port`` to probe for ``address``; None when there is nothing to probe
    (``local``, or ``auto`` where Ray will say itself that it finds no cluster)."""
    if address == "local":
        return None
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # no Ray (step 2 says so), or a Ray that moved the helper
            return None
        try:
            return canonicalize_bootstrap_address("auto")
        except Exception:  # Ray's own "no cluster found": ray.init reports it quickly
            return None
    return address


def _probe(hostport: str, timeout: float) -> None:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayBuildUnavailable(
            f"the Ray cluster at {hostport} does not answer ({exc.strerror or exc}): start it "
            f"(ray start --head, or lakehouse up --engine ray) {_OFF}"
        ) from None


def prepare(address: str, *, timeout: float = 3.0) -> None:
    """Make sure a build can run on the cluster at ``address`` (see the module docstring);
    blocking (run it off the event loop). RayBuildUnavailable otherwise."""
    try:
        import ray
    except ImportError:
        ray = None
    if ray is not None and ray.is_initialized():
        # Joined already: probe the cluster this process is in (it may have gone away).
        hostport: str | None = ray.get_runtime_context().gcs_address
    else:
        hostport = _resolve(address)
    if hostport is not None:
        _probe(hostport, timeout)
    if ray is None:
        raise RayBuildUnavailable(
            f"[matrixd].ray_address is {address!r} but Ray is not installed in matrixd's "
            f"Python: pip install 'lakehouse[ray]' {_OFF}"
        )
    try:
        from . import pipeline  # noqa: F401  (ray.data: the extra's other half)
        from .ray_backend import connect

        connect(address)
    except ImportError as exc:
        raise RayBuildUnavailable(
            f"Ray Data is not usable in matrixd's Python ({exc}): pip install 'lakehouse[ray]' {_OFF}"
        ) from None
    except Exception as exc:  # whatever ray.init raises: never a 500 for a cluster problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayBuildUnavailable(f"cannot join the Ray cluster at {address!r}: {first} {_OFF}") from None
