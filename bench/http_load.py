"""Over HTTP: vectord and matrixd under closed-loop load, search-only and mixed add + search.

    python -m bench.http_load                       # both daemons, concurrency 1, 10, 50, 100
    python -m bench.http_load --targets matrixd --duration 10
    python -m bench.http_load --quick               # small and short (smoke runs)
    python -m bench.http_load --targets vectord --workloads mixed --durability fsync,none

Starts vectord, embedd and matrixd as subprocesses (``lakehouse.stack``, free 127.0.0.1
ports, a fresh data directory), fills the index ``bench`` through vectord with ``--items``
clustered 768-d unit vectors carrying small metadata, then for each target, workload and
concurrency level runs the load generator of :mod:`bench.vectord_load` (its own processes,
keep-alive HTTP/1.1 on raw asyncio protocols, requests prepared in advance):

- ``vectord``: ``POST /vectors/index/bench/search {vector, k: 10}`` (at the index's default
  ef and at ef 20); ``mixed``: one request in ten is a one-item add (an upsert over 1,000
  fresh ids, so the index keeps its size).
- ``matrixd``: ``POST /matrix/search {query_vector, corpora: ["bench"], k: 10}``: matrixd's
  own cost (decode, fan-out to vectord, merge, answer) on top of vectord's; a query vector,
  so no embedding is involved. ``mixed``: the adds go to vectord, as a writer would send them.

Each cell reports requests/second, p50 / p90 / p99 / max latency, errors (must be 0), the
load generator's CPU (% of one core per process; ``client_saturated`` when >= 90 %: the
generator, not the daemon, was then the limit) and the daemons' CPU. The data index is
filled again before each target. Results: bench/results/http.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import vectord_load as vl
from bench.common import RESULTS, command, log, machine, write_json

DAEMONS = ["vectord", "embedd", "matrixd"]


def _search_body(target: str, q: np.ndarray, k: int, ef: int | None) -> dict[str, Any]:
    if target == "matrixd":
        return {"query_vector": q, "corpora": [vl.INDEX], "k": k}
    return {"vector": q, "k": k, **({} if ef is None else {"ef": ef})}


def _search_path(target: str) -> str:
    return "/matrix/search" if target == "matrixd" else f"/vectors/index/{vl.INDEX}/search"


def recall(base: str, target: str, queries: np.ndarray, exact: np.ndarray, k: int, ef: int | None) -> float:
    """recall@k of the target's answers (one request per query) against the exact answer."""
    found = 0
    for qi, q in enumerate(queries):
        hits = vl.http_json(f"{base}{_search_path(target)}", "POST", _search_body(target, q, k, ef))["results"]
        found += len({f"w-{i:05d}" for i in exact[qi]} & {h["id"] for h in hits})
    return round(found / (len(queries) * k), 4)


def run_target(target: str, urls: dict[str, str], pids: dict[str, int], args: argparse.Namespace,
               vectors: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """Every workload x concurrency cell against one daemon."""
    vbase, base = urls["vectord"], urls[target]
    host, port = base.split("://", 1)[1].rsplit(":", 1)
    vhost, vport = vbase.split("://", 1)[1].rsplit(":", 1)
    log(f"[http:{target}] filling {len(vectors):,} x {vectors.shape[1]} through vectord ...")
    fill_s = vl.fill(vbase, vectors)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, : args.k]  # cosine on unit vectors
    # matrixd has no ef: it searches at the index's default
    efs = [None] if target == "matrixd" else [None if e == "default" else int(e) for e in args.ef.split(",") if e]
    searches, recalls = {}, {}
    for ef in efs:
        searches[ef] = [
            vl.request_bytes(f"{host}:{port}", _search_path(target),
                             orjson.dumps(_search_body(target, q, args.k, ef), option=orjson.OPT_SERIALIZE_NUMPY))
            for q in queries
        ]
        recalls[ef] = recall(base, target, queries, exact, args.k, ef)
        log(f"[http:{target}] recall@{args.k} at ef {ef or 'default'}: {recalls[ef]}")
    rng = np.random.default_rng(7)
    adds = []
    for i in range(1000):
        v = vectors[rng.integers(0, len(vectors))] + 0.05 * rng.standard_normal(vectors.shape[1]).astype(np.float32)
        body = {"items": [{"id": f"fresh-{i:04d}", "vector": v.astype(np.float32), "metadata": {"role": vl.ROLES[i % 6], "fresh": True}}]}
        adds.append(vl.request_bytes(f"{vhost}:{vport}", f"/vectors/index/{vl.INDEX}/add",
                                     orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)))
    watched = {"vectord": pids["vectord"]} | ({"matrixd": pids["matrixd"]} if target == "matrixd" else {})
    cells = []
    for workload in [w for w in args.workloads.split(",") if w]:
        for ef in efs if workload == "search" else efs[:1]:
            for c in [int(x) for x in args.concurrency.split(",") if x]:
                mixed = workload == "mixed"
                cell = vl.run_cell(
                    host, int(port), c, args.procs, searches[ef], adds if mixed else [],
                    args.add_every if mixed else 0, args.warmup, args.duration, None,
                    add_addr=(vhost, int(vport)) if mixed else None, server_pids=watched,
                )
                cell.update(workload=workload, ef=ef or "default", recall_at_k=recalls[ef])
                cells.append(cell)
                log(
                    f"[http:{target}] {workload:<6} ef={ef or 'default':<7} c={c:<3} {cell['rps']:>8,.0f} req/s "
                    f"p50 {cell['p50_ms']} p99 {cell['p99_ms']} max {cell['max_ms']} ms errors {cell['errors']} "
                    f"client cpu {cell['client_cpu']}{' SATURATED' if cell['client_saturated'] else ''} "
                    f"server cpu {cell['server_cpu_by_process']}"
                )
    info = vl.http_json(f"{vbase}/vectors/index/{vl.INDEX}")
    return {
        "target": target,
        "route": _search_path(target),
        "fill_seconds": round(fill_s, 2),
        "recall_at_k": {str(ef or "default"): r for ef, r in recalls.items()},
        "index_after": {k: info.get(k) for k in ("count", "m", "ef_search", "ef_construction")},
        "cells": cells,
    }


