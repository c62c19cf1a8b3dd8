"""The native index against hnswlib (and other peers when installed), in one run.

    python -m bench.core                      # 100,000 x 128 clustered, M=16, ef_construction=200
    python -m bench.core --n 20000 --quick    # a smaller, faster run

For each library, in its own subprocess (so memory is measured cleanly): build time on all
cores, an ef sweep with recall@10 and queries/second for batch search (all cores) and for one
query per call (one thread), memory added by the index (RSS after the build minus before),
save and load time. The headline figure per library is the best queries/second at any ef whose
recall@10 is >= 0.95. Data is a deterministic Gaussian mixture; ground truth is exact (numpy).
Results go to bench/results/core.json and a markdown table on stdout.

Machines here are shared and noisy: every timing is the best of --repeat runs, and the
comparison that matters is the ratio between libraries measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
EFS = [10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256]
RECALL_BAR = 0.95


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- data --------------------------------------------------------------------------------


def dataset(n: int, dims: int, queries: int, seed: int, distance: str) -> tuple[Path, Path, Path]:
    """Cached (data, queries, ground truth) .npy files for these parameters."""
    CACHE.mkdir(exist_ok=True)
    tag = f"{distance}-{n}x{dims}-q{queries}-s{seed}"
    paths = tuple(CACHE / f"{tag}.{part}.npy" for part in ("data", "queries", "truth"))
    if all(p.exists() for p in paths):
        return paths  # type: ignore[return-value]
    log(f"[data] generating {n:,} x {dims} ({distance}) ...")
    rng = np.random.default_rng(seed)
    clusters = max(10, n // 1000)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32) * 4
    x = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dims)).astype(np.float32)
    q = centers[rng.integers(0, clusters, queries)] + rng.standard_normal((queries, dims)).astype(np.float32)
    if distance == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    x, q = x.astype(np.float32), q.astype(np.float32)
    log("[data] exact ground truth ...")
    truth = np.empty((queries, 10), np.int64)
    xx = (x.astype(np.float64) ** 2).sum(1)
    for start in range(0, queries, 256):
        qq = q[start : start + 256].astype(np.float64)
        d = (1 - qq @ x.T) if distance == "cosine" else (xx[None, :] - 2 * qq @ x.T)
        truth[start : start + 256] = np.argsort(d, axis=1)[:, :10]
    for p, arr in zip(paths, (x, q, truth), strict=True):
        np.save(p, arr)
    return paths  # type: ignore[return-value]


# -- one library, in a subprocess --------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


class Adapter:
    """The operations the benchmark needs, per library."""

    name = ""

    def build(self, x: np.ndarray, m: int, efc: int, threads: int) -> None: ...
    def set_ef(self, ef: int) -> None: ...
    def batch(self, q: np.ndarray, k: int, threads: int) -> np.ndarray: ...
    def single(self, q: np.ndarray, k: int) -> None: ...
    def save(self, path: str) -> None: ...
    def load(self, path: str) -> None: ...
    def version(self) -> str: return ""


class Lakehouse(Adapter):
    name = "lakehouse"

    def __init__(self, distance: str) -> None:
        self.distance = distance

    def build(self, x, m, efc, threads):
        from lakehouse import VectorIndex

        self.ids = [str(i) for i in range(len(x))]
        self.ix = VectorIndex(x.shape[1], distance=self.distance, m=m, ef_construction=efc, threads=threads)
        self.ix.add(self.ids, x)

    def set_ef(self, ef):
        self.ef = ef

    def batch(self, q, k, threads):
        self.ix.set_threads(threads)
        found, _ = self.ix.search_batch(q, k=k, ef=self.ef)
        return np.array([[int(i) if i else -1 for i in row] for row in found])

    def single(self, q, k):
        self.ix.set_threads(1)
        search, ef = self.ix.search, self.ef
        for row in q:
            search(row, k=k, ef=ef)

    def save(self, path):
        # hnswlib does not fsync; compare like with like, and report the durable save apart.
        self.ix.save(path, durable=False)

    def save_durable(self, path):
        self.ix.save(path)

    def load(self, path):
        from lakehouse import VectorIndex

        self.ix = VectorIndex.load(path)

    def version(self):
        import lakehouse
        from lakehouse import _native

        return f"{lakehouse.__version__} ({_native.simd_isa()})"


class Hnswlib(Adapter):
    name = "hnswlib"

    def __init__(self, distance: str) -> None:
        self.space = {"cosine": "cosine", "euclidean": "l2"}[distance]

    def build(self, x, m, efc, threads):
        import hnswlib

        self.n, self.dims = x.shape
        self.ix = hnswlib.Index(space=self.space, dim=self.dims)
        self.ix.init_index(max_elements=self.n, M=m, ef_construction=efc, random_seed=1)
        self.ix.set_num_threads(threads)
        self.ix.add_items(x, np.arange(self.n))

    def set_ef(self, ef):
        self.ix.set_ef(ef)

    def batch(self, q, k, threads):
        self.ix.set_num_threads(threads)
        labels, _ = self.ix.knn_query(q, k=k)
        return labels

    def single(self, q, k):
        self.ix.set_num_threads(1)
        query = self.ix.knn_query
        for row in q:
            query(row, k=k)

    def save(self, path):
        self.ix.save_index(path)

    def load(self, path):
        import hnswlib

        ix = hnswlib.Index(space=self.space, dim=self.dims)
        ix.load_index(path, max_elements=self.n)
        self.ix = ix

    def version(self):
        import importlib.metadata

        return importlib.metadata.version("hnswlib")


ADAPTERS = {"lakehouse": Lakehouse, "hnswlib": Hnswlib}


def run_one(args: argparse.Namespace) -> dict:
    """Runs inside the subprocess for one library; returns its figures."""
    data_p, q_p, t_p = dataset(args.n, args.dims, args.queries, args.seed, args.distance)
    x = np.load(data_p)
    q = np.load(q_p)
    truth = np.load(t_p)
    threads = args.threads or os.cpu_count() or 1
    lib = ADAPTERS[args.lib](args.distance)
    before = rss_bytes()
    t = time.perf_counter()
    lib.build(x, args.m, args.efc, threads)
    build_s = time.perf_counter() - t
    memory = rss_bytes() - before
    log(f"[{lib.name}] built in {build_s:.2f}s, +{memory / 2**20:.1f} MiB")
    sweep = []
    single_q = q[: args.single_queries]
    for ef in EFS:
        lib.set_ef(ef)
        found = lib.batch(q, 10, threads)
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
        batch_s = best_of(args.repeat, lambda: lib.batch(q, 10, threads))
        single_s = best_of(args.repeat, lambda: lib.single(single_q, 10))
        point = {
            "ef": ef,
            "recall": round(recall, 4),
            "batch_qps": round(len(q) / batch_s),
            "single_qps": round(len(single_q) / single_s),
        }
        sweep.append(point)
        log(f"[{lib.name}] ef={ef:<4} recall={recall:.4f} batch={point['batch_qps']:>7}/s single={point['single_qps']:>7}/s")
        if recall >= 0.995:
            break
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = os.path.join(tmp, "index.bin")
        save_s = best_of(args.repeat, lambda: lib.save(path))
        durable = getattr(lib, "save_durable", None)
        save_durable_s = best_of(args.repeat, lambda: durable(path)) if durable else None
        size = os.path.getsize(path)
        load_s = best_of(args.repeat, lambda: lib.load(path))
    ok = [p for p in sweep if p["recall"] >= RECALL_BAR]
    return {
        "library": lib.name,
        "version": lib.version(),
        "build_s": round(build_s, 3),
        "memory_mib": round(memory / 2**20, 1),
        "save_s": round(save_s, 4),
        "save_durable_s": round(save_durable_s, 4) if save_durable_s is not None else None,
        "load_s": round(load_s, 4),
        "file_mib": round(size / 2**20, 1),
        "batch_qps_at_095": max((p["batch_qps"] for p in ok), default=None),
        "single_qps_at_095": max((p["single_qps"] for p in ok), default=None),
        "sweep": sweep,
    }


# -- the driver --------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}


def table(results: list[dict]) -> str:
    lines = [
        "| library | build (s) | batch q/s @ recall>=0.95 | single q/s @ recall>=0.95 | memory (MiB) | save (s) | load (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['library']} | missing: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['library']} {r['version']} | {r['build_s']:.2f} | {r['batch_qps_at_095']} | "
            f"{r['single_qps_at_095']} | {r['memory_mib']} | {r['save_s']:.3f} | {r['load_s']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=128)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--single-queries", type=int, default=1000)
    p.add_argument("--distance", choices=["euclidean", "cosine"], default="euclidean")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--libs", default="hnswlib,lakehouse")
    p.add_argument("--out", default=str(RESULTS / "core.json"))
    p.add_argument("--tmp", default=None, help="directory for save/load files")
    p.add_argument("--lib", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.lib:  # child
        print(json.dumps(run_one(args)))
        return 0

    dataset(args.n, args.dims, args.queries, args.seed, args.distance)
    results = []
    for lib in args.libs.split(","):
        log(f"== {lib}")
        cmd = [sys.executable, "-m", "bench.core", "--lib", lib, *(argv if argv is not None else sys.argv[1:])]
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            results.append({"library": lib, "error": tail})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "core",
        "command": "python -m bench.core " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "params": {k: getattr(args, k) for k in ("n", "dims", "queries", "distance", "m", "efc", "threads", "seed", "repeat")},
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    ok = {r["library"]: r for r in results if "error" not in r}
    if "lakehouse" in ok and "hnswlib" in ok:
        a, b = ok["lakehouse"], ok["hnswlib"]
        print(
            f"\nlakehouse / hnswlib: build {b['build_s'] / a['build_s']:.2f}x faster, "
            f"batch {(a['batch_qps_at_095'] or 0) / (b['batch_qps_at_095'] or 1):.2f}x, "
            f"single {(a['single_qps_at_095'] or 0) / (b['single_qps_at_095'] or 1):.2f}x, "
            f"memory {a['memory_mib'] / b['memory_mib']:.2f}x, "
            f"save {b['save_s'] / a['save_s']:.2f}x faster, load {b['load_s'] / a['load_s']:.2f}x faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
