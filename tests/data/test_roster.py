"""lakehouse gen-roster: the columns, the vocabulary, determinism, the CLI."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import orjson
import pytest

from lakehouse.cli import main as cli_main
from lakehouse.roster import CITIES, COLUMNS, ROLES, iter_roster, write_roster
from lakehouse.validation.workers import WorkerRoster


def _rows(n: int, seed: int = 1) -> list[dict[str, str]]:
    buf = io.StringIO()
    write_roster(buf, n, seed)
    return list(csv.DictReader(io.StringIO(buf.getvalue())))


def test_columns_and_vocabulary():
    rows = _rows(2000)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["worker_id"] for r in rows[:3]] == ["w-00001", "w-00002", "w-00003"]
    assert len({r["worker_id"] for r in rows}) == 2000
    cities = set(CITIES)
    for r in rows:
        assert r["role"] in ROLES
        assert (r["city"], r["state"]) in cities
        _, certs, skills = ROLES[r["role"]]
        assert r["skills"]  # at least one skill each
        assert r["shift"] in {"Day", "Night", "Swing", "Weekend", "Rotating"}
        assert 0 <= int(r["years_experience"]) <= 35
        assert 1.0 <= float(r["rating"]) <= 5.0
    # the reference's roles and cities are all there, in realistic numbers
    roles = {r["role"] for r in rows}
    for role in ("Forklift Operator", "CNC Operator", "Warehouse Associate", "Picker", "Loader", "Shipping Clerk"):
        assert role in roles
    for city in ("Milwaukee", "Chicago", "Indianapolis", "Detroit", "Toledo"):
        assert any(r["city"] == city for r in rows)
    assert any("OSHA-30" in r["certifications"] for r in rows)


def test_deterministic_and_prefix_stable():
    assert list(iter_roster(300, 7)) == list(iter_roster(300, 7))
    assert list(iter_roster(300, 7)) != list(iter_roster(300, 8))
    assert list(iter_roster(1000, 7))[:300] == list(iter_roster(300, 7))


def test_ids_do_not_depend_on_n():
    assert [row[0] for row in iter_roster(3, 1)] == ["w-00001", "w-00002", "w-00003"]
    assert next(iter(iter_roster(200_000, 1)))[0] == "w-00001"


def test_negative_n_is_refused():
    with pytest.raises(ValueError):
        list(iter_roster(-1))


def test_cli_stdout_and_file(tmp_path, capsysbinary):
    assert cli_main(["gen-roster", "--n", "25", "--seed", "1"]) == 0
    out = capsysbinary.readouterr().out.decode()
    buf = io.StringIO()
    write_roster(buf, 25, 1)
    assert out == buf.getvalue()
    path = tmp_path / "w.csv"
    assert cli_main(["gen-roster", "--n", "25", "-o", str(path)]) == 0
    assert path.read_text() == buf.getvalue()


def test_cli_as_a_process_shows_progress_for_large_n(tmp_path):
    path = tmp_path / "w.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "gen-roster", "--n", "100000", "--seed", "2", "-o", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0
    assert "100,000/100,000 rows" in proc.stderr
    lines = path.read_text().splitlines()
    assert len(lines) == 100_001 and lines[-1].startswith("w-100000,")


def test_jsonl_carries_the_same_rows_as_csv_and_validatord_reads_it(tmp_path, capsysbinary):
    csv_rows = _rows(300)
    assert cli_main(["gen-roster", "--n", "300", "--format", "jsonl"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    objects = [orjson.loads(line) for line in lines]
    assert len(objects) == 300 and list(objects[0]) == list(COLUMNS)
    # the same values (CSV carries them as text), numbers as numbers
    assert [{k: str(v) for k, v in o.items()} for o in objects] == csv_rows
    assert all(isinstance(o["years_experience"], int) and isinstance(o["rating"], float) for o in objects)
    # the .jsonl suffix picks the format; the file is validatord's roster as it is
    path = tmp_path / "workers.jsonl"
    assert cli_main(["gen-roster", "--n", "300", "-o", str(path)]) == 0
    assert path.read_text().splitlines() == lines
    roster = WorkerRoster.load(path)
    assert len(roster) == 300 and roster.skipped == 0
    first = roster.get("W-00001")  # case-insensitive, as the reference's lookup
    assert first is not None and (first.name, first.role, first.city) == (
        objects[0]["name"], objects[0]["role"], objects[0]["city"])
    for o in objects:
        assert roster.get(o["worker_id"]).active == (o["availability"] != "On assignment")
    with pytest.raises(ValueError, match="format"):
        write_roster(io.StringIO(), 1, format="xml")
