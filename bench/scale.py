"""Scaling benchmark of sharded indexes (lakehouse.scale, docs/scale-out.md).

    python -m bench.scale                       # 20,000 x 64, shards 1/2/4 on a 3-node local cluster
    python -m bench.scale --n 50000 --dims 128 --shards 1,2,4,8 --nodes 3
    python -m bench.scale --quick               # a smoke run (seconds)

One run measures, on the same data and queries, one after the other:

- ``single``: today's index in this process (a NamedIndex, no HTTP): the peer every other
  figure is a ratio against;
- ``router-local``: the sharded router with 1 shard on the in-process backend (the cost of
  routing and merging alone);
- ``ray-<S>x1``: S shards, 1 replica each, as Ray actors on a local cluster the benchmark
  starts (a head and ``--nodes - 1`` worker nodes, each a separate set of processes with
  one CPU; stopped at the end). ``ray-1x1`` against ``single`` is the engine's own overhead.

For each: build time (adds in batches of ``--batch``), single-query searches one after
the other (latency, queries/s), the same searches from ``--clients`` threads at once
(queries/s), one batch call of all queries (queries/s), and recall@10 against an exact scan.
Then a corpus build (``--corpus-rows`` rows of worker-like text, 0 skips it): the same rows
made into batches by :mod:`lakehouse.matrix.rows` and embedded by the ``[embedd]`` embedder
(``--corpus-provider``) one batch after another in this process (what matrixd does without
Ray, minus the HTTP hops), against :func:`lakehouse.scale.pipeline.build_corpus` on the
local cluster (one embedder actor per node), both into a plain index.
All nodes of the local cluster share this machine's cores, so more shards cannot add CPU
here: what the figures show is the engine's overhead and how it changes with the fan-out,
not the speed-up of a real cluster (docs/scale-out.md says how to read them).
Writes bench/results/scale.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, log, machine, write_json


def exact_top(X: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    return np.argsort(-(Qn @ Xn.T), axis=1)[:, :k]


def measure(name: str, ix: Any, X: np.ndarray, Q: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    ids = [f"w{i}" for i in range(len(X))]
    t = time.perf_counter()
    for s in range(0, len(X), args.batch):
        ix.add(ids[s : s + args.batch], X[s : s + args.batch])
    build = time.perf_counter() - t
    for q in Q[:20]:  # warm-up
        ix.search(q, 10, args.ef)
    # The best of three passes: other work on a shared machine only ever slows a pass down.
    best: list[float] | None = None
    for _ in range(3):
        lat = []
        rows = []
        for q in Q:
            t = time.perf_counter()
            rows.append(ix.search(q, 10, args.ef))
            lat.append(time.perf_counter() - t)
        if best is None or sum(lat) < sum(best):
            best = lat
    lat = best
    seq_qps = len(Q) / sum(lat)
    done = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds

    def client(seed: int) -> None:
        n = 0
        i = seed
        while time.perf_counter() < stop_at:
            ix.search(Q[i % len(Q)], 10, args.ef)
            i += args.clients
            n += 1
        with lock:
            done[0] += n

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    conc_qps = done[0] / (time.perf_counter() - t)
    t = time.perf_counter()
    ix.search_batch(Q, 10, args.ef)
    batch_qps = len(Q) / (time.perf_counter() - t)
    hit = sum(len({f"w{j}" for j in tr} & {h.id for h in row}) for tr, row in zip(truth, rows, strict=True))
    out = {
        "config": name,
        "build_s": round(build, 3),
        "search_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "search_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
        "sequential_qps": round(seq_qps, 1),
        "concurrent_qps": round(conc_qps, 1),
        "batch_qps": round(batch_qps, 1),
        "recall_at_10": round(hit / truth.size, 4),
    }
    log(f"  {name}: {out}")
    return out


def corpus_rows(n: int) -> list[dict[str, Any]]:
    roles = ["picker", "packer", "forklift operator", "driver", "loader", "inventory clerk"]
    cities = ["Oslo", "Lyon", "Porto", "Ghent", "Turin", "Graz", "Brno"]
    return [{"id": f"w{i}", "role": roles[i % 6], "city": cities[i % 7],
             "skills": f"{i % 11} years, shift {'ABC'[i % 3]}, zone {i % 13}, cert {i % 17}"} for i in range(n)]


def corpus_in_process(rows: list[dict[str, Any]], section: Any, batch: int) -> tuple[Any, float]:
    import asyncio

    from lakehouse.embed import build_embedder
    from lakehouse.matrix.rows import RowShape, chunk_rows
    from lakehouse.vectors.index import VectorIndex

    shape = RowShape.of("id", text_template=CORPUS_TEMPLATE, metadata_columns=["role", "city"])
    embedder = build_embedder(section)
    ix = None
    t = time.perf_counter()

    async def run() -> None:
        nonlocal ix
        chunks, _, _ = chunk_rows(rows, shape, batch, first_row=0, first_number=0)
        for chunk in chunks:
            result = await embedder.embed(chunk.texts)
            if ix is None:
                ix = VectorIndex(result.dimension)
            ix.add(chunk.ids, result.vectors, chunk.metadata)

    asyncio.run(run())
    return ix, time.perf_counter() - t


CORPUS_TEMPLATE = "Worker role: {role} in {city}. Skills: {skills}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m bench.scale --n 50000 --shards 1,2,4 --nodes 3")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dims", type=int, default=64)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--shards", default="1,2,4", help="shard counts to run on Ray (comma-separated)")
    p.add_argument("--nodes", type=int, default=3, help="nodes of the local cluster (head included)")
    p.add_argument("--batch", type=int, default=1000, help="items per add")
    p.add_argument("--clients", type=int, default=4, help="threads searching at once")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the concurrent phase")
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--corpus-rows", type=int, default=20_000, help="rows of the corpus build (0: no corpus build)")
    p.add_argument("--corpus-provider", default="hash", help="[embedd].provider of the corpus build")
    p.add_argument("--corpus-batch", type=int, default=256, help="rows per embed batch")
    p.add_argument("--quick", action="store_true", help="2,000 x 32, 100 queries, shards 1,2")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.dims, args.queries, args.shards, args.seconds = 2000, 32, 100, "1,2", 1.0
        args.corpus_rows = min(args.corpus_rows, 2000)
    shard_counts = [int(s) for s in args.shards.split(",")]

    from lakehouse.scale import LocalBackend, ShardedIndex
    from lakehouse.vectors.index import VectorIndex
    from lakehouse.vectors.registry import IndexParams, NamedIndex

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.dims)).astype(np.float32)
    Q = rng.normal(size=(args.queries, args.dims)).astype(np.float32)
    log(f"exact top-10 of {args.queries} queries over {args.n} x {args.dims} ...")
    truth = exact_top(X, Q, 10)
    params = IndexParams("bench", args.dims)
    results = []
    log("single (today's index, in process):")
    single = NamedIndex("bench", VectorIndex(args.dims), None)
    results.append(measure("single", single, X, Q, truth, args))
    log("router-local (1 shard, in-process backend):")
    ix = ShardedIndex.create(params, 1, 1, LocalBackend())
    results.append(measure("router-local-1x1", ix, X, Q, truth, args))
    ix.close()

    from lakehouse.config import EmbeddConfig

    section = EmbeddConfig(provider=args.corpus_provider, dimension=384)
    rows = corpus_rows(args.corpus_rows)
    corpus: list[dict[str, Any]] = []
    if rows:
        log(f"corpus build in process: {len(rows)} rows, {args.corpus_provider} ...")
        ref, seconds = corpus_in_process(rows, section, args.corpus_batch)
        corpus.append({"config": "in-process", "rows": len(rows), "build_s": round(seconds, 3),
                       "rows_per_s": round(len(rows) / seconds, 1)})
        log(f"  {corpus[-1]}")

    root = tempfile.mkdtemp(prefix="lhray-")
    os.environ["RAY_TMPDIR"] = root
    import ray
    from ray.cluster_utils import Cluster

    from lakehouse.scale.ray_backend import RayBackend

    log(f"starting a local Ray cluster: {args.nodes} node(s), 1 CPU each ...")
    t = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, namespace="lakehouse", log_to_driver=False)
        cluster_start = time.perf_counter() - t
        backend = RayBackend(None, None)  # in memory: the figures are the engine's, not the disk's
        for shards in shard_counts:
            log(f"ray {shards}x1:")
            t = time.perf_counter()
            ix = ShardedIndex.create(IndexParams(f"bench{shards}", args.dims), shards, 1, backend)
            create_s = time.perf_counter() - t
            row = measure(f"ray-{shards}x1", ix, X, Q, truth, args)
            row["create_s"] = round(create_s, 3)
            results.append(row)
            ix.drop()
        if rows:
            from lakehouse.scale.pipeline import build_corpus
            from lakehouse.vectors.index import VectorIndex

            log(f"corpus build on Ray: {len(rows)} rows, {args.nodes} embedder actors ...")
            target = VectorIndex(384)
            t = time.perf_counter()
            build_corpus(target, rows, embedd=section, text_template=CORPUS_TEMPLATE,
                         metadata_columns=["role", "city"], batch_size=args.corpus_batch,
                         concurrency=args.nodes, progress=False)
            seconds = time.perf_counter() - t
            assert len(target) == len(ref), (len(target), len(ref))
            same = all(np.array_equal(target.get(f"w{i}")[0], ref.get(f"w{i}")[0]) for i in range(0, len(rows), 97))
            corpus.append({"config": f"ray-{args.nodes}-actors", "rows": len(rows), "build_s": round(seconds, 3),
                           "rows_per_s": round(len(rows) / seconds, 1), "same_vectors": same})
            log(f"  {corpus[-1]}")
        for r in corpus:
            r["build_vs_in_process"] = round(r["build_s"] / corpus[0]["build_s"], 3)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    base = results[0]
    for r in results:
        r["search_vs_single"] = round(r["sequential_qps"] / base["sequential_qps"], 3)
        r["concurrent_vs_single"] = round(r["concurrent_qps"] / base["concurrent_qps"], 3)
        r["build_vs_single"] = round(r["build_s"] / base["build_s"], 3)
    report = {
        "machine": machine(),
        "data": {"n": args.n, "dims": args.dims, "queries": args.queries, "distance": "cosine", "ef": args.ef},
        "clients": args.clients,
        "nodes": args.nodes,
        "cluster_start_s": round(cluster_start, 1),
        "ray": ray.__version__,
        "results": results,
        "corpus_build": {"provider": args.corpus_provider, "dimension": 384, "batch": args.corpus_batch,
                         "results": corpus},
    }
    write_json(args.results / "scale.json", report)
    cols = ["config", "build_s", "build_vs_single", "search_p50_ms", "sequential_qps", "search_vs_single",
            "concurrent_qps", "concurrent_vs_single", "batch_qps", "recall_at_10"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if corpus:
        print()
        cols = ["config", "rows", "build_s", "rows_per_s", "build_vs_in_process"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in corpus:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
