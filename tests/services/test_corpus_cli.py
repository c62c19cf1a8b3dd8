"""``lakehouse corpus build``: through a gateway in front of queryd, embedd, vectord and
matrixd, a build followed to its end with a progress bar (terminal) or plain lines."""

from __future__ import annotations

import asyncio
import io

import pytest
from data_stack import start_data_stack

from lakehouse import cli
from lakehouse.matrix.cli import build, summary
from lakehouse.progress import Progress
from lakehouse.roster import write_roster
from lakehouse.services import embedd, gateway, matrixd, vectord
from lakehouse.web import internal_session

N = 300
TEMPLATE = "{role} in {city}, {state}. Certifications: {certifications}"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
async def gw(aiohttp_server, config):
    config = config.replace("embedd", dimension=64).replace("vectord", save_min_interval=0.0)
    data = await start_data_stack(aiohttp_server, config, refresh_every=3600.0)
    buf = io.StringIO()
    write_roster(buf, N, 1)
    await data.ingest.ingest("workers", buf.getvalue().encode())
    e = await aiohttp_server(embedd.create_app(config))
    v = await aiohttp_server(vectord.create_app(config))
    urls = {"embedd_url": str(e.make_url("")).rstrip("/"), "vectord_url": str(v.make_url("")).rstrip("/"),
            "queryd_url": data.config.base_url("queryd")}
    m = await aiohttp_server(matrixd.create_app(data.config.replace("matrixd", **urls)))
    g = await aiohttp_server(gateway.create_app(data.config.replace(
        "gateway", queryd_url=urls["queryd_url"], matrixd_url=str(m.make_url("")).rstrip("/"))))
    yield str(g.make_url("")).rstrip("/")
    await data.session.close()


async def test_a_build_is_followed_to_its_end_with_a_bar_on_a_terminal(gw, config):
    out = Tty()
    bar = Progress("building corpus workers", unit="rows", out=out, min_interval=0.0)
    body = {"name": "workers", "sql": "SELECT * FROM workers", "id_column": "worker_id",
            "text_template": TEMPLATE, "batch_size": 32}
    async with internal_session(config) as session:
        report = await build(session, gw + "/v1", body, bar, poll=0.01)
    assert report["status"] == "done" and report["rows_embedded"] == N and report["added"] == N
    frames = out.getvalue().split("\r\033[K")[1:]
    assert frames[0].startswith(f"building corpus workers [{'-' * 30}] 0/{N:,} rows")
    assert frames[-1].startswith(f"building corpus workers [{'#' * 30}] {N}/{N} rows 100%")
    assert "\n" not in out.getvalue()
    assert summary(report).startswith(f"built corpus workers: {N} rows embedded ({N} added, 0 updated")


async def test_the_command_prints_plain_lines_when_stderr_is_not_a_terminal(gw, capsys):
    argv = ["corpus", "build", "workers2", "--url", gw, "--sql", "SELECT * FROM workers",
            "--id-column", "worker_id", "--text-columns", "role, city", "--batch-size", "50"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    captured = capsys.readouterr()
    assert "\033" not in captured.err and "\r" not in captured.err
    lines = captured.err.splitlines()
    assert lines and lines[-1].startswith(f"building corpus workers2 [{'#' * 30}] {N}/{N} rows 100%")
    assert len(lines) <= 11
    assert captured.out.startswith(f"built corpus workers2: {N} rows embedded")
    # status lists the job; a failing build exits 1 with the cause
    assert await asyncio.to_thread(cli.main, ["corpus", "status", "--url", gw]) == 0
    assert "done     workers2" in capsys.readouterr().out
    argv = ["corpus", "build", "bad", "--url", gw, "--sql", "SELECT * FROM workers",
            "--id-column", "nosuch", "--text-columns", "role"]
    assert await asyncio.to_thread(cli.main, argv) == 1
    captured = capsys.readouterr()
    assert "corpus bad build failed" in captured.out and "nosuch" in captured.out


def test_bad_arguments_and_no_stack(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["corpus", "build", "w", "--sql", "x", "--id-column", "id"])  # no text
    assert exc.value.code == 2
    argv = ["corpus", "build", "w", "--url", "http://127.0.0.1:9", "--sql", "SELECT 1",
            "--id-column", "id", "--text-columns", "a"]
    assert cli.main(argv) == 1
    assert "the stack does not answer at http://127.0.0.1:9/v1" in capsys.readouterr().err
