"""The dependency ranges CI proves: the oldest-versions constraints follow pyproject.toml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _deps_module():
    spec = importlib.util.spec_from_file_location("ci_deps", ROOT / ".ci" / "deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_oldest_constraints_match_pyproject():
    deps = _deps_module()
    committed = (ROOT / ".ci" / "oldest-constraints.txt").read_text()
    assert committed == deps.oldest_constraints(), (
        "pyproject.toml's ranges changed: run `python .ci/deps.py oldest` and commit the file"
    )


def test_every_range_has_a_lower_bound_ci_installs():
    deps = _deps_module()
    for req in deps.requirements():
        name, spec, _marker = deps._parse(req)
        assert deps._lowest(name, spec), req


@pytest.mark.parametrize(
    ("req", "pin"),
    [
        ("numpy>=1.26", "1.26"),
        ("duckdb-ext-httpfs==1.4.4.*", "1.4.4.*"),
        ("moto[server]>=5.0", "5.0"),
        ("uvloop>=0.19; sys_platform != 'win32'", "0.19"),
        ("pybind11>=2.13,<4", "2.13"),
    ],
)
def test_lowest_reads_the_lower_bound(req, pin):
    deps = _deps_module()
    name, spec, _marker = deps._parse(req)
    assert deps._lowest(name, spec) == pin


def test_a_range_without_lower_bound_is_refused():
    deps = _deps_module()
    with pytest.raises(SystemExit, match="lower bound"):
        deps._lowest("numpy", "<3")
    with pytest.raises(SystemExit, match="lower bound"):
        deps._lowest("numpy", "")
