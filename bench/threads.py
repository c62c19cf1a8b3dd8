"""Searches while another thread adds: the mixed workload, and what the locking costs searches.

    python -m bench.threads                   # 100,000 x 128 clustered (the core data set)
    python -m bench.threads --quick           # small and short

For each library, in its own subprocess: build an index of the first 80 % of the data, then
for 1 and 2 search threads run ``--duration`` seconds of one-query-per-call searches
(k=10, ``--ef``), first alone (``search``), then while one more thread adds the remaining
20 % one item per call, upserting them again when they run out (``mixed``). Reported per
cell: searches/second (all search threads together), p50 / p99 / max latency, adds/second,
and the share of the search threads' wall time not spent on a CPU (waiting for a lock, or
for a core: on a 2-core machine 2 search threads + 1 writer are 3 runnable threads).

The libraries:
- ``lakehouse``: the index's own locks (searches take shared locks only; a writer holds an
  exclusive lock only to grow the arrays), nothing added by the caller.
- ``hnswlib+rwlock``: hnswlib does not allow a search during an insert (its maintainers:
  "not thread-safe"), so a caller must add a lock. The one used here is what a careful
  Python caller would write: a phase-fair readers-writer lock (searches shared, adds
  exclusive; after each add the waiting searches run before the next add).
- ``hnswlib (no lock)``: search-only cells without any lock, the floor the lock is measured
  against.

"The cost of the lock on searches" is then read two ways: searches/second in ``mixed``
over ``search`` for the same thread count (how much a concurrent writer slows searches),
and lakehouse's ``search`` cells against hnswlib's unlocked ones (what the always-taken
shared locks cost when nobody writes). Results: bench/results/threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import core
from bench.common import CACHE, RESULTS, command, log, machine, write_json

HERE = Path(__file__).resolve().parent
LIBS = ("lakehouse", "hnswlib+rwlock", "hnswlib")


class RWLock:
    """Many readers or one writer, phase-fair: when a writer leaves, the readers waiting at
    that moment go in before the next writer, and a waiting writer stops new readers. (A
    plain writer-preferring lock lets a writer that loops starve the searches entirely.)"""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._admit = 0  # readers let in ahead of waiting writers

    def acquire_read(self) -> None:
        with self._cond:
            self._readers_waiting += 1
            while self._writer or (self._writers_waiting and not self._admit):
                self._cond.wait()
            self._readers_waiting -= 1
            if self._admit:
                self._admit -= 1
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers or self._admit:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._admit = self._readers_waiting
            self._cond.notify_all()


def make_lib(name: str, x: np.ndarray, n_base: int, args: argparse.Namespace) -> tuple[Callable, Callable | None]:
    """(search(row), add(i, vector)) for library ``name`` over an index of ``x[:n_base]``."""
    threads = os.cpu_count() or 1
    if name == "lakehouse":
        from lakehouse import VectorIndex

        ix = VectorIndex(x.shape[1], distance="euclidean", m=args.m, ef_construction=args.efc, threads=threads)
        ix.add([str(i) for i in range(n_base)], x[:n_base])
        ix.set_threads(1)
        ef = args.ef

        def search(row):
            return ix.search(row, k=10, ef=ef)

        def add(i, vec):
            ix.add([str(i)], vec.reshape(1, -1))

        return search, add
    import hnswlib

    ix = hnswlib.Index(space="l2", dim=x.shape[1])
    ix.init_index(max_elements=len(x), M=args.m, ef_construction=args.efc, random_seed=1)
    ix.set_num_threads(threads)
    ix.add_items(x[:n_base], np.arange(n_base))
    ix.set_num_threads(1)
    ix.set_ef(args.ef)
    if name == "hnswlib":
        return (lambda row: ix.knn_query(row, k=10)), None
    lock = RWLock()

    def locked_search(row):
        lock.acquire_read()
        try:
            return ix.knn_query(row, k=10)
        finally:
            lock.release_read()

    def locked_add(i, vec):
        lock.acquire_write()
        try:
            ix.add_items(vec.reshape(1, -1), np.array([i]))
        finally:
            lock.release_write()

    return locked_search, locked_add


def run_cell(search: Callable, add: Callable | None, q: np.ndarray, fresh: np.ndarray, n_base: int,
             searchers: int, duration: float) -> dict[str, Any]:
    """``searchers`` search threads (and one add thread when ``add``) for ``duration`` s."""
    stop = threading.Event()
    start = threading.Barrier(searchers + (1 if add else 0) + 1)
    lat: list[list[int]] = [[] for _ in range(searchers)]
    cpu = [0.0] * searchers
    adds = [0]

    def searcher(t: int) -> None:
        out, clock, i = lat[t], time.perf_counter_ns, t * 7919
        start.wait()
        c0 = time.thread_time()
        while not stop.is_set():
            row = q[i % len(q)]
            i += 1
            t0 = clock()
            search(row)
            out.append(clock() - t0)
        cpu[t] = time.thread_time() - c0

    def writer() -> None:
        i = 0
        start.wait()
        while not stop.is_set():
            j = i % len(fresh)
            add(n_base + j, fresh[j])  # past the pool: upserts of the same ids
            i += 1
        adds[0] = i

    workers = [threading.Thread(target=searcher, args=(t,)) for t in range(searchers)]
    if add:
        workers.append(threading.Thread(target=writer))
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    all_lat = np.concatenate([np.asarray(v, np.int64) for v in lat]) / 1000
    return {
        "searchers": searchers,
        "writer": add is not None,
        "searches_per_s": round(len(all_lat) / wall),
        "p50_us": round(float(np.percentile(all_lat, 50)), 1),
        "p99_us": round(float(np.percentile(all_lat, 99)), 1),
        "max_us": round(float(all_lat.max()), 1),
        "adds_per_s": round(adds[0] / wall) if add else None,
        # wall time of the search threads not spent running: lock waits and waiting for a core
        "search_wait_share": round(max(0.0, 1 - sum(cpu) / (wall * searchers)), 3),
    }


def run_lib(args: argparse.Namespace) -> dict[str, Any]:
    data_p, q_p, _ = core.dataset(args.n, args.dims, args.queries, args.seed, "euclidean")
    x, q = np.load(data_p), np.load(q_p)
    n_base = int(len(x) * 0.8)
    log(f"[{args.lib}] building {n_base:,} x {x.shape[1]} ...")
    search, add = make_lib(args.lib, x, n_base, args)
    fresh = x[n_base:]
    cells = []
    for searchers in (1, 2):
        for mixed in (False, True):
            if mixed and add is None:
                continue
            cell = run_cell(search, add if mixed else None, q, fresh, n_base, searchers, args.duration)
            cell["workload"] = "mixed" if mixed else "search"
            cells.append(cell)
            log(
                f"[{args.lib}] {cell['workload']:<6} {searchers} search thread(s): {cell['searches_per_s']:>7}/s "
                f"p50 {cell['p50_us']}us p99 {cell['p99_us']}us adds {cell['adds_per_s']}/s wait {cell['search_wait_share']}"
            )
    return {"library": args.lib, "cells": cells}


def lock_cost(results: list[dict]) -> dict[str, Any]:
    """Searches/second with a writer over without it (per library and thread count), and
    lakehouse's search-only rate over unlocked hnswlib's."""
    def cell(lib: str, workload: str, t: int) -> dict | None:
        for r in results:
            if r["library"] == lib and "cells" in r:
                for c in r["cells"]:
                    if c["workload"] == workload and c["searchers"] == t:
                        return c
        return None

    out: dict[str, Any] = {}
    for lib in ("lakehouse", "hnswlib+rwlock"):
        for t in (1, 2):
            s, m = cell(lib, "search", t), cell(lib, "mixed", t)
            if s and m:
                out[f"{lib} mixed/search {t}t"] = round(m["searches_per_s"] / s["searches_per_s"], 3)
    for t in (1, 2):
        ours, bare, locked = cell("lakehouse", "search", t), cell("hnswlib", "search", t), cell("hnswlib+rwlock", "search", t)
        if ours and bare:
            out[f"lakehouse/hnswlib(no lock) search-only {t}t"] = round(ours["searches_per_s"] / bare["searches_per_s"], 3)
        if locked and bare:
            out[f"hnswlib rwlock/no lock search-only {t}t"] = round(locked["searches_per_s"] / bare["searches_per_s"], 3)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=128)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    p.add_argument("--quick", action="store_true", help="3,000 items, 0.3 s per cell")
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument("--out", default=str(RESULTS / "threads.json"))
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--lib", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.duration, args.efc = min(args.n, 3000), min(args.queries, 100), min(args.duration, 0.3), min(args.efc, 64)
    core.parse(["--cache", args.cache])  # the data cache shared with bench.core
    return args


def run(argv: list[str]) -> dict[str, Any]:
    """Every library, each in its own subprocess; the report (nothing written)."""
    args = parse(argv)
    core.dataset(args.n, args.dims, args.queries, args.seed, "euclidean")
    results = []
    for lib in [s for s in args.libs.split(",") if s]:
        log(f"== threads: {lib}")
        proc = subprocess.run(
            [sys.executable, "-m", "bench.threads", *argv, "--lib", lib],
            cwd=HERE.parent, stdout=subprocess.PIPE, text=True,
        )
        if proc.returncode == core.MISSING:
            results.append({"library": lib, "status": "missing", "error": "not importable"})
        elif proc.returncode != 0:
            results.append({"library": lib, "status": "failed", "error": f"exit code {proc.returncode}"})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "benchmark": "threads",
        "command": command("bench.threads", argv),
        "params": {k: getattr(args, k) for k in ("n", "dims", "m", "efc", "ef", "duration", "quick")}
        | {"base_items": int(args.n * 0.8), "add_pool": args.n - int(args.n * 0.8), "k": 10},
        "results": results,
        "lock_cost": lock_cost(results),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| library | workload | search threads | searches/s | p50 / p99 / max (µs) | adds/s | search wait share |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "cells" not in r:
            lines.append(f"| {r['library']} | {r.get('status')}: {r.get('error')} | | | | | |")
            continue
        for c in r["cells"]:
            lines.append(
                f"| {r['library']} | {c['workload']} | {c['searchers']} | {c['searches_per_s']} | "
                f"{c['p50_us']} / {c['p99_us']} / {c['max_us']} | {c['adds_per_s'] or ''} | {c['search_wait_share']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.lib:
        try:
            result = run_lib(args)
        except ImportError as exc:
            log(f"missing: {exc}")
            return core.MISSING
        print(json.dumps(result))
        return 0
    report = run(argv)
    write_json(Path(args.out), {**report, "machine": machine()})
    print(table(report))
    print("\n" + "\n".join(f"{k}: {v}" for k, v in report["lock_cost"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
