"""HTTP load on vectord: requests/second, p50, p99 and errors at fixed concurrency levels.

    python -m bench.vectord_load                      # spawns vectord, the full matrix
    python -m bench.vectord_load --duration 5 --concurrency 10
    python -m bench.vectord_load --url http://127.0.0.1:3215   # an already running vectord

What it does:
1. Starts ``lakehouse serve vectord`` in a subprocess on a free 127.0.0.1 port with a fresh
   data directory (unless ``--url``), then creates the index ``bench`` and fills it over HTTP
   with ``--items`` clustered, 768-d vectors carrying small metadata (role, city, rating):
   the shape of the reference's 5K-worker load test.
2. For each workload and concurrency level, runs ``--duration`` seconds (after
   ``--warmup`` seconds not counted) of closed-loop clients: each connection sends one
   request, waits for the answer, sends the next.
   - ``search``: ``POST /vectors/index/bench/search {vector, k: 10}`` over ``--queries``
     distinct query vectors (perturbed items);
   - ``mixed``: the same, with one request in ten an add of one item (an upsert over a
     pool of 1,000 fresh ids, so the index stays near its size).
3. Prints a table and writes ``bench/results/vectord_load.json``.

The load generator runs in its own processes (``--procs``, default 1), with a minimal
HTTP/1.1 keep-alive client on asyncio protocols (request bytes prepared in advance), so it
costs little CPU next to the server on a small machine. Each cell reports the generator's
CPU use (``client_cpu``, % of one core per process): near 100 % means the generator, not
vectord, was the limit. ``server_cpu`` is vectord's CPU use (% of one core; >100 % when its
native threads run in parallel), measured when this script spawned it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.rawhttp import Conn, free_port, request_bytes

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "vectord_load.json"
INDEX = "bench"
ROLES = ["Forklift Operator", "Picker", "Loader", "CNC Machinist", "Warehouse Associate", "Shipping Clerk"]
CITIES = ["Milwaukee", "Chicago", "Indianapolis", "Madison", "Gary", "Rockford"]


# -- the workload ------------------------------------------------------------------------


def make_data(items: int, dims: int, queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (50 centres, like embeddings of a few dozen job profiles) and
    query vectors near random items."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dims)).astype(np.float32)
    x = centres[rng.integers(0, 50, items)] + 0.35 * rng.standard_normal((items, dims)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, items, queries)] + 0.05 * rng.standard_normal((queries, dims)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 600) -> Any:
    data = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return orjson.loads(resp.read())


def fill(base: str, vectors: np.ndarray, batch: int = 1000) -> float:
    """(Re)create the bench index and add every vector; seconds taken."""
    try:
        http_json(f"{base}/vectors/index/{INDEX}", "DELETE")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    http_json(f"{base}/vectors/index", "POST", {"name": INDEX, "dimension": int(vectors.shape[1])})
    start = time.perf_counter()
    for lo in range(0, len(vectors), batch):
        items = [
            {
                "id": f"w-{i:05d}",
                "vector": vectors[i],
                "metadata": {"role": ROLES[i % len(ROLES)], "city": CITIES[i % len(CITIES)], "rating": i % 5 + 1},
            }
            for i in range(lo, min(lo + batch, len(vectors)))
        ]
        http_json(f"{base}/vectors/index/{INDEX}/add", "POST", {"items": items})
    return time.perf_counter() - start


# -- the client (runs in worker processes) ---------------------------------------------


@dataclass
class WorkerResult:
    latencies_us: list[int] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)  # 0 search, 1 add
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


async def _run_worker(
    host: str, port: int, conns: int, searches: list[bytes], adds: list[bytes],
    add_every: int, start_at: float, warmup: float, duration: float, seed: int,
    add_addr: tuple[str, int] | None = None,
) -> WorkerResult:
    loop = asyncio.get_running_loop()
    res = WorkerResult()
    measure_from = start_at + warmup
    stop_at = measure_from + duration
    cpu0 = [0.0]

    async def one(c: int) -> None:
        rng = np.random.default_rng(seed * 1000 + c)
        _, proto = await loop.create_connection(Conn, host, port)
        # adds may go to another daemon (matrixd searches, vectord takes the adds)
        add_proto = proto
        if add_addr is not None and adds:
            _, add_proto = await loop.create_connection(Conn, *add_addr)
        n = int(rng.integers(0, 1 << 30))
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        while True:
            now = time.time()
            if now >= stop_at:
                break
            n += 1
            kind = 1 if adds and add_every and n % add_every == 0 else 0
            data = adds[n % len(adds)] if kind else searches[n % len(searches)]
            t0 = time.perf_counter_ns()
            conn = add_proto if kind else proto
            try:
                status = await conn.send(data)
                ok = status == 200
                err = f"HTTP {status}"
            except ConnectionError as exc:
                ok, err = False, f"connection: {exc}"
                if kind and add_addr is not None:
                    _, add_proto = await loop.create_connection(Conn, *add_addr)
                else:
                    _, proto = await loop.create_connection(Conn, host, port)
                    if add_addr is None:
                        add_proto = proto
            t1 = time.perf_counter_ns()
            if now >= measure_from:
                if ok:
                    res.latencies_us.append((t1 - t0) // 1000)
                    res.kinds.append(kind)
                else:
                    res.errors += 1
                    if len(res.error_samples) < 5:
                        res.error_samples.append(err)
        assert proto.transport is not None
        proto.transport.close()
        if add_proto is not proto and add_proto.transport is not None:
            add_proto.transport.close()

    async def cpu_mark() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.time()))
        cpu0[0] = time.process_time()

    marker = asyncio.ensure_future(cpu_mark())
    await asyncio.gather(*(one(c) for c in range(conns)))
    await marker
    res.cpu_seconds = time.process_time() - cpu0[0]
    res.wall_seconds = duration
    return res


def _worker_main(args: tuple[Any, ...], out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    res = asyncio.run(_run_worker(*args))
    out.send(res)
    out.close()


# -- one cell of the matrix ----------------------------------------------------------------


def run_cell(
    host: str, port: int, concurrency: int, procs: int, searches: list[bytes], adds: list[bytes],
    add_every: int, warmup: float, duration: float, server_pid: int | None,
    add_addr: tuple[str, int] | None = None, server_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One closed-loop run at ``concurrency`` connections. ``add_addr``: send the adds
    there instead of to ``host:port``. ``server_pids``: measure the CPU of each of these
    processes (``server_cpu`` is then their sum, ``server_cpu_by_process`` each)."""
    procs = max(1, min(procs, concurrency))
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    start_at = time.time() + 0.5 + 0.1 * procs
    ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
    pipes, workers = [], []
    for i, conns in enumerate(per):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker_main,
            args=((host, port, conns, searches, adds, add_every, start_at, warmup, duration, i + 1, add_addr), child),
        )
        p.start()
        workers.append(p)
        pipes.append(parent)
    server_cpu = None
    by_process: dict[str, float] | None = None
    watched = dict(server_pids or {})
    if server_pid is not None and not watched:
        watched = {"server": server_pid}
    ps: dict[str, Any] = {}
    for name, pid in watched.items():
        try:
            import psutil

            ps[name] = psutil.Process(pid)
        except Exception:  # psutil missing or the server gone: no server CPU figure
            pass
    if ps:
        time.sleep(max(0.0, start_at + warmup - time.time()))
        c0 = {name: sum(p.cpu_times()[:2]) for name, p in ps.items()}
        w0 = time.monotonic()
    results = [pipe.recv() for pipe in pipes]
    if ps:
        # the clients stop at the end of `duration`; the receive above waits for that
        wall = max(1e-9, time.monotonic() - w0)
        by_process = {name: round(100 * (sum(p.cpu_times()[:2]) - c0[name]) / wall, 1) for name, p in ps.items()}
        server_cpu = round(sum(by_process.values()), 1)
    for p in workers:
        p.join()
    lat = np.array([x for r in results for x in r.latencies_us], dtype=np.int64)
    kinds = np.array([x for r in results for x in r.kinds], dtype=np.int8)
    errors = sum(r.errors for r in results)

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)) / 1000, 3) if len(a) else None

    cell: dict[str, Any] = {
        "concurrency": concurrency,
        "procs": procs,
        "requests": int(len(lat)),
        "rps": round(len(lat) / duration, 1),
        "p50_ms": pct(lat, 50),
        "p90_ms": pct(lat, 90),
        "p99_ms": pct(lat, 99),
        "max_ms": round(float(lat.max()) / 1000, 3) if len(lat) else None,
        "errors": errors,
        "error_samples": [s for r in results for s in r.error_samples][:5],
        "client_cpu": [round(100 * r.cpu_seconds / duration, 1) for r in results],
        "server_cpu": server_cpu,
    }
    # a generator process near one full core was itself the limit, not the server
    cell["client_saturated"] = max(cell["client_cpu"], default=0) >= 90
    if server_pids:
        cell["server_cpu_by_process"] = by_process
    if adds and add_every:
        s, a = lat[kinds == 0], lat[kinds == 1]
        cell["search"] = {"requests": int(len(s)), "p50_ms": pct(s, 50), "p99_ms": pct(s, 99)}
        cell["add"] = {"requests": int(len(a)), "p50_ms": pct(a, 50), "p99_ms": pct(a, 99)}
    return cell


