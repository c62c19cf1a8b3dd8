"""The native index against its peers (hnswlib, faiss IndexHNSWFlat, usearch) and an exact
numpy scan, in one run.

    python -m bench.core                      # 100,000 x 128 clustered, M=16, ef_construction=200
    python -m bench.core --n 20000 --quick    # a smaller, faster run
    python -m bench.core --n 50000 --dims 768 --distance cosine

For each library, in its own subprocess (so memory is measured cleanly, and a peer that fails
to import is reported as missing instead of being dropped): build time on all cores (best of
--build-repeat builds), an ef
sweep with recall@10 and queries/second for batch search (all cores) and for one query per
call (one thread, with p50 / p99 latency), memory added by the index (RSS after the build
minus before, the library already imported), save and load time. The headline figure per
library is the best queries/second at any ef whose recall@10 is >= 0.95. Data is a
deterministic Gaussian mixture; ground truth is exact (numpy).

The baseline is an exact scan in numpy (batch: float32 matrix products on all cores; single:
one matrix-vector product per query on one thread). Its queries/second times the bytes of
data one query reads gives the memory bandwidth it achieved: the single-query figure is the
memory-bandwidth ceiling of any exact scan on this machine.

Results go to bench/results/core.json ({"datasets": [report]}) and a markdown table on stdout.
Machines here are shared and noisy: every timing is the best of --repeat runs, the same for
every library, and the comparison that matters is the ratio between libraries measured in
the same run. So that load from other processes drifts over every library alike, all the
library subprocesses stay alive together and the driver takes their measurements in turn:
builds in alternating order, and at each ef one timed pass per library per round, the
order rotating from round to round.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE, RESULTS, command, log, machine, rss_bytes, write_json

HERE = Path(__file__).resolve().parent
EFS = [10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256]
QUICK_EFS = [10, 16, 32, 64, 128]
RECALL_BAR = 0.95
K = 10
#: exit code of a child whose library is not importable: reported as "missing"
MISSING = 3
DEFAULT_LIBS = "lakehouse,hnswlib,faiss,usearch,numpy"
#: prefix of the protocol lines a library subprocess writes on stdout
PROTO = "@@bench "

_cache_dir = CACHE


# -- data --------------------------------------------------------------------------------


def dataset(n: int, dims: int, queries: int, seed: int, distance: str, kind: str = "synthetic") -> tuple[Path, Path, Path]:
    """Cached (data, queries, ground truth) .npy files for these parameters. ``kind``
    "realtext": real sentences embedded with all-MiniLM-L6-v2 (bench/realtext.py; built on
    first use, which takes minutes); else the Gaussian mixture below."""
    if kind == "realtext":
        from bench import realtext

        p = realtext.build(n, queries, _cache_dir)
        return p["data"], p["queries"], p["truth"]
    _cache_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{distance}-{n}x{dims}-q{queries}-s{seed}"
    paths = tuple(_cache_dir / f"{tag}.{part}.npy" for part in ("data", "queries", "truth"))
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
    log(f"[data] exact ground truth for {queries:,} queries (float64) ...")
    truth = np.empty((queries, K), np.int64)
    xx = (x.astype(np.float64) ** 2).sum(1)
    x64 = x.astype(np.float64)
    for start in range(0, queries, 256):
        qq = q[start : start + 256].astype(np.float64)
        d = (1 - qq @ x64.T) if distance == "cosine" else (xx[None, :] - 2 * qq @ x64.T)
        # the k smallest, then sorted: the same as a full argsort, without sorting 100,000
        part = np.argpartition(d, K, axis=1)[:, :K]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1)
        truth[start : start + 256] = np.take_along_axis(part, order, axis=1)
    for p, arr in zip(paths, (x, q, truth), strict=True):
        tmp = p.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        tmp.replace(p)  # a run interrupted here never leaves a half-written cache file
    return paths  # type: ignore[return-value]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


# -- one library, in a subprocess --------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def single_latencies(fn: Callable[[Any], object], rows: list[Any]) -> np.ndarray:
    """Nanoseconds of each call ``fn(row)``: one query per call, timed one by one."""
    out = np.empty(len(rows), np.int64)
    clock = time.perf_counter_ns
    for i, row in enumerate(rows):
        t = clock()
        fn(row)
        out[i] = clock() - t
    return out


def best_single(repeat: int, fn: Callable[[Any], object], rows: list[Any]) -> np.ndarray:
    """The latencies of the fastest of ``repeat`` passes (by total time)."""
    best: np.ndarray | None = None
    for _ in range(repeat):
        lat = single_latencies(fn, rows)
        if best is None or lat.sum() < best.sum():
            best = lat
    assert best is not None
    return best


class Adapter:
    """The operations the benchmark needs, per library."""

    name = ""
    #: what the library's save does about durability (stated in every result)
    save_note = ""

    def imports(self) -> None:
        """Import the library (before the memory baseline, so its code is not counted)."""

    def prepare(self, n: int) -> None:
        """Make the caller's inputs besides the vectors (the ids or labels a caller already
        holds), before the memory baseline: they are input data, not index memory."""

    def build(self, x: np.ndarray, m: int, efc: int, threads: int) -> None: ...
    def set_ef(self, ef: int) -> None: ...
    def batch(self, q: np.ndarray, k: int, threads: int) -> object:
        """The timed batch search, answer in the library's own form."""
    def labels(self, answer: object) -> np.ndarray:
        """Row ids from a :meth:`batch` answer (not timed)."""
        return np.asarray(answer)
    def single_rows(self, q: np.ndarray) -> list[Any]:
        """Queries shaped as the library takes one query (prepared outside the timing)."""
        return list(q)
    def single_fn(self, k: int) -> Callable[[Any], object]:
        """A callable searching one query on one thread at the current ef."""
        raise NotImplementedError
    def save(self, path: str) -> None: ...
    def load(self, path: str) -> None: ...
    def version(self) -> str: return ""


