"""Search cost of the native index against hnswlib on the same graph file, in one process:
the close look behind the ratios of ``bench.core`` (docs/bench.md, "Where the time goes").

    python -m bench.search_ab                     # the real-text set, ef 32 48 64, 7 rounds
    python -m bench.search_ab --on eval           # on bench.core's evaluation queries
    python -m bench.search_ab --ef 48 --rounds 9 --threads 1
    python -m bench.search_ab --rebuild           # build both indexes again (after a build change)

Both indexes are built once (M 16, ef_construction 200) and saved under the cache, so that
later runs (after a change to the search code) search exactly the same graphs. Each round
times, for each library in alternating order: one batch call over all queries at
``--threads`` threads, and one pass of single-query calls (lakehouse both through the
``VectorIndex`` facade and through the raw ``_native`` call, so the facade's share shows).
A library's figure is its fastest round: the machine is shared, and the fastest round is the
one least disturbed. With one thread (the default) the clock is the thread's CPU time, so
time spent waiting for a core does not count (cache and memory contention still do). Reported in microseconds per query, with recall@10 and the ratio to
hnswlib measured in the same rounds.

The queries are the real-text set's *tuning* queries by default (``realtext.build_dev``: 2,000
sentences that are neither data nor the 1,000 evaluation queries), so that a change tuned
with this tool is judged afterwards on queries it never saw (``--on eval``, or bench.core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench import realtext
from bench.common import CACHE, log
from bench.core import K, recall_at_k


def load_or_build(x: np.ndarray, where: Path, rebuild: bool, threads: int):
    import hnswlib

    from lakehouse import VectorIndex

    where.mkdir(parents=True, exist_ok=True)
    ours_p, theirs_p = where / "lakehouse.lhv", where / "hnswlib.bin"
    n, dims = x.shape
    if rebuild or not ours_p.exists():
        t = time.perf_counter()
        ours = VectorIndex(dims, distance="cosine", m=16, ef_construction=200, threads=threads)
        ours.add([str(i) for i in range(n)], x)
        log(f"[ab] lakehouse built in {time.perf_counter() - t:.1f}s")
        ours.save(str(ours_p), durable=False)
    if rebuild or not theirs_p.exists():
        t = time.perf_counter()
        theirs = hnswlib.Index(space="cosine", dim=dims)
        theirs.init_index(max_elements=n, M=16, ef_construction=200, random_seed=1)
        theirs.set_num_threads(threads)
        theirs.add_items(x, np.arange(n))
        log(f"[ab] hnswlib built in {time.perf_counter() - t:.1f}s")
        theirs.save_index(str(theirs_p))
    ours = VectorIndex.load(str(ours_p))
    theirs = hnswlib.Index(space="cosine", dim=dims)
    theirs.load_index(str(theirs_p), max_elements=n)
    return ours, theirs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search_ab", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m bench.search_ab --ef 48 --rounds 9")
    p.add_argument("--n", type=int, default=realtext.DEFAULT_N)
    p.add_argument("--queries", type=int, default=realtext.DEFAULT_QUERIES)
    p.add_argument("--ef", type=int, nargs="+", default=[32, 48, 64])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="threads of the batch call (single queries: 1)")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--on", choices=["dev", "eval"], default="dev",
                   help="the tuning queries (default) or the evaluation queries bench.core reports on")
    p.add_argument("--dev", type=int, default=realtext.DEFAULT_DEV, help="how many tuning queries")
    args = p.parse_args(argv)
    files = realtext.build(args.n, args.queries, Path(args.cache))
    if args.on == "dev":
        files = files | realtext.build_dev(args.n, args.queries, args.dev, Path(args.cache))
    x, q, truth = (np.load(files[k]) for k in ("data", "queries", "truth"))
    ours, theirs = load_or_build(x, Path(args.cache) / f"ab-{realtext.tag(args.n, args.queries)}", args.rebuild, 2)
    raw = ours._ix  # the compiled index under the facade
    ours.set_threads(args.threads)
    theirs.set_num_threads(args.threads)
    rows = list(q)
    out = []
    for ef in args.ef:
        theirs.set_ef(ef)
        ids, _ = ours.search_batch(q, k=K, ef=ef)
        rec_ours = recall_at_k(np.array([[int(i) if i else -1 for i in r] for r in ids]), truth)
        rec_theirs = recall_at_k(theirs.knn_query(q, k=K)[0], truth)
        fns = {
            "lakehouse batch": lambda ef=ef: ours.search_batch(q, k=K, ef=ef),
            "hnswlib batch": lambda: theirs.knn_query(q, k=K),
            "lakehouse single": lambda ef=ef: [ours.search(r, k=K, ef=ef) for r in rows],
            "lakehouse raw single": lambda ef=ef: [raw.search(r, K, ef, [], True) for r in rows],
            "hnswlib single": lambda: [theirs.knn_query(r, k=K) for r in rows],
        }
        best = dict.fromkeys(fns, float("inf"))
        names = list(fns)
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                if "single" in name:
                    ours.set_threads(1)
                    theirs.set_num_threads(1)
                else:
                    ours.set_threads(args.threads)
                    theirs.set_num_threads(args.threads)
                # CPU time of this thread (every call here runs on it: one thread), so that
                # time spent waiting for a core on the shared machine does not count
                t = time.thread_time() if args.threads == 1 else time.perf_counter()
                fns[name]()
                spent = (time.thread_time() if args.threads == 1 else time.perf_counter()) - t
                best[name] = min(best[name], spent)
        us = {k: round(v / len(q) * 1e6, 2) for k, v in best.items()}
        row = {"ef": ef, "recall": {"lakehouse": round(rec_ours, 4), "hnswlib": round(rec_theirs, 4)}, "us_per_query": us,
               "ratio_vs_hnswlib": {"batch": round(us["hnswlib batch"] / us["lakehouse batch"], 3),
                                    "single": round(us["hnswlib single"] / us["lakehouse single"], 3),
                                    "raw single": round(us["hnswlib single"] / us["lakehouse raw single"], 3)}}
        out.append(row)
        log(f"[ab] ef {ef}: recall {row['recall']}, us/query {us}, ours faster by {row['ratio_vs_hnswlib']}")
    print(json.dumps({"queries": f"{args.on} ({len(q):,})", "threads": args.threads, "rounds": args.rounds, "rows": out},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
