"""lakehouse.demo without a stack: the scenario's measured distances, the approval rule, the
narrator, the tables, and the command's errors. The story itself runs in test_end_to_end.py."""

from __future__ import annotations

import http.server
import io
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse import cli
from lakehouse.demo import (
    BOOST_WINDOW,
    INJECT_WINDOW,
    DemoOutcome,
    Hit,
    Narrator,
    Scenario,
    Search,
    _count_table,
    _hit_table,
    choose_approved,
    main,
)
from lakehouse.embed.hashing import hash_embed
from lakehouse.roster import CITIES, COLUMNS, ROLES, iter_roster
from testkit import free_port


def _distance(a: str, b: str) -> float:
    va, vb = hash_embed([a, b])
    return 1.0 - float(np.dot(va, vb))


def test_the_scenario_was_measured_for_the_hash_embedder():
    s = Scenario()
    assert _distance(s.demand, s.paraphrase) < INJECT_WINDOW
    # the looser rewording the story mentions is honestly outside the inject window
    assert INJECT_WINDOW < _distance(s.demand, s.loose_paraphrase) < BOOST_WINDOW
    # bob's demand is nowhere near alice's words: his playbook cannot reach them
    assert _distance(s.other_demand, s.paraphrase) > BOOST_WINDOW


def test_the_roster_holds_exactly_one_worker_alice_would_approve():
    s = Scenario()
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in iter_roster(s.roster_size, s.seed)]
    fits = [
        r["worker_id"]
        for r in rows
        if (r["role"], r["city"], r["shift"]) == (s.role, s.city, s.shift)
        and s.certification in r["certifications"].split(";")
    ]
    assert len(fits) == 1


def hit(rank, wid, role="Forklift Operator", city="Milwaukee", shift="Night", certs=("OSHA-30",), **kw):
    return Hit(rank, wid, 0.1 * rank, kw.get("source", "retrieval"), "workers", "", role, city, shift, certs)


def test_choose_approved_takes_the_first_full_match_else_the_top_hit():
    s = Scenario()
    hits = [
        hit(1, "w-1", city="Chicago"),
        hit(2, "w-2", shift="Day"),
        hit(3, "w-3", certs=("OSHA-10",)),
        hit(4, "w-4", role="Picker"),
        hit(5, "w-5"),
        hit(6, "w-6"),
    ]
    assert choose_approved(hits, s) == (hits[4], True)
    assert choose_approved(hits[:4], s) == (hits[0], False)
    with pytest.raises(Exception, match="nothing to approve"):
        choose_approved([], s)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"roster_size": 0}, "roster size"),
        ({"dataset": "workers; DROP"}, "identifier"),
        ({"alice_playbook": "workers"}, "three different names"),
        ({"k": 0}, "k must be"),
    ],
)
def test_scenario_validation(changes, message):
    from dataclasses import replace

    with pytest.raises(ValueError, match=message):
        replace(Scenario(), **changes).validate()


def test_outcome_properties_follow_the_searches():
    s = Scenario()
    out = DemoOutcome("http://x", s, "t", approved_id="w-5")
    assert not out.isolated and out.alice_source is None and not out.trace_echoed
    out.alice = Search("p", (hit(1, "w-5", source="inject"), hit(2, "w-1")), {"injected": 1})
    out.bob = Search("p", (hit(1, "w-1"), hit(2, "w-5")), {"boosted": 0, "injected": 0})
    assert out.alice_source == "inject" and out.bob_source == "retrieval" and out.isolated
    out.bob = Search("p", (hit(1, "w-5", source="boost"),), {"boosted": 1})
    assert not out.isolated
    out.requests, out.traced = 3, 3
    assert out.trace_echoed
    out.traced = 2
    assert not out.trace_echoed


def test_narrator_shows_progress_only_on_a_terminal():
    plain = io.StringIO()
    n = Narrator(plain)
    n.progress("working...")
    n.say("done")
    assert plain.getvalue() == "done\n"

    term = io.StringIO()
    n = Narrator(term, tty=True)
    n.progress("working... 1")
    n.progress("working... 2")
    n.say("done")
    assert term.getvalue() == "\r\x1b[Kworking... 1\r\x1b[Kworking... 2\r\x1b[Kdone\n"

    silent = Narrator(None)
    silent.progress("x")
    silent.say("y")  # no output, no error


def test_narrator_wraps_paragraphs():
    out = io.StringIO()
    Narrator(out).para("1. " + "word " * 40, first="")
    lines = out.getvalue().splitlines()
    assert len(lines) > 1 and all(len(line) <= 92 for line in lines)
    assert lines[0].startswith("1. ") and all(line.startswith("   word") for line in lines[1:])