def run(argv: list[str]) -> dict[str, Any]:
    """Start the daemons, run every target, stop them; the report (nothing written)."""
    args = parse(argv)
    from lakehouse.config import Config
    from lakehouse.stack import running_stack

    os.environ.setdefault("LAKEHOUSE_LOG_LEVEL", "WARNING")
    vectors, queries = vl.make_data(args.items, args.dims, args.queries)
    targets = [t for t in args.targets.split(",") if t]
    load_before = os.getloadavg()
    results = []
    for durability in [d for d in args.durability.split(",") if d]:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as data_dir:
            config = Config(data_dir=data_dir).replace("vectord", durability=durability)
            for name in DAEMONS:
                config = config.replace(name, port=0)
            log(f"[http] starting {', '.join(DAEMONS)} (vectord durability {durability}) ...")
            with running_stack(config, only=DAEMONS) as stack:
                pids = {name: child.proc.pid for name, child in stack.children.items()}
                for t in targets:
                    results.append(run_target(t, stack.urls, pids, args, vectors, queries))
                    results[-1]["durability"] = durability
    return {
        "benchmark": "http",
        "command": command("bench.http_load", argv),
        "setup": {
            "items": args.items, "dims": args.dims, "queries": args.queries, "k": args.k,
            "duration_s": args.duration, "warmup_s": args.warmup, "add_every": args.add_every,
            "procs": args.procs, "concurrency": args.concurrency, "durability": args.durability,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "targets": results,
        "errors": sum(c["errors"] for r in results for c in r["cells"]),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| daemon | workload | ef (recall@10) | concurrency | req/s | p50 / p99 / max (ms) | errors | load generator CPU % | daemon CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        for c in t["cells"]:
            client = "/".join(f"{x:.0f}" for x in c["client_cpu"]) + (" (saturated)" if c["client_saturated"] else "")
            daemons = ", ".join(f"{k} {v:.0f}" for k, v in (c.get("server_cpu_by_process") or {}).items())
            lines.append(
                f"| {t['target']} ({t.get('durability', 'fsync')}) | {c['workload']} | {c['ef']} ({c['recall_at_k']}) | {c['concurrency']} | {c['rps']:,.0f} | "
                f"{c['p50_ms']} / {c['p99_ms']} / {c['max_ms']} | {c['errors']} | {client} | {daemons} |"
            )
    # The write-ahead log's cost: mixed add + search with each durability against "none".
    mixed = {
        (t["target"], t.get("durability", "fsync"), c["concurrency"]): c["rps"]
        for t in report["targets"] for c in t["cells"] if c["workload"] == "mixed"
    }
    # The mixed workload against search-only, same daemon, durability and concurrency.
    search = {
        (t["target"], t.get("durability", "fsync"), c["concurrency"]): c["rps"]
        for t in report["targets"] for c in t["cells"] if c["workload"] == "search" and c["ef"] == "default"
    }
    for (target, dur, conc), rps in sorted(mixed.items()):
        base = search.get((target, dur, conc))
        if base:
            lines.append(f"\n{target} at concurrency {conc}, durability {dur}: mixed add + search runs at "
                         f"{rps / base:.2f}x search-only ({rps:,.0f} vs {base:,.0f} req/s)")
    for (target, dur, conc), rps in sorted(mixed.items()):
        base = mixed.get((target, "none", conc))
        if dur != "none" and base:
            lines.append(f"\n{target} mixed at concurrency {conc}: durability {dur} runs at "
                         f"{rps / base:.2f}x the rate without a log ({rps:,.0f} vs {base:,.0f} req/s)")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="vectord,matrixd")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
    ap.add_argument("--concurrency", default="1,10,50,100")
    ap.add_argument("--workloads", default="search,mixed")
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", default="default,20", help="vectord: ef values searched at (matrixd: default only)")
    ap.add_argument("--add-every", type=int, default=10)
    ap.add_argument("--procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--durability", default="fsync",
                    help="vectord [vectord].durability values to run, comma-separated: fsync, os, "
                         "none (no write-ahead log); e.g. fsync,none for the log's cost")
    ap.add_argument("--quick", action="store_true", help="300 items, concurrency 4, 0.3 s cells")
    ap.add_argument("--out", default=str(RESULTS / "http.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.dims, args.queries = min(args.items, 300), min(args.dims, 64), min(args.queries, 20)
        args.duration, args.warmup, args.concurrency, args.ef = 0.3, 0.1, "4", "default"
    for w in args.workloads.split(","):
        if w and w not in ("search", "mixed"):
            ap.error(f"unknown workload {w!r}")
    for t in args.targets.split(","):
        if t and t not in ("vectord", "matrixd"):
            ap.error(f"unknown target {t!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    t0 = time.perf_counter()
    report = run(argv)
    write_json(Path(args.out), {**report, "machine": machine()})
    print(table(report))
    log(f"[http] done in {time.perf_counter() - t0:.0f} s, {report['errors']} errors")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
