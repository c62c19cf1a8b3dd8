"""The two parts issue 18 added to ``python -m bench``: ``selfrecall`` (every item found by its
own vector, beside hnswlib) and ``add_memory`` (peak and final memory of one add, float32 and
float64 input). Their ``--quick`` runs write where ``--results`` says. No timing or memory
figure is asserted: those are the benchmark's business."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(part: str, results: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench", part, "--quick", "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((results / f"{part}.json").read_text())


def test_selfrecall_quick(tmp_path):
    report = run("selfrecall", tmp_path)
    ours = {r["scenario"]: r for r in report["rows"] if r["library"] == "lakehouse"}
    assert list(ours) == ["bulk", "new-clusters", "churn", "churn + rebuild"]
    assert all(r["unreachable"] == 0 and r["misses"] == 0 for r in ours.values())
    assert report["command"].startswith("python -m bench")


def test_add_memory_quick(tmp_path):
    report = run("add_memory", tmp_path)
    rows = {(r["library"], r["dtype"]): r for r in report["rows"]}
    for dtype in ("float32", "float64"):
        assert rows[("lakehouse", dtype)]["final_mb"] > 0
        assert ("faiss", dtype) in rows  # reported, with its error when not installed
