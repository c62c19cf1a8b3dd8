"""The whole request path: matrix search by text through the gateway (the reference's headline).

    python -m bench.http_chain                          # c10 and c50, with and without playbook
    python -m bench.http_chain --concurrency 10 --duration 10 --paths gateway,bare --layout shared=shared
    python -m bench.http_chain --profile docs/profile  # py-spy every daemon under the load

Starts vectord, embedd, matrixd and the gateway (``lakehouse.stack``, free 127.0.0.1 ports,
a fresh data directory, ``hash`` embeddings), builds the corpus ``workers`` from the demo's
2,000-worker roster (each row's text through embedd, the vectors into vectord, as the corpus
builder would) and records a few playbook entries, then runs the closed-loop generator of
:mod:`bench.vectord_load` (its own process, raw asyncio HTTP/1.1, requests prepared in
advance) against these paths:

- ``gateway``: ``POST /v1/matrix/search {query_text, corpora: ["workers"], k: 10}`` through
  the gateway: gateway -> matrixd -> embedd, vectord;
- ``gateway+playbook``: the same with ``use_playbook: true`` (one more vectord search, of the
  playbook corpus, and the calibrated thresholds);
- ``matrixd``: the first, straight to matrixd (what the gateway's hop costs);
- ``vectord``: ``POST /vectors/index/workers/search {vector, k: 10}`` straight to vectord;
- ``bare``: the framework's ceiling, a bare aiohttp handler (uvloop, like the daemons) that
  reads a 768-float JSON body and answers a constant: the peer every other row is read
  against on a machine shared with other work.

200 distinct demands (role x city x shift x certification), so embedd's cache is warm after
the first pass, as in the reference's load test 2 (200 distinct queries). Each cell reports
requests/second, p50 / p99 / max, errors (must be 0), the generator's CPU (% of one core;
``client_saturated`` at >= 90 %) and each daemon's CPU (% of one core, all its workers).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import vectord_load as vl
from bench.common import RESULTS, ROOT, command, log, machine, write_json
from bench.rawhttp import free_port

DAEMONS = ["vectord", "embedd", "matrixd", "gateway"]
CORPUS = "workers"
PLAYBOOK = "playbook_memory"
TEMPLATE = "{role} in {city}, {state}, {shift} shift. Certifications: {certifications}"
PATHS = ("gateway", "gateway+playbook", "matrixd", "vectord", "bare")


# -- the data --------------------------------------------------------------------------------


def roster_texts(n: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The demo's roster as (ids, texts, metadata), the text by the demo's template."""
    from lakehouse.roster import COLUMNS, iter_roster

    ids, texts, metas = [], [], []
    for row in iter_roster(n, seed=1):
        rec = dict(zip(COLUMNS, row, strict=True))
        ids.append(str(rec["worker_id"]))
        texts.append(TEMPLATE.format(**rec))
        metas.append({k: rec[k] for k in ("name", "role", "city", "state", "shift", "rating")})
    return ids, texts, metas


def demands(n: int = 200) -> list[str]:
    """``n`` distinct coordinator demands."""
    roles = ["forklift operators", "pickers", "loaders", "CNC machinists", "warehouse associates",
             "shipping clerks", "welders", "assemblers"]
    cities = ["Milwaukee", "Chicago", "Madison", "Gary", "Rockford", "Indianapolis", "Green Bay"]
    shifts = ["night", "day", "swing", "weekend"]
    certs = ["OSHA-30", "forklift certified", "OSHA-10", "first aid"]
    combos = itertools.product(roles, cities, shifts, certs)
    return [f"need {r} with {c} in {city}, {s} shift" for r, city, s, c in itertools.islice(combos, 0, None, 3)][:n]


