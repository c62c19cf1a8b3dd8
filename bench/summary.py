"""SUMMARY.md and the recall vs queries/second plots, from whatever bench/results/*.json exist.

    python -m bench summary          # (re)write bench/results/SUMMARY.md and the PNGs

Every table and figure names the machine (CPU model, cores), the library versions and the
command that produced the numbers; a peer that failed to install shows as missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import core, http_chain, http_load, threads
from bench.common import log

BAR_ITEMS = (
    ("build_speed", "build time"),
    ("batch_qps", "batch q/s @ recall>=0.95"),
    ("single_qps", "single-query q/s @ recall>=0.95"),
    ("memory_smaller", "memory"),
    ("batch_qps_first_ef", "batch q/s at the first ef with recall>=0.95"),
    ("single_qps_first_ef", "single q/s at the first ef with recall>=0.95"),
)


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / name
    if not path.exists():
        return None
    return json.loads(path.read_text())


def machine_line(m: dict[str, Any]) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB, Python {m['python']}, {m['platform']}"


def versions_line(m: dict[str, Any]) -> str:
    v = m.get("versions", {})
    parts = [f"{k} {val}" if val else f"{k} MISSING" for k, val in v.items()]
    isa = m.get("lakehouse_isa")
    return ", ".join(parts) + (f"; lakehouse kernels: {isa}" if isa else "")


def footer(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (
        f"{m['cpu']}, {m['cores']} cores; " + versions_line(m) + f"\ncommand: {report['command']}  ({report.get('when', '')})"
    )


def bar_table(core_report: dict[str, Any], peer: str = "hnswlib") -> list[str]:
    """The project's bar: ahead of ``peer`` (hnswlib) on build time, batch and single-query
    throughput at recall@10 >= 0.95 and memory, on every data set."""
    lines = [
        "| data set | " + " | ".join(label for _, label in BAR_ITEMS) + " |",
        "|---|" + "---|" * len(BAR_ITEMS),
    ]
    for ds in core_report["datasets"]:
        r = core.ratios(ds["results"], peer=peer)
        if r is None:
            lines.append(f"| {ds['dataset']} | " + " | ".join(f"n/a (lakehouse or {peer} missing)" for _ in BAR_ITEMS) + " |")
            continue
        cells = []
        for key, _ in BAR_ITEMS:
            v = r.get(key)
            digits = 3 if v is not None and abs(v - 1) < 0.01 else 2  # 1.002x, not a puzzling "1.00x"
            cell = "n/a" if v is None else f"{'✅' if v > 1 else '❌'} {v:.{digits}f}x"
            if key.endswith("_first_ef") and v is not None:
                cell += " (ef {} vs {})".format(*r["first_ef"])
            cells.append(cell)
        lines.append(f"| {ds['dataset']} | " + " | ".join(cells) + " |")
    return lines


def plot(ds: dict[str, Any], report: dict[str, Any], out: Path) -> Path | None:
    """recall@10 vs queries/second, batch and single, one curve per library."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plots")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    for ax, key, title in ((axes[0], "batch_qps", "batch search (all cores)"), (axes[1], "single_qps", "one query per call (one thread)")):
        for r in ds["results"]:
            if "sweep" not in r:
                ax.plot([], [], " ", label=f"{r['library']}: {r.get('status', 'failed')}")
                continue
            pts = r["sweep"]
            ax.plot([p["recall"] for p in pts], [p[key] for p in pts], marker="o", markersize=4,
                    label=f"{r['library']} {r['version']}")
        b = ds.get("baseline")
        if b and key in b:
            ax.plot([b["recall"]], [b[key]], marker="X", markersize=10, linestyle="none", color="black",
                    label=f"numpy exact scan ({b[key.replace('qps', 'gbps')]} GB/s)")
        ax.axvline(core.RECALL_BAR, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries / second")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    p = ds["params"]
    fig.suptitle(f"{ds['dataset']}: M={p['m']}, ef_construction={p['efc']}, k=10, {p['queries']} queries, best of {p['repeat']}")
    fig.text(0.01, 0.005, footer(report), fontsize=7, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(out, dpi=90)
    plt.close(fig)
    log(f"wrote {out}")
    return out


def micro_table(micro: dict[str, Any]) -> list[str]:
    lines = ["| group | benchmark | median (µs) | min (µs) | ops/s |", "|---|---|---|---|---|"]
    for b in micro["benchmarks"]:
        lines.append(f"| {b['group']} | {b['name']} | {b['median_us']} | {b['min_us']} | {b['ops']:,.0f} |")
    slopes = micro.get("kernel_slopes") or []
    if slopes:
        lines += ["", "Kernel cost without the call overhead (slope of the fastest call between 128 and 1536 dimensions):", "",
                  "| kernels | kind | ns per 1,000 dimensions | GB/s of vector data |", "|---|---|---|---|"]
        for k in slopes:
            lines.append(f"| {k['isa']} | {k['kind']} | {k['ns_per_1000_dims'] if k['ns_per_1000_dims'] is not None else 'n/a'} | "
                         f"{k['gb_per_s'] if k['gb_per_s'] is not None else 'n/a'} |")
    return lines


def missing(*reports: dict[str, Any] | None) -> list[str]:
    out = []
    for rep in reports:
        if not rep:
            continue
        for ds in rep.get("datasets", [rep]):
            for r in ds.get("results", []):
                if "error" in r:
                    out.append(f"- {rep['benchmark']} / {ds.get('dataset', '')}: **{r['library']} {r.get('status', 'failed')}** ({r['error']})")
            b = ds.get("baseline")
            if b and "error" in b:
                out.append(f"- {rep['benchmark']} / {ds.get('dataset', '')}: **numpy baseline {b.get('status', 'failed')}** ({b['error']})")
    return out


def write(results: Path) -> Path:
    """Rewrite SUMMARY.md (and the plots) from the JSON files in ``results``."""
    core_r = _load(results, "core.json")
    threads_r = _load(results, "threads.json")
    http_r = _load(results, "http.json")
    micro_r = _load(results, "micro.json")
    md = ["# Benchmark results", "",
          "Generated by `python -m bench` (bench/summary.py) from the JSON files beside this one; "
          "method and fairness rules: docs/bench.md.", ""]
    first = next((r for r in (core_r, threads_r, http_r, micro_r) if r), None)
    if first:
        m = first["machine"]
        md += [f"**Machine:** {machine_line(m)}  ", f"**Versions:** {versions_line(m)}", "",
               "The reference machine is shared with other jobs while the suite runs (see each part's "
               "load average): absolute figures move between runs; the ratios compare libraries "
               "measured in turn within the same run.", ""]
    gone = missing(core_r, threads_r)
    if gone:
        md += ["**Missing or failed peers** (not dropped: listed here and in the tables):", "", *gone, ""]
    if core_r:
        md += ["## The bar: lakehouse against hnswlib", "",
               "Ratios oriented so that > 1 means lakehouse is ahead (hnswlib time / ours for build, "
               "ours / hnswlib for queries per second, hnswlib / ours for memory).", "",
               *bar_table(core_r), "",
               "The same ratios against faiss (IndexHNSWFlat), from the same run:", "",
               *bar_table(core_r, peer="faiss"), ""]
        for extra in sorted(results.glob("core-*.json")):
            again = json.loads(extra.read_text())
            md += [f"The same comparison run again (`{again['command']}`, {again.get('when', '')}, {extra.name}):", "",
                   *bar_table(again), ""]
        md += ["## In process, against peers", "", f"Command: `{core_r['command']}` ({core_r.get('when', '')}, "
               f"load average {core_r['machine']['loadavg']} at the end)", ""]
        for ds in core_r["datasets"]:
            p = ds["params"]
            png = results / f"recall_vs_qps_{ds['dataset']}.png"
            drawn = plot(ds, core_r, png)
            md += [f"### {ds['dataset']}", "",
                   f"M={p['m']}, ef_construction={p['efc']}, {p['threads_used']} threads for build and batch, "
                   f"1 for single queries, k=10, {p['queries']} queries ({p['single_queries']} one by one), best of {p['repeat']}. "
                   "q/s: the best at any ef with recall@10 >= 0.95 (the ef in brackets); p50 / p99: one query per call at that ef. "
                   "Memory: RSS growth of a fresh process during the build. Save: no fsync for any library "
                   "(lakehouse's durable save, with fsync, is in the JSON as save_durable_s). "
                   "numpy: exact scan; GB/s = data bytes read per second (the single-query figure is the "
                   "memory-bandwidth ceiling of any exact scan here).", "",
                   core.table(ds["results"], ds.get("baseline")), "",
                   f"![recall vs queries/second, {ds['dataset']}]({png.name})" if drawn else "(no plot: matplotlib missing)", ""]
            durable = [r for r in ds["results"] if r.get("save_durable_s") is not None]
            for r in durable:
                md += [f"lakehouse durable save (fsync): {r['save_durable_s']:.3f} s vs {r['save_s']:.3f} s without.", ""]
    if threads_r:
        p = threads_r["params"]
        md += ["## Threads: searches while another thread adds", "",
               f"Command: `{threads_r['command']}` ({threads_r.get('when', '')}). {p['base_items']:,} items indexed, "
               f"a writer adding the other {p['add_pool']:,} one per call (then upserting them), ef={p['ef']}, k=10, "
               f"{p['duration']} s per cell. hnswlib cannot search during an insert, so its mixed cells use a "
               "readers-writer lock in the caller; `hnswlib` alone is unlocked, search-only.", "",
               threads.table(threads_r), "",
               "Cost of the locks on searches (ratios of searches/second):", "",
               *[f"- {k}: {v}" for k, v in threads_r["lock_cost"].items()], ""]
    if http_r:
        s = http_r["setup"]
        md += ["## Over HTTP: vectord and matrixd", "",
               f"Command: `{http_r['command']}` ({http_r.get('when', '')}). {s['items']:,} items x {s['dims']}-d, k={s['k']}, "
               f"{s['duration_s']} s per cell after {s['warmup_s']} s warm-up, closed loop, {s['procs']} load-generator "
               f"process(es); mixed = one request in {s['add_every']} is a one-item add (to vectord). "
               f"Total errors: **{http_r['errors']}**. Load average {s['loadavg_before']} before, {s['loadavg_after']} after.", "",
               http_load.table(http_r), ""]
        if http_r.get("chain"):
            md += ["### The whole chain: matrix search by text through the gateway", "",
                   "Per layout of the daemons (docs/performance.md), beside the bare aiohttp ceiling of the same run.", "",
                   http_chain.table(http_r["chain"]), ""]
    if micro_r:
        md += ["## Micro-benchmarks (pytest-benchmark)", "", f"Command: `{micro_r['command']}` ({micro_r.get('when', '')}). "
               f"Index figures: {micro_r.get('n', '?'):,} x 128 euclidean items, M=16, ef_construction=200, one thread. "
               "Kernel calls include the Python call overhead.", "", *micro_table(micro_r), ""]
    out = results / "SUMMARY.md"
    results.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    log(f"wrote {out}")
    return out
