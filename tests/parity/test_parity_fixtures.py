"""The library fixtures: every one through the implementation, its twin and the contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import parity.library as library
import pytest
from parity.__main__ import main as parity_main
from parity.library import FUNCTIONS, Function, check_fixture

from lakehouse.parity import FixtureError, load_fixtures

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "parity" / "fixtures"
LIBRARY = load_fixtures(FIXTURES, kind="library")
ALL = load_fixtures(FIXTURES)

#: the [V] items of contract section 18 this project implements, by section: each must be
#: encoded by at least one fixture
SECTION_18 = {
    "§4", "§5", "§7.2", "§7.3", "§8", "§9.2", "§9.4", "§9.5", "§9.6", "§9.9", "§9.10",
    "§9.11", "§9.12", "§9.13", "§9.14", "§10", "§11", "§12", "§13.2", "§13.3", "§13.5",
    "§14.1", "§14.2", "§14.3", "§14.5", "§14.6",
}


@pytest.mark.parametrize("fx", LIBRARY, ids=[f"{f['contract']} {f['name']}" for f in LIBRARY])
def test_library_fixture(fx):
    assert check_fixture(fx) == []


def test_every_fixture_names_its_section_and_section_18_is_covered():
    sections = {fx["contract"] for fx in ALL}
    assert all(re.fullmatch(r"(SPEC )?§\d+(\.\d+)?", s) for s in sections), sections
    assert sections >= SECTION_18, SECTION_18 - sections
    assert len({fx["name"] for fx in ALL}) == len(ALL)


def test_every_function_has_a_fixture_and_every_twin_is_exercised():
    used = {fx["function"] for fx in LIBRARY}
    assert used == set(FUNCTIONS)
    twins = {name for name, fn in FUNCTIONS.items() if fn.twin is not None}
    assert twins == {"index.search", "playbook.apply", "role.normalize", "role.gate", "embed.hash"}


def test_a_wrong_expectation_is_caught():
    fx = next(f for f in LIBRARY if f["name"].startswith("boost smoke"))
    rows = [dict(r) for r in fx["expect"]["rows"]]
    rows[1]["distance"] = 0.3284
    problems = check_fixture({**fx, "expect": {**fx["expect"], "rows": rows}})
    assert len(problems) == 1 and "expectation" in problems[0]
    assert "-      \"distance\": 0.3284," in problems[0] and "+      \"distance\": 0.3283," in problems[0]


def test_a_twin_that_disagrees_is_caught(monkeypatch):
    real = FUNCTIONS["playbook.apply"]

    def off_by_one_ulp(inp):
        out = real.twin(inp)
        out["rows"][1]["distance"] = 0.32830003  # the next float32 after 0.3283
        return out

    monkeypatch.setitem(FUNCTIONS, "playbook.apply", Function(
        real.name, real.impl, off_by_one_ulp, real.floats, impl_kind=real.impl_kind))
    fx = next(f for f in LIBRARY if f["name"].startswith("boost smoke"))
    problems = check_fixture(fx)
    assert len(problems) == 1 and "reference twin" in problems[0] and "0.3283" in problems[0]


def test_float32_and_tolerance_normalisation():
    pb = FUNCTIONS["playbook.apply"]
    a, b = library.compare(pb, {"d": 0.32829999923706055}, {"d": 0.3283})
    assert a == b == b'{"d":0.3283}'
    search = FUNCTIONS["index.search"]
    rows = [{"id": "b", "distance": 0.5, "metadata": None}, {"id": "a", "distance": 0.5000001, "metadata": None}]
    twin = [{"id": "a", "distance": 0.5, "metadata": None}, {"id": "b", "distance": 0.5, "metadata": None}]
    a, b = library.compare(search, rows, twin)
    assert a == b  # a tie compares as a set, values within 1e-5 as equal
    a, b = library.compare(search, rows, [{**twin[0], "distance": 0.6}, twin[1]])
    assert a != b


def test_bad_fixture_files_are_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"fixtures": [{"name": "n", "kind": "library"}]}')
    with pytest.raises(FixtureError, match="contract"):
        load_fixtures(tmp_path)
    (tmp_path / "x.json").write_text('{"fixtures": [{"contract": "9.9", "name": "n", "kind": "library"}]}')
    with pytest.raises(FixtureError, match="section"):
        load_fixtures(tmp_path)
    (tmp_path / "x.json").write_text(
        '{"fixtures": [{"contract": "§9", "name": "n", "kind": "http", "daemon": "matrixd",'
        ' "request": {"path": "/x"}, "setup": ["@nope"]}]}'
    )
    with pytest.raises(FixtureError, match="nope"):
        load_fixtures(tmp_path)


def test_the_reference_never_imports_the_native_core():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import parity.reference.playbook, parity.reference.index, parity.reference.embed;"
        "bad = [m for m in sys.modules if m.startswith('lakehouse')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_fixtures_probe_runs_alone(capsys):
    assert parity_main(["fixtures"]) == 0
    out = capsys.readouterr().out
    assert f"{len(LIBRARY)}/{len(LIBRARY)} matched" in out