def build_corpus(urls: dict[str, str], n: int) -> float:
    """Embed the roster through embedd and add it to vectord as ``workers``; seconds."""
    t0 = time.perf_counter()
    ids, texts, metas = roster_texts(n)
    with contextlib.suppress(Exception):
        vl.http_json(f"{urls['vectord']}/vectors/index/{CORPUS}", "DELETE")
    dim = None
    for lo in range(0, n, 500):
        out = vl.http_json(f"{urls['embedd']}/embed", "POST", {"texts": texts[lo : lo + 500]})
        if dim is None:
            dim = int(out["dimension"])
            vl.http_json(f"{urls['vectord']}/vectors/index", "POST", {"name": CORPUS, "dimension": dim})
        items = [{"id": i, "vector": v, "metadata": m}
                 for i, v, m in zip(ids[lo : lo + 500], out["vectors"], metas[lo : lo + 500], strict=True)]
        vl.http_json(f"{urls['vectord']}/vectors/index/{CORPUS}/add", "POST", {"items": items})
    return time.perf_counter() - t0


def record_playbook(urls: dict[str, str], queries: list[str], every: int = 10) -> int:
    """Approve the top hit of one demand in ``every`` (the playbook then boosts and injects)."""
    n = 0
    for q in queries[::every]:
        hits = vl.http_json(f"{urls['matrixd']}/matrix/search", "POST",
                            {"query_text": q, "corpora": [CORPUS], "k": 3})["results"]
        if hits:
            vl.http_json(f"{urls['matrixd']}/matrix/playbooks/record", "POST",
                         {"query_text": q, "answer_id": hits[-1]["id"], "answer_corpus": CORPUS,
                          "score": 1.0, "role": hits[-1]["metadata"]["role"]})
            n += 1
    return n


