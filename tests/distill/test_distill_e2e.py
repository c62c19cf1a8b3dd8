"""The distillation loop end to end, on a real stack with the fake LLM.

validatord iterate sessions (one accepted, one rejected), an observed op and a pathway
trace -> ``distill materialize`` ->
``score`` -> ``export sft|rag|preference`` -> the RAG corpus built through matrixd ->
``replay`` (retrieval, model, validatord) -> materialize and score the replay run ->
``promote`` into a playbook -> a later matrix search shows the promoted worker first ->
``audit`` (twice: the second prints the drift table against the first).

Every distill step runs the real CLI (``lakehouse.distill.cli.main``) on the stack's own
data directory; the checks read the files and the stack's answers, not the CLI's text only.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from lakehouse.config import load_config
from lakehouse.distill import cli
from lakehouse.distill.common import Layout, iter_jsonl
from lakehouse.matrix.ranking import playbook_id
from lakehouse.roster import write_roster
from lakehouse.stack import free_port, running_stack

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DEMAND = "need 1 welder in Toledo, day shift"
PHANTOM = "need 1 crane operator phantom"
WORKER = "w-00001"
FILL = '{"fills":[{"candidate_id":"w-00001","name":"James Young"}]}'
BAD_FILL = '{"fills":[{"candidate_id":"W-FAKE-99999","name":"Nobody"}]}'
PLAYBOOK = "playbook_distill"
DAEMONS = ["storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd", "matrixd",
           "pathwayd", "observerd", "chatd", "validatord", "gateway"]
TIP = "welding tips for Toledo night shifts"


def http(url: str, body: object = None, *, raw: bytes | None = None, ctype: str = "application/json"):
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with NO_PROXY.open(req, timeout=60) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def fake_llm():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehouse", "fake-ollama", "--port", str(port),
         "--rule", f"phantom=>{BAD_FILL}", "--rule", f"welder=>{FILL}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with NO_PROXY.open(f"{url}/api/version", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("fake-ollama did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_llm):
    tmp = tmp_path_factory.mktemp("distill")
    roster = tmp / "workers.csv"
    with open(roster, "w", newline="") as f:
        write_roster(f, 200, 1)
    config = load_config(env={}, data_dir=str(tmp / "data"))
    for name in DAEMONS:
        config = config.replace(name, port=0)
    config = config.replace("chatd", ollama_url=fake_llm)
    config = config.replace("validatord", roster_path=str(roster))
    with running_stack(config, DAEMONS, startup_timeout=90) as st:
        gw = st.urls["gateway"]
        status, _ = http(f"{gw}/v1/ingest?name=workers", raw=roster.read_bytes(), ctype="text/csv")
        assert status == 200
        status, report = http(f"{gw}/v1/matrix/corpus/build", {
            "name": "workers", "sql": "SELECT * FROM workers", "id_column": "worker_id",
            "text_template": "{role} in {city}, {state}, {shift} shift",
            "metadata_columns": ["name", "role", "city"],
        })
        assert status == 200 and report["status"] == "done", report
        yield st


def distill(st, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main([*args, "--data-dir", st.config.data_dir, "--gateway", st.urls["gateway"]]
                  if args[0] in ("replay", "promote") or "--corpus" in args
                  else [*args, "--data-dir", st.config.data_dir])
    return rc, capsys.readouterr().out


def rows(path: Path) -> list[dict]:
    return [r for _, r, err in iter_jsonl(path) if not err]


def test_the_loop_closes(stack, capsys):
    gw = stack.urls["gateway"]
    root = Layout.of(stack.config.data_dir)
    # 1. coordinator sessions through validatord: one accepted, one never valid
    status, body = http(f"{gw}/v1/iterate", {"kind": "fill", "prompt": DEMAND,
                                            "context": {"target_count": 1}})
    assert status == 200 and body["artifact"]["fills"][0]["candidate_id"] == WORKER
    status, _ = http(f"{gw}/v1/iterate", {"kind": "fill", "prompt": PHANTOM, "max_iterations": 1,
                                         "context": {"target_count": 1}})
    assert status == 422
    # an operation observerd witnessed, and a memory trace pathwayd keeps
    status, _ = http(f"{gw}/v1/observer/event", {"endpoint": "/v1/sql", "source": "scenario", "success": True,
                                                "input_summary": "count workers", "output_summary": "200"})
    assert status == 200
    status, _ = http(f"{gw}/v1/pathway/add", {"content": {"task": TIP, "confidence": 0.9, "tip": "bring PPE"},
                                             "tags": ["welding"]})
    assert status == 200

    # 2. materialize, idempotently
    rc, out = distill(stack, capsys, "materialize")
    assert rc == 0 and "written 4" in out
    rc, out = distill(stack, capsys, "materialize")
    assert rc == 0 and "written 0" in out
    evidence = {r["source"]: r for p in root.day_files(root.evidence) for r in rows(p) if r["task"] != PHANTOM}
    assert sorted(evidence) == ["iterate_sessions", "observer_ops", "pathway_traces"]
    assert evidence["observer_ops"]["task"] == "/v1/sql count workers"
    assert evidence["pathway_traces"]["task"] == TIP
    assert evidence["iterate_sessions"]["provenance"]["line_offset"] == 0

    # 3. score, 4. export behind the firewall
    assert distill(stack, capsys, "score")[0] == 0
    cats = {r["source"] + ":" + r["category"] for p in root.day_files(root.scored) for r in rows(p)}
    assert cats == {"iterate_sessions:accepted", "iterate_sessions:rejected",
                    "observer_ops:partially_accepted", "pathway_traces:accepted"}
    for kind in ("sft", "preference"):
        assert distill(stack, capsys, "export", kind)[0] == 0
    sft = rows(root.sft)
    assert sorted(s["instruction"] for s in sft) == sorted([DEMAND, TIP])
    assert {s["quality_score"] for s in sft} == {"accepted"}
    rc, out = distill(stack, capsys, "audit")
    assert rc == 0 and "first_run" in out and "no previous baseline" in out

    # 5. the RAG corpus through matrixd, then a replay through the gateway
    rc, out = distill(stack, capsys, "export", "rag", "--corpus")
    assert rc == 0 and "corpus rag: 3 rows, status done" in out, out
    rc, out = distill(stack, capsys, "replay", DEMAND, "--kind", "fill", "--context",
                      '{"target_count": 1}')
    assert rc == 0 and "PASSED" in out, out
    (run,) = rows(root.replay_runs)
    assert run["schema"] == "replay_run.v1" and run["validation"] == {"passed": True, "reasons": []}
    assert run["retrieved"][0]["title"] == DEMAND and run["artifact"]["fills"][0]["candidate_id"] == WORKER
    # a replay whose corpus does not exist is logged as a failure, not a crash
    rc, out = distill(stack, capsys, "replay", DEMAND, "--corpus", "no_such_corpus")
    assert rc == 1 and "retrieval failed" in out
    assert [r["validation"]["passed"] for r in rows(root.replay_runs)] == [True, False]

    # 6. the replay runs become evidence; promote the accepted outcomes into a playbook
    assert distill(stack, capsys, "materialize")[0] == 0
    assert distill(stack, capsys, "score")[0] == 0
    rc, out = distill(stack, capsys, "promote", "--answer-corpus", "workers",
                      "--playbook-corpus", PLAYBOOK)
    assert rc == 0 and "1 recorded" in out, out  # the session and the replay: one playbook id
    rc, out = distill(stack, capsys, "promote", "--answer-corpus", "workers",
                      "--playbook-corpus", PLAYBOOK)
    assert rc == 0 and "1 already promoted, 0 recorded" in out
    (promoted,) = rows(root.promotions)
    assert promoted["playbook_id"] == playbook_id(DEMAND, WORKER, "workers")

    # the next search for that demand benefits
    status, answer = http(f"{gw}/v1/matrix/search", {
        "query_text": DEMAND, "corpora": ["workers"], "k": 5,
        "use_playbook": True, "playbook_corpus": PLAYBOOK,
    })
    assert status == 200
    top = answer["results"][0]
    assert top["id"] == WORKER and top["source"] in ("inject", "boost"), answer["results"]

    # drift: the scorer agrees with itself; PSI of a run against itself is stable
    rc, out = distill(stack, capsys, "drift", "scorer")
    assert rc == 0 and "0 of 6 persisted categories differ" in out
    rc, out = distill(stack, capsys, "drift", "psi", "--expected", "replay:0", "--actual", "replay:0")
    assert rc == 0 and "stable" in out
    # observerd's workflow nodes work on the same data root
    status, result = http(f"{gw}/v1/observer/workflow/run", {"name": "distill-check", "nodes": [
        {"id": "score", "mode": "distill.score"},
        {"id": "audit", "mode": "distill.audit", "depends_on": ["score"], "inputs": {"record": False}}]})
    assert status == 200 and result["success"], result
    assert result["nodes"][1]["output"]["baseline"]["metrics"]["p7_replay_runs"] == 2

    # 7. the second audit compares with the first
    rc, out = distill(stack, capsys, "audit")
    assert rc == 0 and "against the baseline of" in out
    assert "p7_replay_runs                    0          2          -  warn" in out
    baselines = rows(root.baselines)
    assert len(baselines) == 2 and baselines[1]["metrics"]["p7_replay_runs"] == 2
