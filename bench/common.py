"""What every part of the benchmark suite shares: where files go, the machine, progress lines.

Every JSON result carries ``machine()`` and the ``command`` that produced it, so a figure can
always be traced to the hardware, the library versions and the exact invocation.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"

#: the distributions whose versions every result names (absent ones are reported as missing)
PACKAGES = ("lakehouse", "numpy", "hnswlib", "faiss-cpu", "usearch", "aiohttp", "pytest-benchmark")


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries results)."""
    print(msg, file=sys.stderr, flush=True)


def cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def versions() -> dict[str, str | None]:
    """Installed versions by distribution name (None = not installed), without importing."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """The hardware and software a figure was measured on."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
    }
    try:
        from lakehouse import _native

        info["lakehouse_isa"] = _native.simd_isa()
    except ImportError:
        info["lakehouse_isa"] = None
    return info


def command(module: str, argv: list[str]) -> str:
    return " ".join(["python -m", module, *argv])


def write_json(path: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` (with a timestamp) as indented JSON; returns the path."""
    report.setdefault("when", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {path}")
    return path


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