# -- the framework's ceiling -------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """A bare aiohttp app: read the body, answer a constant (about a k=10 answer's size)."""
    from aiohttp import web

    answer = orjson.dumps({"results": [{"id": f"w-{i:05d}", "distance": 0.1 * i} for i in range(10)]})

    async def search(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/search", search)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


@contextlib.contextmanager
def bare_server() -> Iterator[tuple[int, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.http_chain", "--serve-bare", str(port)], cwd=ROOT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("the bare aiohttp server did not start") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


# -- the run ------------------------------------------------------------------------------------


def _requests(urls: dict[str, str], path: str, queries: list[str], qvecs: np.ndarray, bare_port: int) -> tuple[str, int, list[bytes]]:
    if path == "bare":
        host, port, route = "127.0.0.1", bare_port, "/search"
        bodies = [orjson.dumps({"vector": v, "k": 10}, option=orjson.OPT_SERIALIZE_NUMPY) for v in qvecs]
    elif path == "vectord":
        host, port = urls["vectord"].split("://", 1)[1].rsplit(":", 1)
        route = f"/vectors/index/{CORPUS}/search"
        bodies = [orjson.dumps({"vector": v, "k": 10}, option=orjson.OPT_SERIALIZE_NUMPY) for v in qvecs]
    else:
        daemon = "matrixd" if path == "matrixd" else "gateway"
        host, port = urls[daemon].split("://", 1)[1].rsplit(":", 1)
        route = "/matrix/search" if daemon == "matrixd" else "/v1/matrix/search"
        extra = {"use_playbook": True} if path.endswith("+playbook") else {}
        bodies = [orjson.dumps({"query_text": q, "corpora": [CORPUS], "k": 10, **extra}) for q in queries]
    return host, int(port), [vl.request_bytes(f"{host}:{port}", route, b) for b in bodies]


def _daemon_pids(stack: Any) -> dict[str, list[int]]:
    """Each daemon process's pids (its workers included), named by the daemons it serves
    (``embedd+matrixd+gateway`` for a shared process)."""
    by_pid: dict[int, list[str]] = {}
    for name, child in stack.children.items():
        by_pid.setdefault(child.proc.pid, []).append(name)
    out = {}
    for pid, names in by_pid.items():
        pids = [pid]
        try:
            import psutil

            pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except Exception:
            pass
        out["+".join(names)] = pids
    return out


#: the layouts compared by default: name -> (topology, workers per daemon)
LAYOUTS = {
    "processes": ("processes", ""),
    "shared": ("shared", ""),
    "shared+vectord": ("shared", ""),
}
#: a default layout's own configuration variables (more with --layout-env)
LAYOUT_ENV = {"shared+vectord": {"LAKEHOUSE_UP_SHARED": "vectord,embedd,matrixd,gateway"}}


def run(argv: list[str]) -> dict[str, Any]:
    args = parse(argv)
    os.environ.setdefault("LAKEHOUSE_LOG_LEVEL", "WARNING")
    queries = demands(args.queries)
    cells: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    layouts = _layouts(args)
    with bare_server() as bare:
        for repeat in range(args.repeat):
            for name, (topology, workers) in layouts.items():
                cells += run_layout(args, name, topology, workers, queries, bare, repeat)
    return {
        "benchmark": "http_chain",
        "command": command("bench.http_chain", argv),
        "setup": {"items": args.items, "queries": len(queries), "k": 10, "duration_s": args.duration,
                  "warmup_s": args.warmup, "repeat": args.repeat,
                  "layouts": {n: {"topology": t, "workers": w or "1 each", **({"env": e} if (e := _layout_env(args, n)) else {})}
                              for n, (t, w) in layouts.items()},
                  "loadavg_before": [round(x, 2) for x in load_before],
                  "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "cells": cells,
        "errors": sum(c["errors"] for c in cells),
    }


def _layouts(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    if not args.layout:
        return {n: LAYOUTS[n] for n in LAYOUTS}
    out = {}
    for spec in args.layout:
        name, _, rest = spec.partition("=")
        topology, _, workers = rest.partition(":")
        if topology not in ("processes", "shared"):
            raise SystemExit(f"--layout {spec!r}: topology must be processes or shared")
        out[name] = (topology, workers)
    return out


def run_layout(args: argparse.Namespace, layout: str, topology: str, workers: str, queries: list[str],
               bare: tuple[int, int], repeat: int) -> list[dict[str, Any]]:
    """Start the stack laid out so, fill it, run every path x concurrency cell."""
    from lakehouse.config import Config
    from lakehouse.stack import running_stack

    paths = [p for p in args.paths.split(",") if p]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    bare_port, bare_pid = bare
    cells = []
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as data_dir:
        config = Config(data_dir=data_dir).replace("up", topology=topology)
        for name in DAEMONS:
            config = config.replace(name, port=0)
        for name, n in _workers(workers).items():
            config = config.replace(name, workers=n)
        env = _layout_env(args, layout)
        config = _config_with_env(config, env)
        log(f"[chain] layout {layout}: topology {topology}, workers {workers or '1 each'}"
            f"{''.join(f', {k}={v}' for k, v in env.items())} ...")
        with _environ(env), running_stack(config, only=DAEMONS) as stack:
            urls = stack.urls
            fill_s = build_corpus(urls, args.items)
            recorded = record_playbook(urls, queries)
            log(f"[chain] corpus {CORPUS}: {args.items} workers in {fill_s:.1f} s; {recorded} playbook entries")
            qvecs = np.asarray(vl.http_json(f"{urls['embedd']}/embed", "POST", {"texts": queries})["vectors"], dtype=np.float32)
            pids = _daemon_pids(stack)
            for path in paths:
                host, port, reqs = _requests(urls, path, queries, qvecs, bare_port)
                watched = {"bare": [bare_pid]} if path == "bare" else pids
                for c in levels:
                    cell = run_cell(host, port, c, reqs, args, watched)
                    cell.update(path=path, layout=layout, repeat=repeat + 1)
                    cells.append(cell)
                    log(f"[chain] {layout:<17} {path:<17} c={c:<3} {cell['rps']:>8,.0f} req/s p50 {cell['p50_ms']} "
                        f"p99 {cell['p99_ms']} max {cell['max_ms']} ms errors {cell['errors']} "
                        f"client cpu {cell['client_cpu']}{' SATURATED' if cell['client_saturated'] else ''} "
                        f"daemons {cell['server_cpu_by_process']}")
                    if args.profile and path == args.profile_path and repeat == 0 and c == levels[0]:
                        profile(host, port, c, reqs, args, pids, Path(args.profile) / layout)
    return cells


def _workers(spec: str) -> dict[str, int]:
    out = {}
    for part in [p for p in spec.split(",") if p]:
        name, _, n = part.partition("=")
        out[name] = int(n)
    return out


def run_cell(host: str, port: int, c: int, reqs: list[bytes], args: argparse.Namespace,
             watched: dict[str, list[int]]) -> dict[str, Any]:
    """One closed-loop cell; the CPU of every watched process, summed per daemon."""
    flat = {f"{name}#{i}": pid for name, ps in watched.items() for i, pid in enumerate(ps)}
    cell = vl.run_cell(host, port, c, 1, reqs, [], 0, args.warmup, args.duration, None, server_pids=flat)
    by: dict[str, float] = {}
    for key, cpu in (cell.get("server_cpu_by_process") or {}).items():
        name = key.split("#", 1)[0]
        by[name] = round(by.get(name, 0.0) + cpu, 1)
    cell["server_cpu_by_process"] = by
    cell["server_cpu"] = round(sum(by.values()), 1)
    return cell


def profile(host: str, port: int, c: int, reqs: list[bytes], args: argparse.Namespace,
            pids: dict[str, list[int]], out: Path) -> None:
    """py-spy (collapsed stacks, native frames off) on every daemon process during one more
    cell of the same load; writes ``<out>/<daemon>.txt`` and the cell's figures."""
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy (a tool, not a dependency of lakehouse): pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    seconds = int(args.warmup + args.duration)
    spies = []
    for name, ps in pids.items():
        for i, pid in enumerate(ps):
            f = out / f"{name}{'' if i == 0 else f'-{i}'}.txt"
            spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
                 "--format", "raw", "--nonblocking", "--threads", "--idle", "-o", str(f)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)
    cell = run_cell(host, port, c, reqs, args, pids)
    for s in spies:
        s.wait(60)
    (out / "cell.json").write_bytes(orjson.dumps(cell, option=orjson.OPT_INDENT_2))
    log(f"[chain] profiled at c={c}: {cell['rps']:,.0f} req/s under py-spy; stacks in {out}")


def _cpu_ms(c: dict[str, Any]) -> float:
    """The daemons' CPU per request (ms): steadier than req/s on a shared machine."""
    return round(10 * (c.get("server_cpu") or 0.0) / max(c["rps"], 1e-9), 3)


def table(report: dict[str, Any]) -> str:
    lines = [
        "| layout | path | concurrency | req/s | x bare | p50 / p99 / max (ms) | errors | generator CPU % | daemons CPU % | daemons CPU ms / request |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    bare = {(c.get("layout"), c.get("repeat"), c["concurrency"]): c["rps"] for c in report["cells"] if c["path"] == "bare"}
    for c in report["cells"]:
        daemons = ", ".join(f"{k} {v:.0f}" for k, v in (c.get("server_cpu_by_process") or {}).items())
        client = "/".join(f"{x:.0f}" for x in c["client_cpu"]) + (" (saturated)" if c["client_saturated"] else "")
        peer = bare.get((c.get("layout"), c.get("repeat"), c["concurrency"]))
        ratio = f"{c['rps'] / peer:.3f}" if peer and c["path"] != "bare" else ""
        lines.append(f"| {c.get('layout', '')} | {c['path']} | {c['concurrency']} | {c['rps']:,.0f} | {ratio} | "
                     f"{c['p50_ms']} / {c['p99_ms']} / {c['max_ms']} | {c['errors']} | {client} | {daemons} | "
                     f"{_cpu_ms(c) if c['path'] != 'bare' else ''} |")
    return "\n".join(lines)


def best(report: dict[str, Any]) -> str:
    """Per layout, path and concurrency: the best of the repeats (req/s and its p99), and the
    lowest CPU per request."""
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for c in report["cells"]:
        rows.setdefault((c.get("layout", ""), c["path"], c["concurrency"]), []).append(c)
    lines = ["| layout | path | concurrency | best req/s (p99 ms) | lowest daemons CPU ms / request |", "|---|---|---|---|---|"]
    for (layout, path, conc), cells in rows.items():
        top = max(cells, key=lambda c: c["rps"])
        cpu = "" if path == "bare" else min(_cpu_ms(c) for c in cells)
        lines.append(f"| {layout} | {path} | {conc} | {top['rps']:,.0f} ({top['p99_ms']}) | {cpu} |")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.http_chain", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: python -m bench.http_chain --concurrency 10,50 --duration 10 --repeat 2")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of: {', '.join(PATHS)}")
    ap.add_argument("--concurrency", default="10,50")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    ap.add_argument("--repeat", type=int, default=1, help="run every cell this many times (a shared machine)")
    ap.add_argument("--items", type=int, default=2000, help="roster size (the demo's 2,000)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--layout", action="append", default=[],
                    help="NAME=TOPOLOGY[:daemon=n,...], repeatable, e.g. processes+workers=processes:gateway=2 "
                         f"(default: {'; '.join(f'{n}={t}' + (f':{w}' if w else '') for n, (t, w) in LAYOUTS.items())})")
    ap.add_argument("--layout-env", action="append", default=[], metavar="NAME=VAR=VALUE",
                    help="an environment variable for the daemons of layout NAME only, repeatable: an A/B "
                         "of two layouts in the same run, e.g. --layout tiles=processes --layout per-query=processes "
                         "--layout-env per-query=LAKEHOUSE_SCAN_TILE=1; a configuration variable "
                         "(LAKEHOUSE_<SECTION>_<KEY>) is applied to that layout's configuration")
    ap.add_argument("--profile", default="", help="directory: py-spy every daemon during one extra cell (a folder per layout)")
    ap.add_argument("--profile-path", default="gateway+playbook", help="the path profiled")
    ap.add_argument("--quick", action="store_true", help="300 workers, c4, 0.5 s cells, the shared layout only")
    ap.add_argument("--out", default=str(RESULTS / "http_chain.json"))
    ap.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.duration, args.warmup, args.concurrency = min(args.items, 300), 0.5, 0.2, "4"
        args.layout = args.layout or ["shared=shared"]
    for p in args.paths.split(","):
        if p and p not in PATHS:
            ap.error(f"unknown path {p!r} (known: {', '.join(PATHS)})")
    for spec in args.layout_env:
        name, _, assignment = spec.partition("=")
        if not name or "=" not in assignment:
            ap.error(f"--layout-env {spec!r}: expected NAME=VAR=VALUE")
    return args


def _layout_env(args: argparse.Namespace, layout: str) -> dict[str, str]:
    out = dict(LAYOUT_ENV.get(layout, {})) if not args.layout else {}
    for spec in args.layout_env:
        name, _, assignment = spec.partition("=")
        if name == layout:
            var, _, value = assignment.partition("=")
            out[var] = value
    return out


def _config_with_env(config: Any, env: dict[str, str]) -> Any:
    """``config`` with the configuration variables of ``env`` applied (e.g.
    ``LAKEHOUSE_MATRIXD_COALESCE_SEARCHES=false``): the stack hands its daemons the config as
    a file and strips such variables from their environment, so a layout's must reach the
    config itself."""
    from lakehouse.config import SECTIONS, env_overrides, load_config

    names = [n for n in env_overrides(env) if n != "LAKEHOUSE_DATA_DIR"]  # the bench's own
    if not names:
        return config
    with tempfile.TemporaryDirectory() as empty:
        # the defaults with just these variables applied (and checked), read key by key
        (Path(empty) / "empty.toml").write_text("")
        overridden = load_config(Path(empty) / "empty.toml", env={n: env[n] for n in names})
    for name in names:
        rest = name.removeprefix("LAKEHOUSE_").lower()
        section = max((s for s in SECTIONS if rest.startswith(s + "_")), key=len)
        key = rest[len(section) + 1 :]
        config = config.replace(section, **{key: getattr(getattr(overridden, section), key)})
    return config


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """os.environ with ``extra`` set (the daemons started inside inherit it), then as before."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    report = run(argv)
    write_json(Path(args.out), {**report, "machine": machine()})
    print(table(report))
    print()
    print(best(report))
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
