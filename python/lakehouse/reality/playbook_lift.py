"""``lakehouse reality playbook-lift``: does the playbook bring back what the judge approved?

Contract section 15.1, against any stack (its gateway's ``/v1`` routes):

1. **Cold pass.** Each demand is searched with ``use_playbook: false``; a judge model (through
   chatd) rates the top K 0-5; the highest-rated result (first on a tie) is recorded in the
   run's playbook with score rating/5. A **discovery** is a recorded answer that was not
   already the cold top-1.
2. **Warm pass.** The same demand with ``use_playbook: true``: a **lift** is the recorded
   answer at top-1. The rubric: lifts >= 50% of discoveries ("the matrix is doing real work").
3. **Paraphrase pass.** chatd rephrases the demand (JSON mode, temperature 0.5); the warm
   search of the paraphrase should have the recorded answer at top-1.
4. **Rejudge pass.** The judge rates the warm top-1; against the cold top-1's rating the
   demand is quality lifted, neutral or regressed.
5. **Out-of-domain controls** are searched cold and warm: the playbook must inject nothing
   and leave the top-1 alone.

Searches use the default request (no thresholds: the calibrated playbook, docs/matrix.md)
unless ``--inject-distance`` is given. Each run records into its own playbook corpus
(``playbook_lift_<token>``) unless ``--playbook`` names one, so runs never feed each other.
A judge or paraphraser failure is reported per demand, never silently skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from . import add_stack_args
from .client import HarnessError, StackClient, choose_model, paraphrase, rate, terminal_progress
from .report import write_report

__all__ = ["DemandOutcome", "LiftRun", "run_playbook_lift", "main"]

NAME = "playbook_lift"
DEFAULT_JUDGE = "qwen2.5:latest"


@dataclass
class DemandOutcome:
    query: str
    role: str = ""
    cold_top1: str = ""
    cold_top1_distance: float | None = None
    ratings: list[int] = field(default_factory=list)
    recorded: str = ""
    recorded_cold_rank: int | None = None
    discovery: bool = False
    warm_top1: str = ""
    warm_top1_distance: float | None = None
    warm_source: str = ""
    lift: bool = False
    paraphrase: str = ""
    paraphrase_top1: str = ""
    paraphrase_source: str = ""
    paraphrase_lift: bool = False
    warm_top1_rating: int | None = None
    quality: str = ""
    error: str = ""


@dataclass
class ControlOutcome:
    query: str
    cold_top1: str = ""
    warm_top1: str = ""
    injected: int = 0
    unchanged: bool = True
    error: str = ""


@dataclass
class LiftRun:
    url: str
    judge_model: str
    playbook: str
    k: int
    corpora: list[str]
    demands: list[DemandOutcome] = field(default_factory=list)
    controls: list[ControlOutcome] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = [d for d in self.demands if not d.error]
        discoveries = [d for d in ok if d.discovery]
        lifts = sum(d.lift for d in discoveries)
        quality = {q: sum(d.quality == q for d in ok) for q in ("lifted", "neutral", "regressed")}
        deltas = [
            d.warm_top1_distance - d.cold_top1_distance
            for d in ok
            if d.warm_top1_distance is not None and d.cold_top1_distance is not None
        ]
        rate = lifts / len(discoveries) if discoveries else None
        return {
            "demands": len(self.demands),
            "failed": len(self.demands) - len(ok),
            "discoveries": len(discoveries),
            "lifts": lifts,
            "lift_rate": rate,
            "verbatim_top1": sum(d.warm_top1 == d.recorded for d in ok),
            "paraphrase_top1": sum(d.paraphrase_lift for d in ok),
            "paraphrases": sum(bool(d.paraphrase) for d in ok),
            "mean_delta_top1_distance": sum(deltas) / len(deltas) if deltas else None,
            "quality": quality,
            "controls": len(self.controls),
            "control_injections": sum(c.injected for c in self.controls),
            "controls_unchanged": sum(c.unchanged for c in self.controls if not c.error),
            "rubric": (
                "no discoveries: the rubric does not apply"
                if rate is None
                else ("PASS" if rate >= 0.5 else "FAIL") + f": lift {lifts}/{len(discoveries)} of discoveries (bar 50%)"
            ),
        }


async def _demand(stack: StackClient, run: LiftRun, query: str, role: str, extra: dict[str, Any]) -> DemandOutcome:
    out = DemandOutcome(query, role)
    base = {"corpora": run.corpora, "k": run.k}
    cold = (await stack.post("/matrix/search", {**base, "query_text": query}))["results"]
    if not cold:
        raise HarnessError("the cold search returned nothing (is the corpus empty?)")
    out.cold_top1, out.cold_top1_distance = cold[0]["id"], float(cold[0]["distance"])
    out.ratings = await rate(stack, run.judge_model, query, cold)
    best = max(range(len(cold)), key=lambda i: (out.ratings[i], -i))
    chosen = cold[best]
    out.recorded, out.recorded_cold_rank, out.discovery = chosen["id"], best + 1, best > 0
    record = {
        "query_text": query,
        "answer_id": chosen["id"],
        "answer_corpus": chosen["corpus"],
        "score": out.ratings[best] / 5.0,
        "playbook_corpus": run.playbook,
    }
    if role:
        record["role"] = role
    await stack.post("/matrix/playbooks/record", record)

    warm_body = {**base, "use_playbook": True, "playbook_corpus": run.playbook, **extra}
    warm = await stack.post("/matrix/search", {**warm_body, "query_text": query})
    run.thresholds = warm["playbook"].get("thresholds", run.thresholds)
    top = warm["results"][0]
    out.warm_top1, out.warm_top1_distance, out.warm_source = top["id"], float(top["distance"]), top.get("source", "")
    out.lift = out.discovery and out.warm_top1 == out.recorded

    out.paraphrase = await paraphrase(stack, run.judge_model, query)
    warm_p = await stack.post("/matrix/search", {**warm_body, "query_text": out.paraphrase})
    ptop = warm_p["results"][0]
    out.paraphrase_top1, out.paraphrase_source = ptop["id"], ptop.get("source", "")
    out.paraphrase_lift = out.paraphrase_top1 == out.recorded

    out.warm_top1_rating = (await rate(stack, run.judge_model, query, [top]))[0]
    cold_rating = out.ratings[0]
    out.quality = (
        "lifted" if out.warm_top1_rating > cold_rating else "regressed" if out.warm_top1_rating < cold_rating else "neutral"
    )
    return out


async def _control(stack: StackClient, run: LiftRun, query: str, extra: dict[str, Any]) -> ControlOutcome:
    out = ControlOutcome(query)
    base = {"corpora": run.corpora, "k": run.k, "query_text": query}
    cold = (await stack.post("/matrix/search", base))["results"]
    warm = await stack.post("/matrix/search", {**base, "use_playbook": True, "playbook_corpus": run.playbook, **extra})
    out.cold_top1 = cold[0]["id"] if cold else ""
    out.warm_top1 = warm["results"][0]["id"] if warm["results"] else ""
    out.injected = int(warm["playbook"]["injected"])
    out.unchanged = out.cold_top1 == out.warm_top1
    return out


async def run_playbook_lift(
    url: str,
    queries: dict[str, Any],
    *,
    judge_model: str = DEFAULT_JUDGE,
    corpora: list[str] | None = None,
    k: int = 8,
    playbook: str = "",
    token: str = "",
    timeout: float = 120.0,
    inject_distance: float | None = None,
    progress: Any = None,
) -> LiftRun:
    """Run the harness against the gateway at ``url``; per-demand failures are recorded."""
    run = LiftRun(url, judge_model, playbook or f"playbook_lift_{secrets.token_hex(4)}", k, corpora or ["workers"])
    extra = {} if inject_distance is None else {"playbook_max_inject_distance": inject_distance}
    start = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        stack = StackClient(session, url, token)
        demands = queries.get("demands", [])
        for i, d in enumerate(demands):
            text, role = (d, "") if isinstance(d, str) else (d["text"], d.get("role", ""))
            if progress:
                progress(f"demand {i + 1}/{len(demands)}: {text}")
            try:
                run.demands.append(await _demand(stack, run, text, role, extra))
            except HarnessError as exc:
                run.demands.append(DemandOutcome(text, role, error=str(exc)))
        for text in queries.get("out_of_domain", []):
            if progress:
                progress(f"control: {text}")
            try:
                run.controls.append(await _control(stack, run, text, extra))
            except HarnessError as exc:
                run.controls.append(ControlOutcome(text, error=str(exc)))
    run.elapsed_s = round(time.monotonic() - start, 3)
    return run


def markdown(run: LiftRun) -> str:
    s = run.summary()
    lines = [
        f"# playbook_lift against {run.url}",
        "",
        f"judge {run.judge_model}, corpora {', '.join(run.corpora)}, K {run.k}, playbook `{run.playbook}`, "
        f"{run.elapsed_s:.1f} s",
        f"thresholds: {run.thresholds.get('mode', '?')} (inject {run.thresholds.get('max_inject_distance', '?')}, "
        f"boost {run.thresholds.get('max_distance', '?')}, ratio {run.thresholds.get('max_ratio', '?')})",
        "",
        f"**Rubric: {s['rubric']}**",
        "",
        "| figure | value |",
        "|---|---|",
        f"| demands (failed) | {s['demands']} ({s['failed']}) |",
        f"| discoveries (recorded answer was not the cold top-1) | {s['discoveries']} |",
        f"| lifts (recorded answer warm top-1, of discoveries) | {s['lifts']} |",
        f"| verbatim warm top-1 = recorded | {s['verbatim_top1']}/{s['demands'] - s['failed']} |",
        f"| paraphrase warm top-1 = recorded | {s['paraphrase_top1']}/{s['paraphrases']} |",
        f"| mean change of the top-1 distance, warm - cold | {s['mean_delta_top1_distance']} |",
        f"| rejudge: lifted / neutral / regressed | {s['quality']['lifted']} / {s['quality']['neutral']} / {s['quality']['regressed']} |",
        f"| out-of-domain controls: injections, top-1 unchanged | {s['control_injections']}, {s['controls_unchanged']}/{s['controls']} |",
        "",
        "| # | demand | recorded (cold rank) | warm top-1 | lift | paraphrase -> top-1 | quality |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, d in enumerate(run.demands, 1):
        if d.error:
            lines.append(f"| {i} | {d.query} | failed: {d.error} | | | | |")
            continue
        lines.append(
            f"| {i} | {d.query} | {d.recorded} ({d.recorded_cold_rank}) | {d.warm_top1} ({d.warm_source}) | "
            f"{'yes' if d.lift else '-' if not d.discovery else 'no'} | {d.paraphrase} -> {d.paraphrase_top1} "
            f"({d.paraphrase_source}) | {d.quality} |"
        )
    lines += ["", "| control | cold top-1 | warm top-1 | injected |", "|---|---|---|---|"]
    for c in run.controls:
        lines.append(f"| {c.query} | {c.cold_top1} | {c.warm_top1} | {c.injected}{' (failed: ' + c.error + ')' if c.error else ''} |")
    return "\n".join(lines) + "\n"


def load_queries(path: str | None) -> dict[str, Any]:
    if path is None:
        raw = resources.files(__package__).joinpath("playbook_lift_queries.json").read_text("utf-8")
        return json.loads(raw)
    text = Path(path).read_text("utf-8")
    if path.endswith(".json"):
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("demands"), list):
            raise ValueError(f"{path}: expected an object with a 'demands' list")
        return data
    # a text file: one demand per line; lines starting with "ood:" are controls
    demands, controls = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("ood:"):
            controls.append(line[4:].strip())
        else:
            demands.append(line)
    return {"demands": demands, "out_of_domain": controls}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lakehouse reality playbook-lift",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1] if __doc__ else None,
        epilog=(
            "example: lakehouse reality playbook-lift --url http://127.0.0.1:3110 --judge qwen2.5:latest\n"
            "         lakehouse reality playbook-lift --queries my_queries.txt --corpora workers,ethereal_workers"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_args(parser)
    parser.add_argument("--queries", help="a .json set (demands with role, out_of_domain) or a text file, one demand per line, controls as 'ood: ...' (default: the packaged set)")
    parser.add_argument("--judge", help=f"judge and paraphraser model, through chatd (default: $JUDGE_MODEL, else [models].local_judge, else {DEFAULT_JUDGE})")
    parser.add_argument("--config", help="lakehouse.toml, for [models].local_judge")
    parser.add_argument("--corpora", default="workers", help="comma-separated corpora (default: %(default)s)")
    parser.add_argument("-k", type=int, default=8, help="results judged per demand (default: %(default)s)")
    parser.add_argument("--playbook", default="", help="playbook corpus (default: a fresh one per run)")
    parser.add_argument("--inject-distance", type=float, help="set playbook_max_inject_distance (the reference's fixed windows) instead of the calibrated default")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("-k must be positive")
    judge = choose_model(args.judge, args.config, DEFAULT_JUDGE)
    try:
        queries = load_queries(args.queries)
    except (OSError, ValueError) as exc:
        print(f"lakehouse reality playbook-lift: {exc}", file=sys.stderr)
        return 2
    progress, clear = terminal_progress()
    run = asyncio.run(
        run_playbook_lift(
            args.url,
            queries,
            judge_model=judge,
            corpora=[c for c in args.corpora.split(",") if c],
            k=args.k,
            playbook=args.playbook,
            token=args.token,
            timeout=args.timeout,
            inject_distance=args.inject_distance,
            progress=progress,
        )
    )
    clear()
    data = {"name": NAME, **asdict(run), "summary": run.summary()}
    json_path, md_path = write_report(args.out, NAME, data, markdown(run))
    s = run.summary()
    print(f"{s['rubric']}; paraphrase top-1 {s['paraphrase_top1']}/{s['paraphrases']}, control injections {s['control_injections']}")
    print(f"wrote {json_path} and {md_path}")
    if s["failed"] == s["demands"] and s["demands"]:
        print("every demand failed: see the report", file=sys.stderr)
        return 1
    return 0