def test_tables_align_and_mark_the_approved_answer():
    hits = [hit(1, "w-00001", source="inject"), hit(10, "w-00002", city="Green Bay", certs=())]
    lines = _hit_table(hits, sources=True, mark="w-00001")
    assert lines[0].split() == ["#", "worker", "corpus", "role", "city", "shift", "distance", "source"]
    assert lines[1].split()[:4] == ["->", "1", "w-00001", "workers"]
    assert lines[2].split() == ["certifications:", "OSHA-30"]
    assert lines[3].split()[:3] == ["10", "w-00002", "workers"]
    assert lines[4].split() == ["certifications:", "none"]
    # columns line up: the city column starts at the same place in every row, and the
    # certifications start under the worker id
    assert lines[1].index("Milwaukee") == lines[3].index("Green Bay") == lines[0].index("city")
    assert lines[2].index("certifications") == lines[1].index("w-00001") == lines[0].index("worker")
    counts = _count_table({"a": 3, "bb": 20, "c": 1})
    assert counts == ["     a    3      c    1", "     bb  20"]


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,40}", fullmatch=True)
hits_st = st.lists(
    st.builds(
        Hit,
        rank=st.integers(1, 50),
        id=st.sampled_from(["w-00001", "w-12345", "w-1000000"]),
        distance=st.floats(0, 2),
        source=st.sampled_from(["retrieval", "boost", "inject"]),
        corpus=names,
        role=st.sampled_from(list(ROLES)),
        city=st.sampled_from([c for c, _ in CITIES]),
        shift=st.sampled_from(["Day", "Night", "Swing", "Weekend", "Rotating"]),
        certifications=st.lists(st.sampled_from(sorted({c for r in ROLES.values() for c in r[1]})),
                                unique=True, max_size=8).map(tuple),
    ),
    min_size=1,
    max_size=10,
)


@given(hits=hits_st, sources=st.booleans())
def test_tables_fit_100_columns_and_name_each_results_corpus(hits, sources):
    lines = _hit_table(hits, sources=sources, mark=hits[0].id)
    assert all(len(line) <= 100 for line in lines), "\n".join(lines)
    rows = [line for line in lines if not line.lstrip().startswith(("certifications:", "#"))]
    rows = [line for line in rows if line.split()[0] in ("->", *map(str, range(1, 51)))]
    assert len(rows) == len(hits)
    corpus_at = lines[0].index("corpus")
    for line, h in zip(rows, hits, strict=True):
        shown = line[corpus_at:].split()[0]
        assert shown == h.corpus or (shown.endswith("...") and h.corpus.startswith(shown[:-3]))
    # nothing is lost: every certification is printed
    text = " ".join(" ".join(lines).split())
    for h in hits:
        for cert in h.certifications:
            assert cert in text


def test_the_same_worker_from_two_corpora_is_told_apart():
    """A second run against the same stack under another --dataset: alice's playbook holds an
    answer from each corpus, and the worker comes back twice."""
    hits = [hit(1, "w-00412", source="inject"), replace(hit(2, "w-00412"), corpus="workers2")]
    lines = _hit_table(hits, sources=True, mark="w-00412")
    assert [line.split()[3] for line in lines if "w-00412" in line] == ["workers", "workers2"]


def test_url_with_nothing_listening_is_a_clear_error(capsys):
    assert main(["--url", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "nothing answers" in err and "lakehouse up" in err


def test_url_of_another_daemon_is_refused(capsys):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"status": "ok", "service": "storaged"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert main(["--url", f"http://127.0.0.1:{server.server_port}"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert "storaged answers" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--n", "0"], ["--dataset", "a b"], ["--nope"]])
def test_bad_arguments_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_demo_is_a_lakehouse_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli.COMMANDS["demo"][0] == "lakehouse.demo:main"


class FakeStack:
    """What _run_own_stack uses of a running Stack."""

    def __init__(self, config):
        self.config = config
        self.urls = {"gateway": "http://127.0.0.1:1"}
        self.children = {"matrixd": object()}

    def poll(self):
        return None

    def output(self, name):
        return [f"{name} line {i}" for i in range(30)]


def test_a_stack_that_does_not_start_is_reported_and_the_temp_dir_removed(
    monkeypatch, tmp_path, capsys
):
    import contextlib

    from lakehouse import demo, stack

    @contextlib.contextmanager
    def failing(config, **kw):
        assert Path(config.data_dir).is_dir() and Path(config.data_dir).parent == tmp_path
        raise stack.StackError("pathwayd exited with code 1 while starting; its last output:\n    boom")
        yield

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(stack, "running_stack", failing)
    assert demo.main([]) == 1
    err = capsys.readouterr().err
    assert "the stack did not start: pathwayd exited with code 1" in err and "boom" in err
    assert list(tmp_path.iterdir()) == []


def test_a_failing_step_shows_the_daemons_last_output(monkeypatch, tmp_path, capsys):
    import contextlib

    from lakehouse import demo, stack

    @contextlib.contextmanager
    def fake(config, **kw):
        yield FakeStack(config)

    def broken(*args, **kw):
        raise demo.DemoError("building the corpus: matrixd 502: vectord is unreachable", "matrixd")

    monkeypatch.setattr(stack, "running_stack", fake)
    monkeypatch.setattr(demo, "run_demo", broken)
    assert demo.main(["--data-dir", str(tmp_path / "kept")]) == 1
    err = capsys.readouterr().err
    assert "lakehouse demo: building the corpus: matrixd 502" in err
    assert "last output of matrixd" in err and "matrixd line 29" in err
    assert "matrixd line 17" not in err  # only the tail
