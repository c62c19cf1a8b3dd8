"""``lakehouse distill``: help with examples, the offline commands on a small root, errors."""

from __future__ import annotations

import orjson
import pytest

from lakehouse.cli import main as lakehouse_main
from lakehouse.distill.cli import main

COMMANDS = ["materialize", "score", "export", "replay", "audit", "drift", "promote"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"lakehouse distill {command}" in out


def test_the_group_is_a_lakehouse_command(capsys):
    assert lakehouse_main(["--help"]) == 0
    assert "distill" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        lakehouse_main(["distill", "--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)


def test_offline_pipeline_and_psi(tmp_path, capsys):
    kb = tmp_path / "_kb"
    kb.mkdir()
    (kb / "mode_experiments.jsonl").write_bytes(b"".join(
        orjson.dumps({"task": f"t{i}", "response": f"r{i}", "score": i / 10, "created_at": "2026-05-01T00:00:00Z"}) + b"\n"
        for i in range(10)))
    root = ["--data-dir", str(tmp_path)]
    assert main(["materialize", *root]) == 0
    assert "written 10" in capsys.readouterr().out
    assert main(["score", *root, "--json"]) == 0
    receipt = orjson.loads(capsys.readouterr().out)
    assert receipt["counts"]["totals"] == {"accepted": 2, "partially_accepted": 3, "rejected": 5, "needs_human_review": 0}
    assert main(["export", "sft", *root]) == 0
    assert "written 2" in capsys.readouterr().out
    assert main(["audit", *root]) == 0 and "first_run" in capsys.readouterr().out
    assert main(["drift", "scorer", *root]) == 0
    assert "0 of 10 persisted categories differ" in capsys.readouterr().out
    (tmp_path / "a.json").write_text("[1, 2, 3, 4, 5, 6, 7, 8]")
    (tmp_path / "b.jsonl").write_text("\n".join(orjson.dumps({"x": {"d": v}}).decode() for v in [7, 8, 8, 8]))
    assert main(["drift", "psi", *root, "--expected", str(tmp_path / "a.json"),
                 "--actual", str(tmp_path / "b.jsonl"), "--field", "x.d", "--json"]) == 0
    psi = orjson.loads(capsys.readouterr().out)
    assert psi["tier"] == "major" and psi["n_expected"] == 8 and psi["n_actual"] == 4
    assert main(["drift", "psi", *root, "--expected", "scores", "--actual", "scores:0"]) == 0
    assert "stable" in capsys.readouterr().out
    assert main(["drift", "psi", *root, "--expected", "scores:1", "--actual", "scores:0"]) == 2
    assert "no such score run (1 so far)" in capsys.readouterr().err


def test_usage_errors(tmp_path, capsys):
    root = ["--data-dir", str(tmp_path)]
    assert main(["replay", "t", *root, "--context", "[1]"]) == 2
    assert "--context must be a JSON object" in capsys.readouterr().err
    assert main(["drift", "psi", *root, "--expected", "replay:-1", "--actual", "replay:-1"]) == 2
    assert "no such replay run" in capsys.readouterr().err
    assert main(["drift", "psi", *root]) == 2
    assert main(["export", "sft", *root, "--corpus"]) == 2
    assert main(["export", "rag", *root, "--corpus", "rag; DROP", "--gateway", "http://127.0.0.1:9"]) == 1
    assert "plain identifier" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "csv", *root])
    (tmp_path / "_kb").mkdir()
    (tmp_path / "_kb" / "audit_baselines.jsonl").write_text('{"recorded_at": "x", "metr')
    assert main(["audit", *root]) == 2 and "truncated" in capsys.readouterr().err
