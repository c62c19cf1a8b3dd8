"""End to end: the real stack (all twelve daemons as processes on free loopback ports), the
demo's story through the gateway, and the ``lakehouse demo`` command itself.

The story's outcome (:class:`lakehouse.demo.DemoOutcome`) is checked against independent
sources: the roster generator for the SQL counts, vectord for the corpus size, the playbook
id formula of docs/matrix.md, and raw HTTP for the trace-id header.
"""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

from lakehouse.config import load_config
from lakehouse.demo import BOOST_WINDOW, INJECT_WINDOW, DemoError, Scenario, run_demo
from lakehouse.roster import COLUMNS, iter_roster
from lakehouse.services import DAEMONS
from lakehouse.stack import running_stack
from lakehouse.web import TRACE_HEADER

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SCENARIO = Scenario()


def http(url: str, body: object = None, headers: dict[str, str] | None = None):
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with NO_PROXY.open(req, timeout=30) as resp:
        return resp.status, resp.headers, orjson.loads(resp.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Every daemon, on ports the OS picks, with the embedded defaults."""
    config = load_config(env={}, data_dir=str(tmp_path_factory.mktemp("e2e") / "data"))
    for name in DAEMONS:
        config = config.replace(name, port=0)
    with running_stack(config, startup_timeout=90) as st:
        yield st


@pytest.fixture(scope="module")
def outcome(stack):
    return run_demo(stack.urls["gateway"], SCENARIO, trace_id="e2e-story-0001")


def test_the_whole_stack_runs_on_free_loopback_ports(stack):
    assert set(stack.urls) == set(DAEMONS) and len(DAEMONS) == 13
    defaults = load_config(env={})
    for name, url in stack.urls.items():
        assert url.startswith("http://127.0.0.1:")
        assert stack.config.section(name).port != defaults.section(name).port


def test_sql_counts_equal_the_generators(outcome):
    role = COLUMNS.index("role")
    expected = collections.Counter(row[role] for row in iter_roster(SCENARIO.roster_size, SCENARIO.seed))
    assert outcome.role_counts == dict(expected)
    assert outcome.dataset["row_count"] == SCENARIO.roster_size
    assert outcome.dataset["name"] == SCENARIO.dataset


def test_the_corpus_has_the_rosters_size(stack, outcome):
    assert outcome.corpus_size == SCENARIO.roster_size
    assert outcome.corpus["status"] == "done" and not outcome.corpus["failed_batches"]
    # vectord, asked directly (not through the gateway), agrees
    _, _, info = http(f"{stack.urls['vectord']}/vectors/index/{SCENARIO.dataset}")
    assert info["count"] == SCENARIO.roster_size


def test_the_demands_top_hit_matches_its_role_and_city(outcome):
    top = outcome.demand.hits[0]
    assert (top.role, top.city) == (SCENARIO.role, SCENARIO.city)
    assert len(outcome.demand.hits) == SCENARIO.k
    assert all(h.source == "retrieval" for h in outcome.demand.hits)
    distances = [h.distance for h in outcome.demand.hits]
    assert distances == sorted(distances)


def test_the_approval_is_recorded_under_the_documented_id(outcome):
    approved = outcome.demand.find(outcome.approved_id)
    assert approved is not None
    assert (approved.role, approved.city, approved.shift) == (SCENARIO.role, SCENARIO.city, SCENARIO.shift)
    assert SCENARIO.certification in approved.certifications
    key = f"{SCENARIO.demand}\x1f{outcome.approved_id}\x1f{SCENARIO.dataset}".encode()
    assert outcome.playbook_id == hashlib.sha256(key).hexdigest()[:32]


def test_alices_playbook_brings_the_answer_back_for_the_paraphrase(outcome):
    assert outcome.paraphrase_distance < INJECT_WINDOW  # the scenario is inside the window
    # the story's searches set no threshold: matrixd calibrated its windows to the embedder,
    # and the story reports those, not the reference's constants
    assert outcome.window_mode == "calibrated"
    assert (outcome.inject_window, outcome.boost_window) != (INJECT_WINDOW, BOOST_WINDOW)
    assert 0 < outcome.inject_window < outcome.boost_window
    if outcome.alice_source == "inject":
        assert outcome.paraphrase_distance <= outcome.inject_window
    hit = outcome.alice.find(outcome.approved_id)
    assert hit is not None and hit.rank == 1
    assert outcome.alice_source in ("inject", "boost")
    pb = outcome.alice.playbook
    assert pb["enabled"] and pb["hits"] >= 1 and pb["boosted"] + pb["injected"] >= 1
    if outcome.alice_source == "inject":  # at the hit's distance x (1 - 0.5 x score 1.0)
        assert hit.distance == pytest.approx(outcome.paraphrase_distance * 0.5, abs=1e-4)


def test_bobs_playbook_does_not_see_alices_answer(outcome):
    assert outcome.other_approved_id  # bob has a playbook of his own: not a cold start
    pb = outcome.bob.playbook
    assert pb["enabled"] and not pb["cold_start"]
    assert pb["boosted"] == 0 and pb["injected"] == 0
    assert outcome.bob_source in (None, "retrieval")
    assert outcome.isolated
    # the same words, the same corpus: bob sees plain retrieval, alice sees her answer first
    assert [h.id for h in outcome.bob.hits] != [h.id for h in outcome.alice.hits]
    assert all(h.source == "retrieval" for h in outcome.bob.hits)


def test_the_trace_id_round_trips(stack, outcome):
    assert outcome.trace_id == "e2e-story-0001"
    assert outcome.requests >= 10 and outcome.trace_echoed
    gateway = stack.urls["gateway"]
    status, headers, body = http(
        f"{gateway}/v1/sql",
        {"sql": f"SELECT count(*) AS n FROM {SCENARIO.dataset}"},
        {TRACE_HEADER: "e2e-raw-0002"},
    )
    assert status == 200 and body["rows"] == [[SCENARIO.roster_size]]
    assert headers[TRACE_HEADER] == "e2e-raw-0002"
    _, headers, _ = http(f"{gateway}/v1/matrix/corpora")
    assert headers[TRACE_HEADER]  # minted when the client sends none


def test_a_second_run_reuses_the_data_and_tells_the_same_story(stack, outcome):
    again = run_demo(stack.urls["gateway"], SCENARIO)
    assert again.dataset["existing"] is True
    assert again.dataset["dataset_id"] == outcome.dataset["dataset_id"]
    assert again.corpus_size == SCENARIO.roster_size
    assert again.approved_id == outcome.approved_id and again.playbook_id == outcome.playbook_id
    assert again.alice_source == outcome.alice_source and again.isolated


def test_the_demo_refuses_to_overwrite_a_dataset_of_another_size(stack, outcome):
    small = Scenario(roster_size=100)
    with pytest.raises(DemoError, match="already exists with 2,000 rows.*--dataset"):
        run_demo(stack.urls["gateway"], small)
    _, _, body = http(
        f"{stack.urls['gateway']}/v1/sql", {"sql": f"SELECT count(*) FROM {SCENARIO.dataset}"}
    )
    assert body["rows"] == [[SCENARIO.roster_size]]  # untouched


def _lakehouse(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["TMPDIR"] = str(cwd)  # the demo's temporary data directory lands here
    return subprocess.run(
        [sys.executable, "-m", "lakehouse", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check_story(stdout: str) -> None:
    for n in range(1, 9):
        assert f"\n{n}. " in stdout, f"step {n} missing:\n{stdout}"
    assert "\x1b[" not in stdout  # not a terminal: no progress lines
    too_wide = [line for line in stdout.splitlines() if len(line) > 100]
    assert not too_wide, too_wide  # a terminal of 100 columns shows it all
    # every search table names each result's corpus
    assert stdout.count("#  worker   corpus") == 3
    text = " ".join(stdout.split())  # paragraphs are wrapped
    assert "Ingested 2,000 rows as dataset `workers`" in text
    assert "Built corpus `workers`: 2,000 vectors" in text
    assert "Warehouse Associate 248" in text and "Forklift Operator 218" in text
    assert "source `inject`" in text or "source `boost`" in text
    assert "Each coordinator's playbook is their own." in text
    assert "answers brought it back" in text


def test_lakehouse_demo_against_a_running_stack(stack, outcome, tmp_path):
    proc = _lakehouse("demo", "--url", stack.urls["gateway"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_story(proc.stdout)
    assert "Done in" in proc.stdout
    assert proc.stderr == ""


def test_lakehouse_demo_starts_and_stops_its_own_stack(tmp_path):
    """The README's first command: no arguments, embedded defaults."""
    proc = _lakehouse("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_story(proc.stdout)
    assert "Stack ready in" in proc.stdout and "the stack is stopped" in proc.stdout
    assert "embedded defaults" in proc.stdout
    # the temporary data directory is gone, and nothing was written to the working directory
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # ~12 s; the same path runs in-process in tests/test_demo.py
def test_a_daemon_that_fails_to_start_is_named_with_its_last_output(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[pathwayd]\npersist_path = "/dev/null/events.jsonl"\n')
    proc = _lakehouse("demo", "--config", str(bad), cwd=tmp_path)
    assert proc.returncode == 1
    assert "the stack did not start: pathwayd exited with code 1 while starting" in proc.stderr
    assert "its last output" in proc.stderr and "NotADirectoryError" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]
