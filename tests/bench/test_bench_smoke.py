"""Smoke test of the benchmark suite: every part's ``--quick`` variant runs and writes results
of the expected shape; a peer that cannot be imported is reported as missing, not dropped.

No timing is asserted anywhere: speed is the benchmark's business, not the test suite's.
The four parts run at once (they spend much of their time waiting on subprocesses).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("core", "threads", "http", "micro")


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """Run each part's --quick variant in its own results directory, all in parallel."""
    base = tmp_path_factory.mktemp("bench")
    cache = base / "cache"
    # a faiss that "failed to install": importing it raises, as a broken wheel would
    fake = base / "fake"
    (fake / "faiss").mkdir(parents=True)
    (fake / "faiss" / "__init__.py").write_text("raise ImportError('simulated: faiss is not installed')\n")
    procs = {}
    for part in PARTS:
        if part == "micro" and not have("pytest_benchmark"):
            continue
        results = base / part
        env = dict(os.environ)
        argv = [sys.executable, "-m", "bench", part, "--quick", "--results", str(results), "--cache", str(cache)]
        if part == "core":
            env["PYTHONPATH"] = os.pathsep.join([str(fake), env.get("PYTHONPATH", "")])
            argv += ["--libs", "lakehouse,hnswlib,faiss,numpy"]
        procs[part] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), results)
    out = {}
    for part, (proc, results) in procs.items():
        text, _ = proc.communicate(timeout=240)
        out[part] = (proc.returncode, text, results)
    return out


def result(runs, part: str) -> tuple[dict, Path]:
    code, text, results = runs[part]
    assert code == 0, text[-3000:]
    return json.loads((results / f"{part}.json").read_text()), results


def check_machine(report: dict) -> None:
    m = report["machine"]
    assert m["cores"] >= 1 and m["cpu"]
    assert "numpy" in m["versions"] and "hnswlib" in m["versions"]
    assert report["command"].startswith("python -m bench")


def test_core_quick(runs) -> None:
    report, results = result(runs, "core")
    check_machine(report)
    names = [d["dataset"] for d in report["datasets"]]
    assert names == ["clustered-3000x128-euclidean", "normalised-2500x768-cosine"]
    for ds in report["datasets"]:
        libs = {r["library"]: r for r in ds["results"]}
        assert list(libs) == ["lakehouse", "hnswlib", "faiss"]
        # the broken peer is listed with its reason, never dropped
        assert libs["faiss"]["status"] == "missing"
        assert "simulated" in libs["faiss"]["error"]
        if not have("hnswlib"):
            assert libs["hnswlib"]["status"] == "missing"
        ours = libs["lakehouse"]
        for key in ("build_s", "memory_mib", "save_s", "save_durable_s", "load_s", "file_mib", "batch_qps_at_095",
                    "single_qps_at_095", "single_p50_us_at_095", "single_p99_us_at_095"):
            assert key in ours, key
        assert ours["sweep"] and ours["sweep"][0]["ef"] == 10
        for point in ours["sweep"]:
            assert 0 <= point["recall"] <= 1
            assert point["batch_qps"] > 0 and point["single_qps"] > 0
            assert point["single_p50_us"] <= point["single_p99_us"]
        assert ours["max_recall"] >= 0.95  # a small, clustered set: the sweep reaches the bar
        base = ds["baseline"]
        assert base["library"] == "numpy (exact)" and base["recall"] >= 0.999
        assert base["batch_gbps"] > 0 and base["single_gbps"] > 0
        n, dims = ds["params"]["n"], ds["params"]["dims"]
        assert base["scanned_bytes_per_query"] >= n * dims * 4
    summary = (results / "SUMMARY.md").read_text()
    assert "**faiss missing**" in summary
    assert f"{report['machine']['cores']} cores" in summary
    assert "python -m bench core --quick" in summary
    assert "## The bar" in summary
    if have("matplotlib"):
        for name in names:
            png = results / f"recall_vs_qps_{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threads_quick(runs) -> None:
    report, _ = result(runs, "threads")
    check_machine(report)
    libs = {r["library"]: r for r in report["results"]}
    assert set(libs) == {"lakehouse", "hnswlib+rwlock", "hnswlib"}
    cells = {(c["workload"], c["searchers"]): c for c in libs["lakehouse"]["cells"]}
    assert set(cells) == {("search", 1), ("mixed", 1), ("search", 2), ("mixed", 2)}
    for (workload, _), c in cells.items():
        assert c["searches_per_s"] > 0
        assert (c["adds_per_s"] is not None and c["adds_per_s"] > 0) == (workload == "mixed")
        assert 0 <= c["search_wait_share"] <= 1
    assert "lakehouse mixed/search 1t" in report["lock_cost"]
    if not have("hnswlib"):
        assert libs["hnswlib"]["status"] == "missing"


def test_http_quick(runs) -> None:
    report, results = result(runs, "http")
    check_machine(report)
    # With vectord's write-ahead log (fsync) and without (none): the log's cost.
    assert [(t["target"], t["durability"]) for t in report["targets"]] == [
        ("vectord", "fsync"), ("matrixd", "fsync"), ("vectord", "none"), ("matrixd", "none")
    ]
    assert "durability fsync runs at" in (results / "SUMMARY.md").read_text()
    assert report["errors"] == 0
    for t in report["targets"]:
        assert t["recall_at_k"]["default"] >= 0.9
        assert {c["workload"] for c in t["cells"]} == {"search", "mixed"}
        for c in t["cells"]:
            assert c["errors"] == 0, c["error_samples"]
            assert c["requests"] > 0 and c["p50_ms"] <= c["p99_ms"] <= c["max_ms"]
            assert isinstance(c["client_saturated"], bool) and len(c["client_cpu"]) == c["procs"]
        mixed = next(c for c in t["cells"] if c["workload"] == "mixed")
        assert mixed["add"]["requests"] > 0 and mixed["search"]["requests"] > 0
    assert "## Over HTTP" in (results / "SUMMARY.md").read_text()
    # the whole chain: text through the gateway, with and without playbook, beside the peer
    chain = report["chain"]
    assert {c["path"] for c in chain["cells"]} == {"gateway", "gateway+playbook", "matrixd", "vectord", "bare"}
    for c in chain["cells"]:
        assert c["errors"] == 0, c["error_samples"]
        assert c["requests"] > 0 and len(c["client_cpu"]) == 1
    assert "through the gateway" in (results / "SUMMARY.md").read_text()


@pytest.mark.skipif(not have("pytest_benchmark"), reason="pytest-benchmark is in the bench extra")
def test_micro_quick(runs) -> None:
    report, _ = result(runs, "micro")
    check_machine(report)
    groups = {b["group"] for b in report["benchmarks"]}
    for dims in (128, 384, 768, 1536):
        assert f"kernel l2sq {dims}-d" in groups and f"kernel dot {dims}-d" in groups
    for g in ("single add (ef_construction=200)", "single search (k=10, ef=64)", "serialise / load (in memory)"):
        assert g in groups
    isas = {b["extra"].get("isa") for b in report["benchmarks"] if b["group"].startswith("kernel")}
    assert {"scalar", "numpy"} <= isas
    assert all(b["median_us"] > 0 and b["rounds"] >= 1 for b in report["benchmarks"])
    slopes = {(k["isa"], k["kind"]) for k in report["kernel_slopes"]}
    assert ("scalar", "l2sq") in slopes and ("numpy", "dot") in slopes
