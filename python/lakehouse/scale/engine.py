"""``lakehouse up --engine ray``: every daemon runs as a Ray actor.

``lakehouse up`` keeps doing what it does (dependency order, health checks on each daemon's
configured host and port, output, Ctrl-C), with one change: the command it starts for a
daemon is this module's :func:`main`, a small supervisor that

1. joins the Ray cluster (``--address``; by default the one ``lakehouse up`` started),
2. starts the daemon as an actor pinned to this node (``lakehouse serve <name>`` runs
   inside the actor's process, serving its usual aiohttp app on its configured host and
   port, with the same config file), and
3. waits: when the actor's process ends, so does the supervisor (``up`` sees the daemon
   exit); when the supervisor is told to stop (SIGTERM), it sends the actor's process
   SIGTERM (the daemon's own clean shutdown: vectord saves its indexes) and, after a grace
   period, kills the actor.

The daemons are pinned to the node ``up`` runs on because their URLs in the config are
that node's (the gateway reaches them there; clients see the same gateway wire). What
spreads over the cluster is vectord's sharded indexes and matrixd's corpus builds: inside
the vectord actor, ``[vectord].ray_address`` defaults to the cluster the actor runs in, so an
index created with shards/replicas above 1 places its replicas on every node, and inside the
matrixd actor ``[matrixd].ray_address`` does, so a corpus build embeds its batches on every
node (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

__all__ = ["main", "ray_launcher", "start_cluster"]

#: the environment variable through which ``up`` passes the cluster's address to the
#: supervisors (Ray's own: ``ray.init()`` reads it too)
ADDRESS_ENV = "RAY_ADDRESS"


def ray_launcher(name: str, config_path: Path) -> list[str]:
    """The Stack launcher of the ray engine: this module's supervisor for daemon ``name``."""
    return [sys.executable, "-m", "lakehouse.scale.engine", name, "--config", str(config_path)]


def start_cluster(address: str | None) -> str:
    """Join the cluster at ``address``, or start a one-node cluster here (None); its
    address, exported for the supervisors ``up`` starts."""
    import ray

    from .ray_backend import connect

    connect(address or None)
    gcs = ray.get_runtime_context().gcs_address
    os.environ[ADDRESS_ENV] = gcs
    return gcs


class _Daemon:
    """The actor: runs one daemon in its own process."""

    def pid(self) -> int:
        return os.getpid()

    def serve(self, name: str, config_path: str, env: dict[str, str]) -> int:
        os.environ.update(env)
        from ..cli import main as cli_main

        return int(cli_main(["serve", name, "--config", config_path]) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.scale.engine",
        description="run one daemon as a Ray actor until SIGTERM (lakehouse up --engine ray starts these)",
        epilog="example: python -m lakehouse.scale.engine vectord --config lakehouse.toml --address 10.0.0.5:6379",
    )
    parser.add_argument("name", help="the daemon")
    parser.add_argument("--config", required=True, help="the config file (lakehouse up writes one)")
    parser.add_argument("--address", help=f"the Ray cluster (default: ${ADDRESS_ENV}, else 'auto')")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds the daemon may take to stop")
    args = parser.parse_args(argv)

    from ..config import load_config
    from ..stack import _die_with_parent

    _die_with_parent()
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .ray_backend import NAMESPACE

    address = args.address or os.environ.get(ADDRESS_ENV) or "auto"
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("LAKEHOUSE_")}
    config = load_config(args.config)
    if args.name == "vectord" and not config.vectord.ray_address:
        # Sharded indexes go to the cluster this daemon runs in, unless configured otherwise.
        env.setdefault("LAKEHOUSE_VECTORD_RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    if args.name == "matrixd" and not config.matrixd.ray_address:
        # So do corpus builds' embed batches.
        env.setdefault("LAKEHOUSE_MATRIXD_RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    here = ray.get_runtime_context().get_node_id()
    actor = ray.remote(_Daemon).options(
        name=f"daemon/{args.name}",
        num_cpus=0,
        max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    ).remote()
    pid = ray.get(actor.pid.remote())
    done = actor.serve.remote(args.name, str(Path(args.config).resolve()), env)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    code = 0
    try:
        while not stopping.is_set():
            ready, _ = ray.wait([done], timeout=0.2)
            if ready:
                try:
                    code = ray.get(done)
                except ray.exceptions.RayError as exc:
                    print(f"{args.name}: the actor failed: {exc}", file=sys.stderr)
                    code = 1
                return code
        # The daemon's own clean shutdown (the actor is on this node: a signal reaches it).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        ray.wait([done], timeout=args.grace)
        return code
    finally:
        with contextlib.suppress(Exception):
            ray.kill(actor)
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
