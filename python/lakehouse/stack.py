"""Running the whole stack: every daemon as a process, in dependency order (contract 1.6).

``lakehouse up`` is :func:`main`; the demo and the end-to-end tests use the same machinery
through :func:`running_stack`::

    with running_stack(config, only=["storaged", "catalogd", "gateway"]) as stack:
        gateway = stack.urls["gateway"]
        ...

What :class:`Stack` does, in order:

1. Chooses the daemons (all of :data:`~lakehouse.services.DAEMONS`, or ``only``), and fails
   before starting anything when a daemon module is missing, a required daemon is neither
   selected nor already answering, a daemon would bind a non-loopback address without an
   auth token, two daemons share a port, or a port is taken (the message names the config
   key, and whether a lakehouse daemon already holds it). A port of 0 means "any free
   port": it is chosen here, so every daemon and caller sees the same address.
2. Writes the effective configuration to a private temporary file and starts each daemon
   as ``python -m lakehouse.stack NAME --config FILE`` (``lakehouse serve``, plus dying
   with the supervisor), with ``LAKEHOUSE_<SECTION>_*`` overrides removed from its
   environment (they are already applied in the file). A daemon starts once every daemon
   it requires answers ``GET /health``; the gateway starts after every other daemon except
   those that call through it (mcpd), which start last. Daemons without requirements start
   together.
3. Streams every daemon's output line by line, prefixed by its name, and keeps the last
   lines of each for error messages.
4. Stops in reverse order (mcpd and the gateway first, storaged last): SIGTERM, then SIGKILL after
   ``grace`` seconds. Daemons run in their own process group, so a terminal's Ctrl-C
   reaches only the supervisor, which then stops them in that order.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .config import SECTIONS, SHARED_DAEMONS, Config, ConfigError
from .configfile import dump_toml
from .services import DAEMONS
from .web import check_bind

__all__ = ["Stack", "StackError", "free_port", "running_stack", "select_daemons", "main"]

#: environment variable telling a child which process supervises it (see _die_with_parent)
PARENT_ENV = "LAKEHOUSE_STACK_PARENT_PID"
#: lines of each daemon's output kept for error messages
TAIL_LINES = 200

Launcher = Callable[[str, Path], list[str]]


class StackError(RuntimeError):
    """The stack could not start, or a daemon failed; the message says which and why."""


def default_launcher(name: str, config_path: Path) -> list[str]:
    """The command line that runs daemon ``name`` with the configuration in ``config_path``."""
    return [sys.executable, "-m", "lakehouse.stack", name, "--config", str(config_path)]


# -- choosing and checking ------------------------------------------------------------------


def select_daemons(only: Iterable[str] | None = None) -> list[str]:
    """The daemons to run, in start order (dependencies first, then the gateway, then the
    daemons that call through it)."""
    if only is None:
        chosen = set(DAEMONS)
    else:
        chosen = {n.strip() for n in only if n.strip()}
        unknown = sorted(chosen - set(DAEMONS))
        if unknown:
            raise StackError(
                f"unknown daemon(s): {', '.join(unknown)} (known: {', '.join(DAEMONS)})"
            )
        if not chosen:
            raise StackError("no daemon selected")
    front = [n for n in DAEMONS if n in chosen and _behind_gateway(n)]
    return [n for n in DAEMONS if n in chosen and n != "gateway" and n not in front] + (
        ["gateway"] if "gateway" in chosen else []
    ) + front


def _behind_gateway(name: str) -> bool:
    """True for a daemon that calls through the gateway (mcpd): it starts after the gateway."""
    return "gateway" in DAEMONS[name].requires


def missing_modules(names: Iterable[str]) -> list[str]:
    """The daemons among ``names`` whose module does not exist (yet)."""
    return [n for n in names if importlib.util.find_spec(DAEMONS[n].module) is None]


def _depends_on(name: str, selected: list[str]) -> list[str]:
    """What ``name`` waits for: its requirements, and for the gateway every other daemon."""
    if name == "gateway":
        return [n for n in selected if n != "gateway" and not _behind_gateway(n)]
    return [r for r in DAEMONS[name].requires if r in selected]


def _stop_groups(selected: list[str]) -> list[list[str]]:
    """Daemons grouped by depth in the dependency graph, deepest (stopped first) first."""
    depth: dict[str, int] = {}
    for name in selected:  # start order: dependencies are placed before dependants
        deps = _depends_on(name, selected)
        depth[name] = 1 + max((depth[d] for d in deps), default=-1)
    groups: dict[int, list[str]] = collections.defaultdict(list)
    for name, d in depth.items():
        groups[d].append(name)
    return [groups[d] for d in sorted(groups, reverse=True)]


def _ephemeral_range() -> tuple[int, int]:
    """The range the kernel draws outgoing connections' local ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; other systems use 49152-65535, also above


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now and that no outgoing connection will take.

    A port from ``bind(port 0)`` lies in the kernel's ephemeral range, the same range the
    kernel draws the local port of every outgoing connection from: between this probe and the
    daemon's own bind, a client connection elsewhere on the machine can take it ("address
    already in use"). So the port comes from below that range, is checked by binding it, and
    is never handed out twice by this process.
    """
    low, _ = _ephemeral_range()
    lowest = 20000 if low > 21000 else 1024
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(lowest, low)
        if port not in _handed_out and _port_is_free(host, port):
            _handed_out.add(port)
            return port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return s.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def health(url: str, timeout: float = 1.0) -> str | None:
    """The ``service`` named by ``GET {url}/health``, or None when nothing answers."""
    try:
        with _NO_PROXY.open(f"{url}/health", timeout=timeout) as resp:
            if resp.status != 200:
                return None
            body = json.loads(resp.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return str(body.get("service", "")) if isinstance(body, dict) else ""


def prepare_config(config: Config, selected: list[str]) -> Config:
    """Check ``config`` for running ``selected`` and give port-0 daemons a free port.

    Raises :class:`StackError` naming every problem at once.
    """
    for name in selected:
        host = config.section(name).host
        try:
            check_bind(host, config.auth)
        except ConfigError as exc:
            raise StackError(f"[{name}].host: {exc}") from exc
    # The OS may hand back a port it gave out a moment ago (each probe socket is closed), so
    # a port chosen for one daemon is never chosen again for another.
    taken = {(config.section(n).host, config.section(n).port) for n in selected}
    for name in selected:
        host = config.section(name).host
        if config.section(name).port == 0:
            port = free_port(host)
            while (host, port) in taken:
                port = free_port(host)
            taken.add((host, port))
            config = config.replace(name, port=port)
    problems = []
    owners: dict[tuple[str, int], str] = {}
    for name in selected:
        sec = config.section(name)
        key = (sec.host, sec.port)
        if key in owners:
            problems.append(
                f"[{owners[key]}].port and [{name}].port are both {sec.port} on {sec.host}"
            )
            continue
        owners[key] = name
        if not _port_is_free(sec.host, sec.port):
            holder = health(config.base_url(name), timeout=0.5)
            if holder:
                who = f"a running lakehouse {holder} (is a stack already up?)"
            else:
                who = "another program"
            problems.append(
                f"port {sec.port} on {sec.host} ([{name}].port) is taken by {who}"
            )
    for name in selected:
        for req in DAEMONS[name].requires:
            if req not in selected and health(config.base_url(req)) != req:
                problems.append(
                    f"{name} requires {req}, which is not selected and does not answer at "
                    f"{config.base_url(req)}"
                )
    if problems:
        raise StackError("cannot start the stack:\n  " + "\n  ".join(problems))
    return config


# -- the supervisor ---------------------------------------------------------------------------


@dataclass
class _Child:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    started: float
    ready: bool = False
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    pump: threading.Thread | None = None


class Stack:
    """A set of daemon processes started, watched and stopped together.

    ``urls`` maps each selected daemon to its base URL (available after :meth:`start`);
    ``config`` is the configuration the daemons run with (free ports filled in).
    """

    def __init__(
        self,
        config: Config,
        only: Iterable[str] | None = None,
        *,
        log: IO[str] | None = None,
        startup_timeout: float = 60.0,
        grace: float = 10.0,
        launcher: Launcher = default_launcher,
        interrupted: threading.Event | None = None,
    ) -> None:
        self.selected = select_daemons(only)
        missing = missing_modules(self.selected)
        if missing:
            raise StackError(
                "no module for: "
                + ", ".join(f"{n} (lakehouse/services/{n}.py)" for n in missing)
                + "; start a subset with --only"
            )
        self.config = config
        self.log = log
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.launcher = launcher
        self.interrupted = interrupted or threading.Event()
        #: set to skip the grace period when stopping (a second Ctrl-C)
        self.hurry = threading.Event()
        self.urls: dict[str, str] = {}
        self.children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._width = max(len(n) for n in self.selected)
        self._workdir: Path | None = None
        self._color = bool(log is not None and getattr(log, "isatty", lambda: False)())

    # -- output -----------------------------------------------------------------------------

    def say(self, message: str) -> None:
        """A line from the supervisor itself."""
        if self.log is not None:
            with self._lock:
                self.log.write(f"lakehouse up: {message}\n")
                self.log.flush()

    def _emit(self, child: _Child, line: str) -> None:
        child.tail.append(line)
        if self.log is None:
            return
        prefix = f"{child.name:<{self._width}} |"
        if self._color:
            colour = 31 + (self.selected.index(child.name) % 6)
            prefix = f"\033[{colour}m{prefix}\033[0m"
        with self._lock:
            self.log.write(f"{prefix} {line}\n")
            self.log.flush()

    def _pump(self, child: _Child) -> None:
        assert child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            self._emit(child, raw.decode("utf-8", "replace").rstrip("\r\n"))
        child.proc.stdout.close()

    def output(self, name: str) -> list[str]:
        """The last lines daemon ``name`` printed."""
        child = self.children.get(name)
        return list(child.tail) if child else []

    # -- starting ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        prefixes = tuple(f"LAKEHOUSE_{s.upper()}_" for s in SECTIONS)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(prefixes) and k != "LAKEHOUSE_DATA_DIR"
        }
        env["PYTHONUNBUFFERED"] = "1"
        env[PARENT_ENV] = str(os.getpid())
        return env

    def _spawn(self, names: tuple[str, ...], config_path: Path, env: dict[str, str]) -> None:
        """One process for ``names`` (one daemon, or a shared group: see :meth:`groups`)."""
        proc = subprocess.Popen(
            self.launcher(",".join(names), config_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            process_group=0,
        )
        started = time.monotonic()
        first = None
        for name in names:
            child = _Child(name, self.urls[name], proc, started)
            self.children[name] = child
            first = first or child
        assert first is not None
        first.pump = threading.Thread(target=self._pump, args=(first,), daemon=True, name=f"log-{names[0]}")
        first.pump.start()

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Daemon -> the daemons sharing its process. ``[up].topology = "shared"`` puts the
        selected ones of ``[up].shared`` in one; every other daemon is alone."""
        out = {n: (n,) for n in self.selected}
        if self.config.up.topology == "shared":
            chosen = set(self.config.up.shared)
            shared = tuple(n for n in SHARED_DAEMONS if n in self.selected and n in chosen)
            if len(shared) > 1:
                for n in shared:
                    out[n] = shared
        return out

    def _failure(self, child: _Child, what: str) -> StackError:
        time.sleep(0.2)  # let the log pump catch the last lines
        tail = "\n".join(f"    {line}" for line in list(child.tail)[-15:])
        return StackError(f"{child.name} {what}" + (f"; its last output:\n{tail}" if tail else ""))

    def start(self) -> None:
        """Start every selected daemon in dependency order; return when all are healthy.

        On any failure everything already started is stopped and :class:`StackError` raised.
        """
        self.config = prepare_config(self.config, self.selected)
        data_dir = Path(self.config.data_dir).resolve()
        self.config = self.config.replace(data_dir=str(data_dir))
        self.urls = {n: self.config.base_url(n) for n in self.selected}
        self._workdir = Path(tempfile.mkdtemp(prefix="lakehouse-stack-"))
        config_path = self._workdir / "lakehouse.toml"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dump_toml(self.config))
        env = self._env()
        t0 = time.monotonic()
        pending = list(self.selected)
        groups = self.groups()
        try:
            while pending or not all(c.ready for c in self.children.values()):
                if self.interrupted.is_set():
                    raise StackError("interrupted while starting")
                ready = {n for n, c in self.children.items() if c.ready}
                for name in list(pending):
                    if name not in pending:
                        continue  # started with its group
                    members = groups[name]
                    needs = {d for m in members for d in _depends_on(m, self.selected)} - set(members)
                    if all(d in ready for d in needs):
                        for m in members:
                            pending.remove(m)
                        self._spawn(members, config_path, env)
                        pid = self.children[name].proc.pid
                        for m in members:
                            shared = f", sharing it with {', '.join(o for o in members if o != m)}" if len(members) > 1 else ""
                            self.say(f"starting {m} at {self.urls[m]} (pid {pid}{shared})")
                for child in self.children.values():
                    if child.ready:
                        continue
                    code = child.proc.poll()
                    if code is not None:
                        raise self._failure(child, f"exited with code {code} while starting")
                    if health(child.url, timeout=0.5) == child.name:
                        child.ready = True
                        self.say(f"{child.name} ready ({time.monotonic() - child.started:.1f} s)")
                    elif time.monotonic() - child.started > self.startup_timeout:
                        raise self._failure(
                            child,
                            f"did not answer GET {child.url}/health within "
                            f"{self.startup_timeout:g} s",
                        )
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        self.say(f"{len(self.selected)} daemon(s) ready in {time.monotonic() - t0:.1f} s")

    # -- watching and stopping ------------------------------------------------------------

    def poll(self) -> tuple[str, int] | None:
        """The first daemon found to have exited, with its exit code, or None."""
        for child in self.children.values():
            code = child.proc.poll()
            if code is not None:
                return child.name, code
        return None

    def stop(self) -> None:
        """Stop every daemon, dependants before what they depend on (idempotent)."""
        for group in _stop_groups(self.selected):
            children = [self.children[n] for n in group if n in self.children]
            alive = [c for c in children if c.proc.poll() is None]
            for child in alive:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for child in alive:
                while child.proc.poll() is None and time.monotonic() < deadline:
                    if self.hurry.is_set():
                        break
                    time.sleep(0.02)
                if child.proc.poll() is None:
                    self.say(f"{child.name} did not stop within {self.grace:g} s: killing it")
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
                    child.proc.wait()
        for child in self.children.values():
            if child.pump is not None:
                child.pump.join(timeout=2)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_stack(
    config: Config,
    only: Iterable[str] | None = None,
    *,
    log: IO[str] | None = None,
    startup_timeout: float = 60.0,
    grace: float = 10.0,
) -> Iterator[Stack]:
    """Run the stack (or the ``only`` subset) for the ``with`` block; yields the :class:`Stack`.

    ``stack.urls`` maps daemon names to base URLs; ``stack.config`` is the configuration the
    daemons run with (ports of 0 replaced by the free ports chosen). ``log``, when given,
    receives every daemon's output, prefixed by its name. Everything is stopped on exit,
    also when the block raises. Call it from the thread that will also leave the block: on
    Linux the daemons die with the thread that started them, should the process vanish.
    """
    stack = Stack(config, only, log=log, startup_timeout=startup_timeout, grace=grace)
    with stack:
        yield stack


