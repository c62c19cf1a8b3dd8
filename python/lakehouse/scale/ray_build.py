"""Whether matrixd's corpus builds can run on Ray now, and a message saying why not.

``[matrixd].ray_address`` ("" = none: builds run inside matrixd, through embedd, as they
always did) names the cluster a build's embed batches run on (docs/scale-out.md). Before a
build starts, :func:`prepare` makes sure the cluster can be used, in this order, each
failure a :class:`RayBuildUnavailable` (matrixd answers 503 with its message, and nothing
is created):

1. the address reaches something: a ``host:port`` (or the cluster ``auto`` finds) must
   accept a TCP connection within ``timeout`` seconds (:mod:`.ray_probe`). Ray's own
   ``ray.init`` retries an unreachable address for minutes; a build request must not hang
   that long;
2. the ``ray`` extra is installed in matrixd's Python;
3. this process joins the cluster (once; ``local`` starts one here).

Nothing here imports Ray at module level: the default install has no Ray.
"""

from __future__ import annotations

from .ray_probe import unreachable

__all__ = ["RayBuildUnavailable", "prepare"]

#: what the messages tell an operator who does not want Ray for builds
_OFF = 'or set [matrixd].ray_address = "" to build inside matrixd'


class RayBuildUnavailable(RuntimeError):
    """The configured Ray cluster cannot run a build now; the message says what to do."""


def prepare(address: str, *, timeout: float = 3.0) -> None:
    """Make sure a build can run on the cluster at ``address`` (see the module docstring);
    blocking (run it off the event loop). RayBuildUnavailable otherwise."""
    if (why := unreachable(address, timeout)) is not None:
        raise RayBuildUnavailable(
            f"{why}: start it (ray start --head, or lakehouse up --engine ray) {_OFF}"
        )
    try:
        import ray  # noqa: F401
    except ImportError:
        raise RayBuildUnavailable(
            f"[matrixd].ray_address is {address!r} but Ray is not installed in matrixd's "
            f"Python: pip install 'lakehouse[ray]' {_OFF}"
        ) from None
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
