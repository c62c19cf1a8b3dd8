"""The benchmark suite: one command, every figure the README quotes.

    python -m bench                  # everything (core, threads, http, micro), then SUMMARY.md
    python -m bench core             # in process, against peers, the three data sets
    python -m bench realtext         # only build the real-text data set's cache (core does it when missing)
    python -m bench threads          # searches while another thread adds
    python -m bench http             # vectord and matrixd over HTTP, and the whole chain
                                     # (text through the gateway, bench/http_chain.py)
    python -m bench micro            # pytest-benchmark micro-benchmarks
    python -m bench selfrecall       # is every item found by its own vector? (beside hnswlib)
    python -m bench add_memory       # peak and final memory of one bulk add (float32, float64)
    python -m bench summary          # SUMMARY.md and the plots from the existing JSON
    python -m bench --quick          # a small smoke run of everything (seconds, not minutes)

Writes bench/results/<part>.json, bench/results/SUMMARY.md and
bench/results/recall_vs_qps_<data set>.png (``--results`` elsewhere). Generated data and
ground truth are cached in bench/.cache/. Progress goes to stderr. ``tox -e bench`` runs
this. docs/bench.md explains the method and how to read the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import add_memory, core, http_chain, http_load, selfrecall, summary, threads
from bench.common import CACHE, RESULTS, ROOT, log, machine, write_json

PARTS = ("core", "threads", "http", "micro", "selfrecall", "add_memory")

#: the data sets of the in-process comparison: (core.py arguments, quick variant). The real
#: text needs a sentence model to embed it, so the quick smoke run (no model) leaves it out.
REALTEXT = ["--dataset", "realtext", "--n", "100000", "--queries", "1000", "--dims", "384", "--distance", "cosine"]
DATASETS = (
    (["--n", "100000", "--dims", "128", "--distance", "euclidean"], ["--n", "3000", "--dims", "128", "--distance", "euclidean"]),
    (["--n", "50000", "--dims", "768", "--distance", "cosine"], ["--n", "2500", "--dims", "768", "--distance", "cosine"]),
    (REALTEXT, None),
)
QUICK_CORE = ["--queries", "100", "--single-queries", "50", "--numpy-single-queries", "20", "--repeat", "1", "--build-repeat", "1", "--quick", "--efc", "64"]


def run_core(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    reports = []
    for full, quick in DATASETS:
        if args.quick and quick is None:
            continue
        argv = [*(quick + QUICK_CORE if args.quick else full), "--cache", str(args.cache)]
        if args.libs:
            argv += ["--libs", args.libs]
        if args.repeat and not args.quick:
            argv += ["--repeat", str(args.repeat)]
        reports.append(core.compare(argv))
        r = reports[-1]
        print(f"\n{r['dataset']}\n" + core.table(r["results"], r["baseline"]) + "\n" + "\n".join(core.ratio_lines(r["results"])), flush=True)
    return {"benchmark": "core", "command": cmd, "datasets": reports}


def run_realtext(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    """Build (or find) the real-text data set's cache; its report names the files."""
    from bench import realtext

    i = REALTEXT.index
    n, queries = int(REALTEXT[i("--n") + 1]), int(REALTEXT[i("--queries") + 1])
    files = realtext.build(n, queries, Path(args.cache))
    return {"benchmark": "realtext", "command": cmd, "files": {k: str(v) for k, v in files.items()}}