class Lakehouse(Adapter):
    name = "lakehouse"
    save_note = "save(durable=False): no fsync, like the peers; the durable save (fsync of file and directory) is reported apart"

    def __init__(self, distance: str) -> None:
        self.distance = distance

    def imports(self):
        from lakehouse import VectorIndex  # noqa: F401

    def build(self, x, m, efc, threads):
        from lakehouse import VectorIndex

        self.ix = VectorIndex(x.shape[1], distance=self.distance, m=m, ef_construction=efc, threads=threads)
        self.ix.add(self.ids, x)

    def prepare(self, n):
        self.ids = [str(i) for i in range(n)]

    def set_ef(self, ef):
        self.ef = ef

    def batch(self, q, k, threads):
        self.ix.set_threads(threads)
        return self.ix.search_batch(q, k=k, ef=self.ef)[0]

    def labels(self, answer):
        # string ids are the facade's answer; turning them back into ints is not timed
        return np.array([[int(i) if i else -1 for i in row] for row in answer])

    def single_fn(self, k):
        self.ix.set_threads(1)
        return functools.partial(self.ix.search, k=k, ef=self.ef)

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
    save_note = "save_index: no fsync"

    def __init__(self, distance: str) -> None:
        self.space = {"cosine": "cosine", "euclidean": "l2"}[distance]

    def imports(self):
        import hnswlib  # noqa: F401

    def build(self, x, m, efc, threads):
        import hnswlib

        self.n, self.dims = x.shape
        self.ix = hnswlib.Index(space=self.space, dim=self.dims)
        self.ix.init_index(max_elements=self.n, M=m, ef_construction=efc, random_seed=1)
        self.ix.set_num_threads(threads)
        self.ix.add_items(x, self.label_ids)

    def prepare(self, n):
        self.label_ids = np.arange(n)

    def set_ef(self, ef):
        self.ix.set_ef(ef)

    def batch(self, q, k, threads):
        self.ix.set_num_threads(threads)
        return self.ix.knn_query(q, k=k)[0]

    def single_fn(self, k):
        self.ix.set_num_threads(1)
        return functools.partial(self.ix.knn_query, k=k)

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


