"""README.md's examples run when copied: every ``curl`` in it, in order, against a stack on
free ports (the gateway's address replaces 127.0.0.1:3110), with ``lakehouse gen-roster``
lines run as the README writes them.

curl runs with ``--fail-with-body``: a 4xx or 5xx answer fails the line, and the test shows
the answer. After a line that lists corpus build jobs, the test does what the README tells a
reader to do: run it again until no job is running.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from lakehouse.config import load_config
from lakehouse.services import DAEMONS
from lakehouse.stack import running_stack

README = Path(__file__).resolve().parent.parent / "README.md"
GATEWAY = re.compile(r"(?:http://)?(?:127\.0\.0\.1|localhost):3110")
NEEDED = ["storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd", "matrixd",
          "pathwayd", "observerd", "gateway"]


def readme_commands(text: str) -> list[str]:
    """The README's shell lines to run, in order: every line that starts with ``curl`` (in a
    fenced block or an indented one) and the ``lakehouse gen-roster`` lines beside them."""
    commands = []
    for line in text.splitlines():
        stripped = line.strip().removeprefix("$ ")
        if stripped.startswith("curl ") or stripped.startswith("lakehouse gen-roster "):
            commands.append(stripped)
    return commands


def test_every_curl_in_the_readme_is_on_a_line_of_its_own():
    text = README.read_text()
    inline = [line for line in text.splitlines()
              if "curl " in line and not line.strip().removeprefix("$ ").startswith("curl ")
              and "`curl`" not in line]
    assert inline == [], "a curl in prose cannot be copied and run: put it in a code block"
    assert sum(c.startswith("curl ") for c in readme_commands(text)) >= 10


def test_readme_commands_parse():
    cmds = readme_commands("text\n    curl -s http://x\n```sh\n$ curl -d '{}' y\nlakehouse gen-roster --n 1 > w.csv\n```\n")
    assert cmds == ["curl -s http://x", "curl -d '{}' y", "lakehouse gen-roster --n 1 > w.csv"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command (.ci/run installs it)")
def test_the_readme_curls_run_against_a_stack(tmp_path):
    config = load_config(env={}, data_dir=str(tmp_path / "data"))
    for name in DAEMONS:
        config = config.replace(name, port=0)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    commands = readme_commands(README.read_text())
    with running_stack(config, only=NEEDED, startup_timeout=90) as stack:
        gateway = stack.urls["gateway"]
        for command in commands:
            line = GATEWAY.sub(gateway, command)
            if line.startswith("curl "):
                line = "curl --fail-with-body " + line[len("curl "):]
            done = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{command}\n-> exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            if line.endswith("/v1/matrix/corpus/build") and " -d " not in line:
                _wait_for_builds(line, tmp_path, env)


def _wait_for_builds(line: str, cwd: Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        out = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, timeout=60)
        answer = orjson.loads(out.stdout)
        assert "jobs" in answer, answer
        jobs = answer["jobs"]
        assert jobs, "the corpus build the README started is not listed"
        if all(j["status"] != "running" for j in jobs):
            assert all(j["status"] == "done" for j in jobs), jobs
            return
        assert time.monotonic() < deadline, jobs
        time.sleep(0.5)