# -- lakehouse up -------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``lakehouse up``: run the stack in the foreground until Ctrl-C or SIGTERM."""
    from .config import load_config

    parser = argparse.ArgumentParser(
        prog="lakehouse up",
        description="run every daemon as a process, in dependency order, until Ctrl-C",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: lakehouse up --data-dir ./lakehouse-data --only storaged,catalogd,gateway\n\n"
        "More cores: [<daemon>].workers = N in lakehouse.toml runs a stateless daemon (gateway,\n"
        "matrixd, embedd, queryd, validatord, chatd) as N processes on its port (0 = one per\n"
        "core); [up].topology = \"shared\" runs vectord, embedd and matrixd in one process,\n"
        "matrixd calling the other two in-process (docs/performance.md).",
    )
    parser.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
    parser.add_argument("--data-dir", help="data directory (default: ./lakehouse-data)")
    parser.add_argument(
        "--only", help="comma-separated daemons to start (default: all), e.g. storaged,catalogd"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds each daemon may take to be healthy"
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds a daemon may take to stop before SIGKILL"
    )
    parser.add_argument(
        "--engine", choices=("process", "ray"), default="process",
        help="process: each daemon a child process; ray: each daemon a Ray actor, sharded "
        "indexes spread over the cluster (the ray extra; docs/scale-out.md)",
    )
    parser.add_argument(
        "--address", help="with --engine ray: the Ray cluster to join (default: start one here)"
    )
    args = parser.parse_args(argv)
    config = load_config(args.config, data_dir=args.data_dir)
    only = args.only.split(",") if args.only else None
    launcher = default_launcher
    if args.engine == "ray":
        try:
            from .scale.engine import ray_launcher, start_cluster

            start_cluster(args.address)
        except ImportError as exc:
            print(f"lakehouse up: --engine ray needs the ray extra: pip install 'lakehouse[ray]' ({exc})", file=sys.stderr)
            return 1
        launcher = ray_launcher
    elif args.address:
        print("lakehouse up: --address goes with --engine ray", file=sys.stderr)
        return 2

    interrupted = threading.Event()
    stop_code = {"signal": 0}

    def on_signal(signum: int, frame: object) -> None:
        if interrupted.is_set():
            stack.hurry.set()  # a second Ctrl-C: no more grace
        interrupted.set()
        stop_code["signal"] = signum

    try:
        stack = Stack(
            config,
            only,
            log=sys.stdout,
            startup_timeout=args.timeout,
            grace=args.grace,
            launcher=launcher,
            interrupted=interrupted,
        )
    except StackError as exc:
        print(f"lakehouse up: {exc}", file=sys.stderr)
        return 1
    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        try:
            stack.start()
        except StackError as exc:
            if interrupted.is_set():
                stack.say("interrupted; stopped")
                return 0
            print(f"lakehouse up: {exc}", file=sys.stderr)
            return 1
        width = max(len(n) for n in stack.selected)
        for name in stack.selected:
            stack.say(f"  {name:<{width}}  {stack.urls[name]}")
        stack.say("Ctrl-C stops them all")
        code = 0
        while not interrupted.wait(0.2):
            dead = stack.poll()
            if dead is not None:
                stack.say(f"{dead[0]} exited with code {dead[1]}; stopping the stack")
                code = 1
                break
        if interrupted.is_set():
            stack.say(f"{signal.Signals(stop_code['signal']).name}: stopping")
        stack.stop()
        stack.say("stopped")
        return code
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the child side --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its supervisor dies (even by SIGKILL)."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _child_main(argv: list[str]) -> int:
    _die_with_parent()
    if argv and "," in argv[0]:
        return _shared_main(argv)
    from .cli import main as cli_main

    return cli_main(["serve", *argv])


