"""Peak and final memory of one bulk add, beside hnswlib and faiss (issue 18).

    python -m bench.add_memory                       # 100,000 x 384 float32, one add call
    python -m bench.add_memory --n 20000 --dims 128 --dtypes float64

Each library runs in its own process: the data is generated, the library imported, the
peak-RSS mark reset (``/proc/self/clear_refs``), then N vectors are added in one call.
Reported: peak RSS during the add minus the RSS before it, and the RSS after it minus the
same baseline (the index's final size), and their ratio. The data itself is part of the
baseline; each input dtype (float32, and float64 the core converts in bounded chunks) is a
run of its own. Results: bench/results/add_memory.json and a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS, log, machine, write_json

CHILD = r"""
import json, sys
import numpy as np
lib, n, dims, dtype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
x = np.random.default_rng(0).standard_normal((n, dims)).astype(dtype)
if lib == "lakehouse":
    from lakehouse import VectorIndex
    ix = VectorIndex(dims, distance="euclidean")
    ids = [str(i) for i in range(n)]
    add = lambda: ix.add(ids, x)
elif lib == "hnswlib":
    import hnswlib
    ix = hnswlib.Index(space="l2", dim=dims)
    ix.init_index(max_elements=n, M=16, ef_construction=200)
    add = lambda: ix.add_items(x, np.arange(n))
else:
    import faiss
    ix = faiss.IndexHNSWFlat(dims, 16)
    ix.hnsw.efConstruction = 200
    add = lambda: ix.add(x)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status("VmRSS:")
add()
print(json.dumps({"before": before, "peak": status("VmHWM:"), "after": status("VmRSS:")}))
"""


def run(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.add_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=384)
    p.add_argument("--libs", default="lakehouse,hnswlib,faiss")
    p.add_argument("--dtypes", default="float32,float64", help="input dtypes, each a run per library")
    p.add_argument("--out", default=str(RESULTS / "add_memory.json"), help="where the JSON goes")
    a = p.parse_args(argv)
    rows = []
    for dtype in a.dtypes.split(","):
        for lib in a.libs.split(","):
            log(f"[{lib}] adding {a.n:,} x {a.dims} {dtype} in one call ...")
            proc = subprocess.run([sys.executable, "-c", CHILD, lib, str(a.n), str(a.dims), dtype],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                rows.append({"library": lib, "dtype": dtype, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            peak, final = m["peak"] - m["before"], m["after"] - m["before"]
            rows.append({"library": lib, "dtype": dtype, "peak_mb": peak / 1e6, "final_mb": final / 1e6,
                         "peak_over_final": peak / final if final else None})
    report = {"benchmark": "add_memory", "params": {k: v for k, v in vars(a).items() if k != "out"}, "data_mb": a.n * a.dims * 4 / 1e6,
              "machine": machine(), "rows": rows}
    write_json(Path(a.out), report)
    return report


def table(report: dict[str, Any]) -> str:
    out = [f"data: {report['data_mb']:.0f} MB as float32", "| library | input | peak during add (MB) | final (MB) | peak / final |",
           "|---|---|---:|---:|---:|"]
    for r in report["rows"]:
        dtype = r.get("dtype", "float32")
        if "error" in r:
            out.append(f"| {r['library']} | {dtype} | failed: {r['error']} | | |")
        else:
            out.append(f"| {r['library']} | {dtype} | {r['peak_mb']:.0f} | {r['final_mb']:.0f} | {r['peak_over_final']:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(run(sys.argv[1:])))