def run_threads(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    argv = ["--cache", str(args.cache)] + (["--quick"] if args.quick else [])
    report = threads.run(argv)
    print(threads.table(report), flush=True)
    return {**report, "command": cmd}


def run_http(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    # Both with the write-ahead log (the default, fsync) and without, for the log's cost.
    report = http_load.run([*(["--quick"] if args.quick else []), "--durability", "fsync,none"])
    print(http_load.table(report), flush=True)
    # The whole chain: text through the gateway (with and without playbook), per layout,
    # beside the bare aiohttp ceiling (docs/performance.md).
    chain = http_chain.run(["--quick"] if args.quick else ["--repeat", "2"])
    print(http_chain.table(chain), flush=True)
    return {**report, "chain": chain, "errors": report["errors"] + chain["errors"], "command": cmd}


def run_micro(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    """pytest-benchmark over bench/micro; its raw JSON is reduced to the figures we quote."""
    raw = Path(args.cache) / "micro_raw.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    n = "3000" if args.quick else "10000"
    extra = ["--benchmark-min-rounds=2", "--benchmark-max-time=0.005", "--benchmark-warmup=off"] if args.quick else ["--benchmark-warmup=on"]
    pytest_cmd = [sys.executable, "-m", "pytest", str(ROOT / "bench" / "micro"), "-q", "-p", "no:cacheprovider",
                  f"--benchmark-json={raw}", "--benchmark-columns=min,median,mean,ops,rounds", *extra]
    log(f"[micro] {' '.join(pytest_cmd[1:])}")
    env = dict(os.environ, BENCH_MICRO_N=n, BENCH_MICRO_ADD_ROUNDS="50" if args.quick else "2000")
    # Run from inside an xdist worker (the smoke test under `pytest -n`), the child would see
    # PYTEST_XDIST_WORKER and pytest-benchmark would disable itself: one round, no timings.
    for key in [k for k in env if k.startswith("PYTEST_XDIST_")]:
        del env[key]
    proc = subprocess.run(pytest_cmd, cwd=ROOT, env=env, stdout=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"micro-benchmarks failed (pytest exit {proc.returncode})")
    data = json.loads(raw.read_text())
    rows = [
        {
            "group": b["group"],
            "name": b["name"],
            "extra": b.get("extra_info", {}),
            "median_us": round(b["stats"]["median"] * 1e6, 3),
            "min_us": round(b["stats"]["min"] * 1e6, 3),
            "mean_us": round(b["stats"]["mean"] * 1e6, 3),
            "ops": round(b["stats"]["ops"], 1),
            "rounds": b["stats"]["rounds"],
        }
        for b in data["benchmarks"]
    ]
    rows.sort(key=lambda r: (r["group"], r["median_us"]))
    return {"benchmark": "micro", "command": cmd, "n": int(n), "benchmarks": rows, "kernel_slopes": kernel_slopes(rows),
            "exact_scan": exact_scan(rows)}


def kernel_slopes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kernel: the cost of 1,000 more dimensions, from the fastest calls at 128 and 1536
    dimensions. The Python call overhead, the same at both sizes, cancels out."""
    by: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        e = r["extra"]
        if "isa" in e and "dims" in e:
            by.setdefault((e["isa"], e["kind"]), {})[int(e["dims"])] = r["min_us"]
    out = []
    for (isa, kind), t in sorted(by.items()):
        if 128 in t and 1536 in t and t[1536] > t[128]:
            ns = (t[1536] - t[128]) * 1000 / (1536 - 128)  # per dimension
            out.append({"isa": isa, "kind": kind, "ns_per_1000_dims": round(ns * 1000, 1),
                        "gb_per_s": round(8 / ns, 1)})  # two float32 read per dimension
        else:
            out.append({"isa": isa, "kind": kind, "ns_per_1000_dims": None, "gb_per_s": None})
    return out


def exact_scan(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per batch size: microseconds per query of the exact search_batch, scanning the store
    once per query and once per tile, and how many times faster the tiles are."""
    by: dict[int, dict[str, float]] = {}
    for r in rows:
        e = r["extra"]
        if "scan" in e and "batch" in e:
            by.setdefault(int(e["batch"]), {})[e["scan"]] = r["median_us"] / int(e["batch"])
    out = []
    for batch, t in sorted(by.items()):
        row: dict[str, Any] = {"batch": batch, **{f"{k}_us_per_query": round(v, 1) for k, v in sorted(t.items())}}
        if t.get("tiled") and t.get("per-query"):
            row["speedup"] = round(t["per-query"] / t["tiled"], 2)
        out.append(row)
    return out


def run_selfrecall(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    out = ["--out", str(Path(args.out or Path(args.results) / "selfrecall.json"))]
    report = selfrecall.run((["--n", "3000"] if args.quick else []) + out)
    print(selfrecall.table(report), flush=True)
    return {**report, "command": cmd}


def run_add_memory(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    out = ["--out", str(Path(args.out or Path(args.results) / "add_memory.json"))]
    report = add_memory.run((["--n", "5000", "--dims", "64"] if args.quick else []) + out)
    print(add_memory.table(report), flush=True)
    return {**report, "command": cmd}


RUNNERS = {"realtext": run_realtext, "core": run_core, "threads": run_threads, "http": run_http, "micro": run_micro,
           "selfrecall": run_selfrecall, "add_memory": run_add_memory}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("part", nargs="?", default="all", choices=["all", *PARTS, "realtext", "summary"])
    p.add_argument("--quick", action="store_true", help="a small smoke run (seconds)")
    p.add_argument("--results", default=str(RESULTS), help="where JSON, SUMMARY.md and PNGs go")
    p.add_argument("--cache", default=str(CACHE), help="generated data and ground truth")
    p.add_argument("--libs", default="", help=f"core: libraries (default {core.DEFAULT_LIBS})")
    p.add_argument("--repeat", type=int, default=0, help="core: best of N (default 3)")
    p.add_argument("--out", help="with one part: write its JSON here instead of <results>/<part>.json")
    args = p.parse_args(argv)
    results = Path(args.results)
    parts = PARTS if args.part == "all" else (() if args.part == "summary" else (args.part,))
    if args.out and len(parts) != 1:
        p.error("--out needs exactly one part")
    cmd = "python -m bench " + " ".join(argv) if argv else "python -m bench"
    failed = []
    for part in parts:
        log(f"=== {part}")
        t0 = time.perf_counter()
        try:
            report = RUNNERS[part](args, cmd)
        except (SystemExit, Exception) as exc:  # one broken part must not lose the others
            log(f"[{part}] FAILED: {exc}")
            failed.append(part)
            continue
        if part == "realtext":  # a cache, not a result
            print(json.dumps(report["files"], indent=2))
            continue
        report["seconds"] = round(time.perf_counter() - t0, 1)
        report["machine"] = machine()
        write_json(Path(args.out) if args.out else results / f"{part}.json", report)
    summary.write(results)
    if failed:
        log(f"failed parts: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
