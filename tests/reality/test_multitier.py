"""lakehouse reality multitier against a small in-process stack (tests/reality/stack.py)."""

from __future__ import annotations

import asyncio

import orjson

from lakehouse.reality import main as reality_main
from lakehouse.reality.multitier import SCENARIOS, run_multitier

from .stack import start_stack


async def test_every_scenario_runs_without_failure(aiohttp_server, config):
    url = await start_stack(aiohttp_server, config)
    run = await run_multitier(url, concurrency=6, duration=2.0)
    s = run.summary()
    assert s["failures"] == 0, {n: r["errors"] for n, r in s["scenarios"].items()}
    assert s["verdict"].startswith("PASS") and s["total"] > 20
    for name in SCENARIOS:
        row = s["scenarios"][name]
        assert row["count"] > 0 and row["p50_ms"] is not None and row["p99_ms"] >= row["p50_ms"]


async def test_failures_are_counted_with_their_reason_and_the_command_reports(aiohttp_server, config, tmp_path):
    # validatord without a roster: every email with a candidate and every fill must fail
    url = await start_stack(aiohttp_server, config, roster=False)
    run = await run_multitier(url, concurrency=4, duration=1.0)
    s = run.summary()
    email = s["scenarios"]["cold_search_email"]
    assert email["failures"] == email["count"] > 0 and s["verdict"].startswith("FAIL")
    assert any("does not exist in worker roster" in e for e in email["errors"])
    assert s["scenarios"]["profile_swap"]["failures"] == 0
    # --no-roster: the same stack passes; the command writes a numbered report
    code = await asyncio.to_thread(
        reality_main, ["multitier", "--url", url, "--no-roster", "--concurrency", "4", "--duration", "1", "--out", str(tmp_path)]
    )
    assert code == 0
    data = orjson.loads((tmp_path / "multitier_001.json").read_text())
    assert data["summary"]["failures"] == 0 and set(data["summary"]["scenarios"]) == set(SCENARIOS)
    assert "| cold_search_email | 35% |" in (tmp_path / "multitier_001.md").read_text()
