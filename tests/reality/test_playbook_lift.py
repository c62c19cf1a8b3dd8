"""lakehouse reality playbook-lift against a small in-process stack: gateway, embedd (hash),
vectord, matrixd, chatd, and a fake Ollama as judge and paraphraser (scripted)."""

from __future__ import annotations

import asyncio
import json
import re

import orjson
import pytest

from lakehouse.fakes._script import ChatCall
from lakehouse.fakes.ollama import FakeOllama
from lakehouse.reality import main as reality_main
from lakehouse.reality import playbook_lift
from lakehouse.reality.report import next_run

from .stack import start_stack

QUERIES = {
    "demands": [
        {"text": "forklift operator with OSHA-30", "role": "Forklift Operator"},
        {"text": "welder for MIG work", "role": "Welder"},
        {"text": "picker for weekend shifts", "role": "Picker"},
    ],
    "out_of_domain": ["dental hygienist for a family practice"],
}


def judge(call: ChatCall) -> str:
    """Rates 5 the LAST candidate whose role word is in the demand (so the approved answer
    is usually not the cold top-1: a discovery), 1 the others; paraphrases by rewording."""
    prompt = call.prompt
    if "Rate how well" in prompt:
        demand = re.search(r"Demand: (.*)", prompt).group(1).lower()
        cands = re.findall(r"^\d+\. (.*)$", prompt, flags=re.M)
        roles = [(re.search(r"role: ([^,)]*)", c) or [None, ""])[1].lower() for c in cands]
        match = [i for i, r in enumerate(roles) if r and r.split()[0] in demand]
        best = match[-1] if match else 0
        return json.dumps({"ratings": [5 if i == best else 1 for i in range(len(cands))]})
    demand = re.search(r"Demand: (.*)", prompt).group(1)
    return json.dumps({"paraphrase": f"{demand}, needed soon"})


@pytest.fixture
async def stack_url(aiohttp_server, config):
    fake = FakeOllama()
    fake.script(*([judge] * 200))
    return await start_stack(aiohttp_server, config, fake)


async def test_playbook_lift_runs_end_to_end_and_writes_numbered_reports(stack_url, tmp_path):
    run = await playbook_lift.run_playbook_lift(stack_url, QUERIES, judge_model="qwen2.5:latest", k=8)
    assert [d.error for d in run.demands] == ["", "", ""]
    s = run.summary()
    assert s["discoveries"] >= 1 and s["failed"] == 0
    for d in run.demands:
        assert d.recorded and d.ratings[d.recorded_cold_rank - 1] == 5
        assert d.paraphrase.endswith("needed soon") and d.quality in ("lifted", "neutral", "regressed")
        # a verbatim demand gets its recorded answer back on top (distance 0 to its own record)
        assert d.warm_top1 == d.recorded
    assert s["lifts"] == s["discoveries"] and s["rubric"].startswith("PASS")
    assert s["control_injections"] == 0 and run.thresholds["mode"] == "calibrated"

    # the command: reports numbered 001, 002 in --out
    args = ["playbook-lift", "--url", stack_url, "--out", str(tmp_path), "--judge", "qwen2.5:latest"]
    queries = tmp_path / "q.txt"
    queries.write_text("forklift operator with OSHA-30\nood: registered nurse, ICU\n")
    assert await asyncio.to_thread(reality_main, [*args, "--queries", str(queries)]) == 0
    assert await asyncio.to_thread(reality_main, [*args, "--queries", str(queries)]) == 0
    assert next_run(tmp_path, "playbook_lift") == 3
    data = orjson.loads((tmp_path / "playbook_lift_002.json").read_text())
    assert data["run"] == 2 and data["summary"]["demands"] == 1 and data["summary"]["controls"] == 1
    md = (tmp_path / "playbook_lift_001.md").read_text()
    assert "Rubric:" in md and "forklift operator with OSHA-30" in md


async def test_judge_failures_are_reported_per_demand(stack_url):
    # a judge model chatd cannot route: every demand fails, and says why
    run = await playbook_lift.run_playbook_lift(stack_url, QUERIES, judge_model="no-such-model:latest", k=4)
    assert all(d.error for d in run.demands) and run.summary()["failed"] == 3
    assert "/chat answered" in run.demands[0].error


def test_unknown_harness_and_bad_queries_are_clear(tmp_path, capsys):
    assert reality_main(["multi-coordinates"]) == 2
    assert "unknown harness" in capsys.readouterr().err
    bad = tmp_path / "q.json"
    bad.write_text("[]")
    assert reality_main(["playbook-lift", "--queries", str(bad), "--out", str(tmp_path)]) == 2
    assert reality_main(["--help"]) == 0