# -- spawning vectord --------------------------------------------------------------------


def spawn_vectord(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LAKEHOUSE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "serve", "vectord", "--port", str(port), "--data-dir", data_dir],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vectord exited with {proc.returncode}")
        try:
            http_json(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("vectord did not become healthy within 60 s")


# -- main ----------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nvectord over HTTP: {result['setup']['items']} items x {result['setup']['dims']}-d, "
        f"k={result['setup']['k']}, {result['setup']['duration_s']} s per cell "
        f"({result['machine']['cpus']} CPUs)"
    )
    print(f"{'workload':<8} {'ef':>7} {'recall':>6} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6}  {'client cpu %':>12} {'server cpu %':>12}")
    for c in result["cells"]:
        print(
            f"{c['workload']:<8} {c['ef']:>7} {c['recall_at_k']:>6.3f} {c['concurrency']:>4} {c['rps']:>9,.0f} {c['p50_ms']:>8.2f} {c['p99_ms']:>8.2f} "
            f"{c['max_ms']:>8.1f} {c['errors']:>6}  {'/'.join(f'{x:.0f}' for x in c['client_cpu']):>12} "
            f"{'' if c['server_cpu'] is None else format(c['server_cpu'], '.0f'):>12}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.vectord_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running vectord (default: spawn one)")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    ap.add_argument("--concurrency", default="1,10,50", help="comma-separated levels")
    ap.add_argument("--workloads", default="search,mixed", help="search and/or mixed")
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--queries", type=int, default=200, help="distinct query vectors")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--ef",
        default="default,20",
        help="search ef values to run the matrix at: 'default' (the index's ef_search, 64) "
        "and/or numbers (20 is the reference's coder/hnsw default); mixed runs at the first",
    )
    ap.add_argument("--add-every", type=int, default=10, help="mixed: one request in N is an add")
    ap.add_argument("--procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results ('' = none)")
    args = ap.parse_args(argv)

    levels = [int(x) for x in args.concurrency.split(",") if x]
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in ("search", "mixed"):
            ap.error(f"unknown workload {w!r}")
    server = None
    data_dir = None
    if args.url:
        base = args.url.rstrip("/")
    else:
        data_dir = tempfile.mkdtemp(prefix="vectord-load-")
        port = free_port()
        server = spawn_vectord(data_dir, port)
        base = f"http://127.0.0.1:{port}"
    host_port = base.split("://", 1)[1]
    host, port_s = host_port.rsplit(":", 1)
    try:
        vectors, queries = make_data(args.items, args.dims, args.queries)
        fill_s = fill(base, vectors)
        print(f"filled {args.items} items in {fill_s:.1f} s", flush=True)
        path = f"/vectors/index/{INDEX}"
        efs = [None if e == "default" else int(e) for e in args.ef.split(",") if e]
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, : args.k]  # cosine on unit vectors
        searches_by_ef = {}
        recall_by_ef = {}
        for ef in efs:
            extra = {} if ef is None else {"ef": ef}
            searches_by_ef[ef] = [
                request_bytes(host_port, f"{path}/search", orjson.dumps({"vector": q, "k": args.k, **extra}, option=orjson.OPT_SERIALIZE_NUMPY))
                for q in queries
            ]
            found = 0
            for qi, q in enumerate(queries):
                hits = http_json(f"{base}{path}/search", "POST", {"vector": q, "k": args.k, **extra})["results"]
                want = {f"w-{i:05d}" for i in exact[qi]}
                found += len(want & {h["id"] for h in hits})
            recall_by_ef[ef] = round(found / (len(queries) * args.k), 4)
            print(f"recall@{args.k} at ef {ef or 'default'}: {recall_by_ef[ef]}", flush=True)
        rng = np.random.default_rng(7)
        adds = []
        for i in range(1000):
            v = vectors[rng.integers(0, len(vectors))] + 0.05 * rng.standard_normal(args.dims).astype(np.float32)
            body = {"items": [{"id": f"fresh-{i:04d}", "vector": v.astype(np.float32), "metadata": {"role": ROLES[i % 6], "fresh": True}}]}
            adds.append(request_bytes(host_port, f"{path}/add", orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)))
        load_before = os.getloadavg()
        cells = []
        for workload in workloads:
            for ef in efs if workload == "search" else efs[:1]:
                for c in levels:
                    cell = run_cell(
                        host, int(port_s), c, args.procs, searches_by_ef[ef],
                        adds if workload == "mixed" else [],
                        args.add_every if workload == "mixed" else 0, args.warmup, args.duration,
                        server.pid if server else None,
                    )
                    cell["workload"] = workload
                    cell["ef"] = ef or "default"
                    cell["recall_at_k"] = recall_by_ef[ef]
                    cells.append(cell)
                    print(
                        f"{workload:<7} ef={ef or 'default':<7} c={c:<3} {cell['rps']:>8,.0f} req/s  "
                        f"p50 {cell['p50_ms']} ms  p99 {cell['p99_ms']} ms  errors {cell['errors']}  "
                        f"client cpu {cell['client_cpu']}  server cpu {cell['server_cpu']}",
                        flush=True,
                    )
        info = http_json(f"{base}{path}")
        result = {
            "benchmark": "vectord_load",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            },
            "setup": {
                "items": args.items,
                "dims": args.dims,
                "queries": args.queries,
                "k": args.k,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "add_every": args.add_every,
                "procs": args.procs,
                "fill_seconds": round(fill_s, 2),
                "index_after": {k: info[k] for k in ("count", "m", "ef_search", "ef_construction")},
                "recall_at_k": {str(ef or "default"): r for ef, r in recall_by_ef.items()},
                "graph_built": info["stats"]["graph_built"],
                "spawned_server": server is not None,
            },
            "cells": cells,
        }
        print_table(result)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
            print(f"\nwrote {out}")
        return 0 if all(c["errors"] == 0 for c in cells) else 1
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