def _shared_main(argv: list[str]) -> int:
    """``NAME,NAME,... --config FILE``: those daemons in this one process (topology "shared"),
    matrixd calling its embedd and vectord peers in-process, the gateway handing requests
    to the others' apps."""
    from aiohttp import web
    from yarl import URL

    from .config import load_config
    from .services import app_factory
    from .services.gateway import LOCAL_PEERS as GATEWAY_PEERS
    from .services.gateway import LocalPeer
    from .services.matrixd import LOCAL_PEERS
    from .web import BODY_LIMIT, run_shared, setup_logging

    parser = argparse.ArgumentParser(prog="python -m lakehouse.stack")
    parser.add_argument("names")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    names = args.names.split(",")
    unknown = [n for n in names if n not in SHARED_DAEMONS]
    if unknown:
        print(f"cannot share a process: {', '.join(unknown)} (only {', '.join(SHARED_DAEMONS)})", file=sys.stderr)
        return 2
    config = load_config(args.config)
    setup_logging("+".join(names))
    apps = {n: app_factory(n)(config) for n in names}
    if "matrixd" in apps:
        apps["matrixd"][LOCAL_PEERS] = {n: apps[n] for n in ("embedd", "vectord") if n in apps}

    def wire(runners: dict[str, web.AppRunner]) -> None:
        # the gateway hands the requests for the other daemons of this process to their apps
        if "gateway" in apps:
            apps["gateway"][GATEWAY_PEERS].update(
                {
                    n: LocalPeer(
                        runner.server.request_handler,
                        apps[n][BODY_LIMIT],
                        URL(config.upstream("gateway", n)).raw_authority,
                    )
                    for n, runner in runners.items()
                    if n != "gateway" and runner.server is not None
                }
            )

    sections = {n: config.section(n) for n in names}
    run_shared({n: (apps[n], sections[n].host, sections[n].port) for n in names}, config.auth, wire)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
