"""Numbered reports: ``<dir>/<name>_<NNN>.json`` and ``.md``, NNN one past the highest there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

__all__ = ["next_run", "write_report"]


def next_run(directory: Path, name: str) -> int:
    pattern = re.compile(rf"^{re.escape(name)}_(\d{{3,}})\.(json|md)$")
    numbers = [int(m.group(1)) for p in directory.glob(f"{name}_*") if (m := pattern.match(p.name))]
    return max(numbers, default=0) + 1


def write_report(directory: str | Path, name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write both files atomically enough for a report (temp + rename); their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    run = next_run(directory, name)
    stem = directory / f"{name}_{run:03d}"
    data = {**data, "run": run}
    paths = (stem.with_suffix(".json"), stem.with_suffix(".md"))
    for path, payload in zip(paths, (orjson.dumps(data, option=orjson.OPT_INDENT_2), markdown.encode()), strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(payload)
        tmp.replace(path)
    return paths