class Faiss(Adapter):
    """faiss IndexHNSWFlat. Cosine is inner product on the (already normalised) data: the
    distance values differ from 1 - cos, the neighbours and so recall do not."""

    name = "faiss"
    save_note = "write_index: no fsync"

    def __init__(self, distance: str) -> None:
        self.distance = distance

    def imports(self):
        import faiss  # noqa: F401

    def build(self, x, m, efc, threads):
        import faiss

        metric = faiss.METRIC_INNER_PRODUCT if self.distance == "cosine" else faiss.METRIC_L2
        faiss.omp_set_num_threads(threads)
        self.ix = faiss.IndexHNSWFlat(x.shape[1], m, metric)
        self.ix.hnsw.efConstruction = efc
        self.ix.add(x)

    def set_ef(self, ef):
        self.ix.hnsw.efSearch = ef

    def batch(self, q, k, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        return self.ix.search(q, k)[1]

    def single_rows(self, q):
        return [row.reshape(1, -1) for row in q]

    def single_fn(self, k):
        import faiss

        faiss.omp_set_num_threads(1)
        return functools.partial(self.ix.search, k=k)

    def save(self, path):
        import faiss

        faiss.write_index(self.ix, path)

    def load(self, path):
        import faiss

        self.ix = faiss.read_index(path)

    def version(self):
        import faiss

        return faiss.__version__


class Usearch(Adapter):
    """usearch with float32 storage (dtype f32, as the others), connectivity = M."""

    name = "usearch"
    save_note = "Index.save: no fsync"

    def __init__(self, distance: str) -> None:
        self.metric = {"cosine": "cos", "euclidean": "l2sq"}[distance]

    def imports(self):
        from usearch.index import Index  # noqa: F401

    def build(self, x, m, efc, threads):
        from usearch.index import Index

        self.ix = Index(
            ndim=x.shape[1], metric=self.metric, dtype="f32", connectivity=m, expansion_add=efc
        )
        self.ix.add(self.label_ids, x, threads=threads)

    def prepare(self, n):
        self.label_ids = np.arange(n)

    def set_ef(self, ef):
        self.ix.expansion_search = ef

    def batch(self, q, k, threads):
        return self.ix.search(q, k, threads=threads)

    def labels(self, answer):
        return np.asarray(answer.keys).astype(np.int64)

    def single_fn(self, k):
        return functools.partial(self.ix.search, count=k, threads=1)

    def save(self, path):
        self.ix.save(path)

    def load(self, path):
        from usearch.index import Index

        ef = self.ix.expansion_search
        self.ix = Index.restore(path)
        self.ix.expansion_search = ef

    def version(self):
        import usearch

        return usearch.__version__


ADAPTERS: dict[str, type[Adapter]] = {
    "lakehouse": Lakehouse,
    "hnswlib": Hnswlib,
    "faiss": Faiss,
    "usearch": Usearch,
}


def _load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data_p, q_p, t_p = dataset(args.n, args.dims, args.queries, args.seed, args.distance, args.dataset)
    return np.load(data_p), np.load(q_p), np.load(t_p)


def _reply(msg: dict[str, Any]) -> None:
    # protocol lines carry a prefix: anything else a library prints on stdout is ignored
    print(PROTO + json.dumps(msg), flush=True)


def serve(args: argparse.Namespace) -> int:
    """The subprocess for one library: load the data, then obey the driver's commands (one
    JSON line each on stdin, one answer each on stdout) so that every library's timings can
    be taken in turn, close together in time."""
    threads = args.threads or os.cpu_count() or 1
    lib = ADAPTERS[args.lib](args.distance)
    try:
        lib.imports()
    except ImportError as exc:
        log(f"cannot import {args.lib}: {type(exc).__name__}: {exc}")
        return MISSING
    x, q, truth = _load_data(args)
    lib.prepare(len(x))
    single_q = lib.single_rows(q[: args.single_queries])
    _reply({"ready": True, "version": lib.version(), "save_note": lib.save_note})
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "build":
            lib.ix = None  # type: ignore[attr-defined]  # a rebuild: free the previous index first
            gc.collect()
            before = rss_bytes()
            t = time.perf_counter()
            lib.build(x, args.m, args.efc, threads)
            build_s = time.perf_counter() - t
            memory = rss_bytes() - before
            log(f"[{lib.name}] built in {build_s:.2f}s, +{memory / 2**20:.1f} MiB")
            _reply({"build_s": build_s, "memory": memory})
        elif op == "ef":
            lib.set_ef(cmd["ef"])
            _reply({"recall": recall_at_k(lib.labels(lib.batch(q, K, threads)), truth)})
        elif op == "time":
            t = time.perf_counter()
            lib.batch(q, K, threads)
            batch_s = time.perf_counter() - t
            lat = single_latencies(lib.single_fn(K), single_q)
            _reply({"batch_s": batch_s, "single_s": lat.sum() / 1e9,
                    "p50_us": float(np.percentile(lat, 50)) / 1000, "p99_us": float(np.percentile(lat, 99)) / 1000})
        elif op == "persist":
            _reply(persist(lib, args))
        elif op == "quit":
            break
    return 0


def persist(lib: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """Save and load times (best of ``--repeat``), in a temporary directory."""
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = os.path.join(tmp, "index.bin")
        save_s = best_of(args.repeat, lambda: lib.save(path))
        durable = getattr(lib, "save_durable", None)
        save_durable_s = best_of(args.repeat, lambda: durable(path)) if durable else None
        size = os.path.getsize(path)
        load_s = best_of(args.repeat, lambda: lib.load(path))
    return {"save_s": save_s, "save_durable_s": save_durable_s, "load_s": load_s, "size": size}


class Child:
    """The driver's handle on one library's subprocess."""

    def __init__(self, lib: str, argv: list[str]) -> None:
        self.lib = lib
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.core", *argv, "--lib", lib],
            cwd=HERE.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            self.tail.append(line.rstrip())

    def read(self) -> dict[str, Any]:
        """The next protocol answer; ChildGone when the process ended instead."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO):])
        code = self.proc.wait()
        self.pump.join(timeout=5)
        raise ChildGone(self.lib, code, next((t for t in reversed(self.tail) if t.strip()), "failed"))

    def ask(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # read() reports how it ended
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.pump.join(timeout=5)


class ChildGone(Exception):
    def __init__(self, lib: str, code: int, last: str) -> None:
        super().__init__(last)
        self.lib, self.code, self.last = lib, code, last

    def result(self) -> dict[str, Any]:
        return {"library": self.lib, "status": "missing" if self.code == MISSING else "failed", "error": self.last}


def measure(libs: list[str], argv: list[str], args: argparse.Namespace) -> list[dict]:
    """Every library in its own subprocess, all alive at once; builds and timings taken in
    turn (the order rotating), so that a shared machine's load drifts over every library
    alike. Returns one result per library, in ``libs`` order."""
    children: dict[str, Child] = {}
    info: dict[str, dict[str, Any]] = {}
    gone: dict[str, dict[str, Any]] = {}

    def ask(lib: str, op: str, **kw: Any) -> dict[str, Any] | None:
        try:
            return children[lib].ask(op, **kw)
        except ChildGone as exc:
            gone[lib] = exc.result()
            children.pop(lib).close()
            return None

    try:
        for lib in libs:
            log(f"== {lib} ({args.distance} {args.n:,} x {args.dims})")
            children[lib] = Child(lib, argv)
            try:
                info[lib] = children[lib].read()
            except ChildGone as exc:
                gone[lib] = exc.result()
                children.pop(lib).close()
        builds: dict[str, list[float]] = {lib: [] for lib in children}
        memory: dict[str, int] = {}
        for rnd in range(args.build_repeat):
            order = list(children) if rnd % 2 == 0 else list(reversed(children))
            for lib in order:
                if lib in children and (r := ask(lib, "build")):
                    builds[lib].append(r["build_s"])
                    memory.setdefault(lib, r["memory"])  # the first build, in a fresh process
        sweeps: dict[str, list[dict]] = {lib: [] for lib in children}
        active = list(children)
        for ef in QUICK_EFS if args.quick else EFS:
            recalls = {lib: r["recall"] for lib in active if lib in children and (r := ask(lib, "ef", ef=ef))}
            best: dict[str, dict[str, Any]] = {}
            for rep in range(args.repeat):
                order = [lib for lib in active if lib in recalls]
                order = order[rep % len(order):] + order[: rep % len(order)] if order else order
                for lib in order:
                    if lib not in children or not (r := ask(lib, "time")):
                        continue
                    b = best.setdefault(lib, dict(r))
                    b["batch_s"] = min(b["batch_s"], r["batch_s"])
                    if r["single_s"] < b["single_s"]:  # latencies of the fastest single pass
                        b.update(single_s=r["single_s"], p50_us=r["p50_us"], p99_us=r["p99_us"])
            for lib, b in best.items():
                if lib not in children:
                    continue
                point = {
                    "ef": ef,
                    "recall": round(recalls[lib], 4),
                    "batch_qps": round(args.queries / b["batch_s"]),
                    "single_qps": round(min(args.single_queries, args.queries) / b["single_s"]),
                    "single_p50_us": round(b["p50_us"], 1),
                    "single_p99_us": round(b["p99_us"], 1),
                }
                sweeps[lib].append(point)
                log(
                    f"[{lib}] ef={ef:<4} recall={point['recall']:.4f} batch={point['batch_qps']:>7}/s "
                    f"single={point['single_qps']:>7}/s p50={point['single_p50_us']}us p99={point['single_p99_us']}us"
                )
            active = [lib for lib in active if lib in children and recalls.get(lib, 1) < 0.995]
            if not active:
                break
        results = {}
        for lib in list(children):
            if not (r := ask(lib, "persist")):
                continue
            results[lib] = {
                "library": lib,
                "version": info[lib]["version"],
                "build_s": round(min(builds[lib]), 3),
                "build_runs_s": [round(b, 3) for b in builds[lib]],
                "memory_mib": round(memory[lib] / 2**20, 1),
                "save_s": round(r["save_s"], 4),
                "save_durable_s": round(r["save_durable_s"], 4) if r["save_durable_s"] is not None else None,
                "save_note": info[lib]["save_note"],
                "load_s": round(r["load_s"], 4),
                "file_mib": round(r["size"] / 2**20, 1),
                **headline(sweeps[lib]),
                "sweep": sweeps[lib],
            }
    finally:
        for child in children.values():
            child.close()
    return [results.get(lib) or gone.get(lib) or {"library": lib, "status": "failed", "error": "no result"} for lib in libs]


def headline(sweep: list[dict]) -> dict[str, Any]:
    """The best queries/second at any ef whose recall@10 >= 0.95, and the ef it was seen at
    (with the single-query latency there)."""
    ok = [p for p in sweep if p["recall"] >= RECALL_BAR]
    first = min(ok, key=lambda p: p["ef"], default=None)
    best_batch = max(ok, key=lambda p: p["batch_qps"], default=None)
    best_single = max(ok, key=lambda p: p["single_qps"], default=None)
    return {
        "batch_qps_at_095": best_batch["batch_qps"] if best_batch else None,
        "batch_ef_at_095": best_batch["ef"] if best_batch else None,
        "single_qps_at_095": best_single["single_qps"] if best_single else None,
        "single_ef_at_095": best_single["ef"] if best_single else None,
        "single_p50_us_at_095": best_single["single_p50_us"] if best_single else None,
        "single_p99_us_at_095": best_single["single_p99_us"] if best_single else None,
        "max_recall": max((p["recall"] for p in sweep), default=None),
        # the first ef of the sweep whose recall@10 >= 0.95, and the rates measured there
        "first_ef_095": dict(first) if first else None,
    }


# -- the exact numpy baseline ----------------------------------------------------------------


def _exact(x: np.ndarray, xx: np.ndarray | None, q: np.ndarray) -> np.ndarray:
    """The k nearest rows of ``x`` to each row of ``q`` (2-d): float32 products, partition."""
    s = q @ x.T
    d = -s if xx is None else xx[None, :] - 2 * s
    part = np.argpartition(d, K, axis=1)[:, :K]
    order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def run_numpy(args: argparse.Namespace, mode: str) -> dict:
    """The exact scan, batch (``mode`` "batch", BLAS on all cores) or one query per call
    ("single", started with one BLAS thread). Memory is the data itself."""
    x, q, truth = _load_data(args)
    xx = None if args.distance == "cosine" else (x * x).sum(1)
    scanned = x.nbytes + (0 if xx is None else xx.nbytes)  # bytes one query reads
    out: dict[str, Any] = {"library": "numpy", "version": np.__version__, "mode": mode}
    if mode == "batch":
        chunks = [q[i : i + 256] for i in range(0, len(q), 256)]
        found = np.concatenate([_exact(x, xx, c) for c in chunks])
        out["recall"] = round(recall_at_k(found, truth), 4)
        batch_s = best_of(args.repeat, lambda: [_exact(x, xx, c) for c in chunks])
        qps = len(q) / batch_s
        out.update(batch_qps=round(qps, 1), batch_gbps=round(qps * scanned / 1e9, 1))
        log(f"[numpy] exact batch {qps:,.0f} q/s ({out['batch_gbps']} GB/s of data scanned)")
    else:
        rows = [r.reshape(1, -1) for r in q[: min(args.single_queries, args.numpy_single_queries)]]
        lat = best_single(args.repeat, functools.partial(_exact, x, xx), rows)
        qps = len(rows) / (lat.sum() / 1e9)
        out.update(
            single_qps=round(qps, 1),
            single_gbps=round(qps * scanned / 1e9, 1),
            single_p50_us=round(float(np.percentile(lat, 50)) / 1000, 1),
            single_p99_us=round(float(np.percentile(lat, 99)) / 1000, 1),
        )
        log(f"[numpy] exact single {qps:,.1f} q/s ({out['single_gbps']} GB/s of data scanned, one thread)")
    out["memory_mib"] = round(scanned / 2**20, 1)
    out["scanned_bytes_per_query"] = scanned
    return out


# -- the driver --------------------------------------------------------------------------


def spawn(child_argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Run ``python -m bench.core <child_argv>``: (exit code, stdout, last stderr lines).
    Its stderr (progress) streams through live."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.core", *child_argv],
        cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    tail: collections.deque[str] = collections.deque(maxlen=20)
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line.rstrip())
    out = proc.stdout.read()
    return proc.wait(), out, list(tail)


def _child_result(lib: str, code: int, out: str, tail: list[str]) -> dict:
    if code == 0:
        return json.loads(out.strip().splitlines()[-1])
    last = next((line for line in reversed(tail) if line.strip()), "failed")
    status = "missing" if code == MISSING else "failed"
    return {"library": lib, "status": status, "error": last}


def compare(argv: list[str]) -> dict[str, Any]:
    """One dataset, every library: the report for that dataset (nothing written)."""
    args = parse(argv)
    dataset(args.n, args.dims, args.queries, args.seed, args.distance, args.dataset)
    libs = [s for s in args.libs.split(",") if s]
    unknown = [lib for lib in libs if lib not in ADAPTERS and lib != "numpy"]
    measured = measure([lib for lib in libs if lib in ADAPTERS], argv, args)
    results = [r for r in measured] + [
        {"library": lib, "status": "failed", "error": f"no adapter (known: {', '.join(ADAPTERS)}, numpy)"} for lib in unknown
    ]
    baseline: dict[str, Any] | None = None
    if "numpy" in libs:
        log(f"== numpy exact scan ({args.distance} {args.n:,} x {args.dims})")
        parts = {}
        for mode, env in (("batch", None), ("single", _one_blas_thread())):
            code, out, tail = spawn([*argv, "--lib", "numpy", "--numpy-mode", mode], env)
            parts[mode] = _child_result("numpy", code, out, tail)
        if all("error" not in p for p in parts.values()):
            baseline = {**parts["batch"], **parts["single"], "library": "numpy (exact)"}
            baseline.pop("mode", None)
        else:
            baseline = next(p for p in parts.values() if "error" in p)
    return {
        "benchmark": "core",
        "dataset": dataset_name(args),
        "command": command("bench.core", argv),
        "params": {k: getattr(args, k) for k in ("dataset", "n", "dims", "queries", "single_queries", "distance", "m", "efc", "threads", "seed", "repeat", "build_repeat", "quick")}
        | {"threads_used": args.threads or os.cpu_count(), "k": K, "recall_bar": RECALL_BAR},
        "results": results,
        "baseline": baseline,
    }


def _one_blas_thread() -> dict[str, str]:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def dataset_name(args: argparse.Namespace) -> str:
    if args.dataset == "realtext":
        return f"realtext-{args.n}x{args.dims}-{args.distance}"
    kind = "normalised" if args.distance == "cosine" else "clustered"
    return f"{kind}-{args.n}x{args.dims}-{args.distance}"


def table(results: list[dict], baseline: dict | None = None) -> str:
    lines = [
        "| library | build (s) | batch q/s @ recall>=0.95 | single q/s @ recall>=0.95 | single p50 / p99 (µs) | memory (MiB) | save (s) | load (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['library']} | {r.get('status', 'failed')}: {r['error']} | | | | | | |")
            continue
        lat = "" if r.get("single_p50_us_at_095") is None else f"{r['single_p50_us_at_095']} / {r['single_p99_us_at_095']}"
        lines.append(
            f"| {r['library']} {r['version']} | {r['build_s']:.2f} | {r['batch_qps_at_095']} (ef {r['batch_ef_at_095']}) | "
            f"{r['single_qps_at_095']} (ef {r['single_ef_at_095']}) | {lat} | {r['memory_mib']} | {r['save_s']:.3f} | {r['load_s']:.3f} |"
        )
    if baseline is not None:
        b = baseline
        if "error" in b:
            lines.append(f"| numpy (exact) | {b.get('status', 'failed')}: {b['error']} | | | | | | |")
        else:
            lines.append(
                f"| numpy {b['version']} exact scan (recall {b['recall']}) | 0 | {b['batch_qps']:.0f} ({b['batch_gbps']} GB/s) | "
                f"{b['single_qps']:.1f} ({b['single_gbps']} GB/s) | {b['single_p50_us']} / {b['single_p99_us']} | {b['memory_mib']} | | |"
            )
    return "\n".join(lines)


def ratios(results: list[dict], ours: str = "lakehouse", peer: str = "hnswlib") -> dict[str, float] | None:
    """How ``ours`` compares with ``peer``: every figure oriented so that > 1 means ours wins."""
    ok = {r["library"]: r for r in results if "error" not in r}
    if ours not in ok or peer not in ok:
        return None
    a, b = ok[ours], ok[peer]

    def div(x: float | None, y: float | None) -> float | None:
        return round(x / y, 3) if x and y else None

    out = {
        "build_speed": div(b["build_s"], a["build_s"]),
        "batch_qps": div(a["batch_qps_at_095"], b["batch_qps_at_095"]),
        "single_qps": div(a["single_qps_at_095"], b["single_qps_at_095"]),
        "memory_smaller": div(b["memory_mib"], a["memory_mib"]),
        "save_speed": div(b["save_s"], a["save_s"]),
        "load_speed": div(b["load_s"], a["load_s"]),
    }
    fa, fb = a.get("first_ef_095"), b.get("first_ef_095")
    if fa and fb:
        # each library at the first ef where it reaches the bar (usually the same ef)
        out |= {"batch_qps_first_ef": div(fa["batch_qps"], fb["batch_qps"]),
                "single_qps_first_ef": div(fa["single_qps"], fb["single_qps"]),
                "first_ef": [fa["ef"], fb["ef"]]}
    return out


def ratio_lines(results: list[dict], peers: tuple[str, ...] = ("hnswlib", "faiss")) -> list[str]:
    """One line per peer: lakehouse / peer, every figure oriented so that > 1 means ahead."""
    lines = []
    for peer in peers:
        r = ratios(results, peer=peer)
        if r:
            lines.append(f"lakehouse / {peer} (> 1: lakehouse ahead): " + ", ".join(f"{k} {v}" for k, v in r.items()))
    return lines


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["synthetic", "realtext"], default="synthetic",
                   help="synthetic: a Gaussian mixture (--dims, --distance); realtext: real sentences "
                        "embedded with all-MiniLM-L6-v2 (384-d cosine, bench/realtext.py)")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=128)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--single-queries", type=int, default=1000)
    p.add_argument("--numpy-single-queries", type=int, default=200, help="the exact scan is slow: fewer single queries")
    p.add_argument("--distance", choices=["euclidean", "cosine"], default="euclidean")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="timings: best of N, taken in turn across libraries")
    p.add_argument("--build-repeat", type=int, default=2, help="builds: best of N (alternating the library order)")
    p.add_argument("--quick", action="store_true", help="a short ef sweep (smoke runs)")
    p.add_argument("--libs", default=DEFAULT_LIBS)
    p.add_argument("--out", default=str(RESULTS / "core.json"))
    p.add_argument("--cache", default=str(CACHE), help="directory for generated data and ground truth")
    p.add_argument("--tmp", default=None, help="directory for save/load files")
    p.add_argument("--lib", help=argparse.SUPPRESS)
    p.add_argument("--numpy-mode", choices=["batch", "single"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dataset == "realtext" and (args.dims, args.distance) != (384, "cosine"):
        p.error("--dataset realtext is 384-d cosine: pass --dims 384 --distance cosine")
    global _cache_dir
    _cache_dir = Path(args.cache)
    return args


def child(args: argparse.Namespace) -> int:
    """The subprocess side (exit MISSING when the library will not import)."""
    if args.lib != "numpy":
        return serve(args)
    try:
        result = run_numpy(args, args.numpy_mode)
    except ImportError as exc:
        log(f"cannot import numpy: {type(exc).__name__}: {exc}")
        return MISSING
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.lib:
        return child(args)
    report = compare(argv)
    write_json(Path(args.out), {"benchmark": "core", "command": report["command"], "machine": machine(), "datasets": [report]})
    print(table(report["results"], report["baseline"]))
    lines = ratio_lines(report["results"])
    if lines:
        print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
