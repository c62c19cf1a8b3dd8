"""``lakehouse reality multitier``: the request path under a weighted scenario mix.

Contract section 15.3, against any stack (its gateway's ``/v1`` routes): ``--concurrency``
(50) workers run scenarios drawn with the reference's weights for ``--duration`` seconds,
then the report gives each scenario's count, rate, p50, p99 and failures (the bar: 0%).

| scenario | weight | what it does (a failure is any step below not answering as stated) |
|---|---|---|
| cold_search_email | 35% | search; draft an email to the top worker; ``/v1/validate`` kind email, ``_context.candidate_id`` = that worker: 200 |
| surge_fill_validate | 15% | search among available workers; the top ``n`` as fills; ``/v1/validate`` kind fill (``target_count`` n): 200; record the top answer in the playbook |
| profile_swap | 15% | search; search again with ``exclude_ids`` = the first answer: no id in both |
| repeat_cache | 15% | the same search 5 times (embedd's cache path): 5 answers |
| sms_validate | 10% | an SMS under 160 characters with a phone number (the SSN false-positive guard): 200 |
| playbook_record_replay | 10% | cold search; record its 3rd result; warm search (use_playbook): the recorded answer is in it |

Demands are drawn from the synthetic roster's vocabulary (role x city) with ``--seed``.
The email and fill checks need validatord's roster to hold the corpus's workers (as the
reference's run did); ``--no-roster`` leaves the candidate out of the email context and
skips the fill validation for stacks whose validatord has no roster. A coordinator fills a
surge from workers who can take it: the fill search asks only for the roster's available
workers (``metadata_filter`` on ``availability``, as the corpus built from ``gen-roster``
carries it, with ``per_corpus_k`` 8n since the filter applies after each corpus's top hits),
since validatord refuses a fill naming a worker "On assignment". Emails and SMS are
drafted from templates here (no LLM call): the harness measures the request path.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from ..roster import ACTIVE_AVAILABILITY, CITIES, ROLES
from . import add_stack_args
from .client import HarnessError as ScenarioFailure
from .client import StackClient, terminal_progress
from .report import write_report

__all__ = ["SCENARIOS", "MultitierRun", "run_multitier", "main"]

NAME = "multitier"
#: scenario -> weight (percent), the reference's mix
SCENARIOS: dict[str, int] = {
    "cold_search_email": 35,
    "surge_fill_validate": 15,
    "profile_swap": 15,
    "repeat_cache": 15,
    "sms_validate": 10,
    "playbook_record_replay": 10,
}


@dataclass
class ScenarioStats:
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add_failure(self, message: str) -> None:
        self.failures += 1
        key = message[:160]
        self.errors[key] = self.errors.get(key, 0) + 1


@dataclass
class MultitierRun:
    url: str
    concurrency: int
    duration_s: float
    corpora: list[str]
    playbook: str
    stats: dict[str, ScenarioStats] = field(default_factory=lambda: {s: ScenarioStats() for s in SCENARIOS})
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        rows = {}
        total = failures = 0
        for name, st in self.stats.items():
            n = len(st.latencies_ms) + st.failures
            total += n
            failures += st.failures
            lat = np.array(st.latencies_ms) if st.latencies_ms else None
            rows[name] = {
                "count": n,
                "rate_per_s": round(n / self.elapsed_s, 2) if self.elapsed_s else 0.0,
                "p50_ms": None if lat is None else round(float(np.percentile(lat, 50)), 2),
                "p99_ms": None if lat is None else round(float(np.percentile(lat, 99)), 2),
                "failures": st.failures,
                "errors": dict(sorted(st.errors.items(), key=lambda kv: -kv[1])[:5]),
            }
        return {
            "scenarios": rows,
            "total": total,
            "rate_per_s": round(total / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "failures": failures,
            "failure_rate": failures / total if total else 0.0,
            "verdict": "PASS: 0% failures" if total and not failures else f"FAIL: {failures} of {total} scenarios failed",
        }


def _demand(rng: random.Random) -> str:
    role = rng.choice(list(ROLES))
    city, state = rng.choice(CITIES)
    return rng.choice(
        [
            f"Need {rng.randint(1, 9)} {role}s in {city}, {state}",
            f"{role} in {city} for a {rng.choice(['day', 'night', 'weekend'])} shift",
            f"Looking for a {role} near {city}",
        ]
    )


def _first_name(result: dict[str, Any]) -> str:
    meta = result.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return str(name).split()[0] if name else "there"


class _Scenarios:
    def __init__(self, client: StackClient, run: MultitierRun, roster: bool) -> None:
        self.c = client
        self.run = run
        self.roster = roster

    async def search(self, query: str, k: int = 8, **extra: Any) -> list[dict[str, Any]]:
        answer = await self.c.post("/matrix/search", {"query_text": query, "corpora": self.run.corpora, "k": k, **extra})
        if not answer["results"]:
            raise ScenarioFailure("search returned no results (empty corpus?)")
        return answer["results"]

    async def cold_search_email(self, rng: random.Random) -> None:
        query = _demand(rng)
        top = (await self.search(query))[0]
        artifact = {
            "to": f"{top['id']}@workers.example",
            "subject": "A shift that fits you",
            "body": f"Hi {_first_name(top)}, a client needs: {query}. Reply YES to hear more.",
            "channel": "email",
        }
        context = {"candidate_id": top["id"]} if self.roster else {}
        await self.c.post("/validate", {"kind": "email", "artifact": artifact, "context": context})

    async def surge_fill_validate(self, rng: random.Random) -> None:
        query = _demand(rng)
        n = rng.randint(2, 5)
        # the filter applies after each corpus's top per_corpus_k: ask for enough to keep n
        available = {"metadata_filter": {"availability": list(ACTIVE_AVAILABILITY)}, "per_corpus_k": 8 * n} if self.roster else {}
        results = await self.search(query, k=n, **available)
        if self.roster:
            fills = [{"candidate_id": r["id"], "name": (r.get("metadata") or {}).get("name", "")} for r in results]
            fills = [{k: v for k, v in f.items() if v} for f in fills]
            await self.c.post("/validate", {"kind": "fill", "artifact": {"fills": fills}, "context": {"target_count": len(fills)}})
        await self.c.post(
            "/matrix/playbooks/record",
            {"query_text": query, "answer_id": results[0]["id"], "answer_corpus": results[0]["corpus"], "score": 1.0, "playbook_corpus": self.run.playbook},
        )

    async def profile_swap(self, rng: random.Random) -> None:
        query = _demand(rng)
        first = await self.search(query)
        ids = [r["id"] for r in first]
        second = await self.search(query, exclude_ids=ids)
        overlap = set(ids) & {r["id"] for r in second}
        if overlap:
            raise ScenarioFailure(f"exclude_ids: {len(overlap)} excluded ids came back")

    async def repeat_cache(self, rng: random.Random) -> None:
        query = _demand(rng)
        for _ in range(5):
            await self.search(query)

    async def sms_validate(self, rng: random.Random) -> None:
        phone = f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        body = f"Shift open tomorrow 7am, {rng.choice(CITIES)[0]}. Call {phone} to confirm."
        if len(body) > 160:
            raise ScenarioFailure("harness bug: SMS over 160 characters")
        await self.c.post("/validate", {"kind": "email", "artifact": {"to": phone, "body": body, "channel": "sms"}})

    async def playbook_record_replay(self, rng: random.Random) -> None:
        query = _demand(rng)
        cold = await self.search(query)
        chosen = cold[min(2, len(cold) - 1)]
        await self.c.post(
            "/matrix/playbooks/record",
            {"query_text": query, "answer_id": chosen["id"], "answer_corpus": chosen["corpus"], "score": 1.0, "playbook_corpus": self.run.playbook},
        )
        warm = await self.search(query, use_playbook=True, playbook_corpus=self.run.playbook)
        if chosen["id"] not in {r["id"] for r in warm}:
            raise ScenarioFailure("the recorded answer did not come back in the warm search")


async def run_multitier(
    url: str,
    *,
    concurrency: int = 50,
    duration: float = 30.0,
    corpora: list[str] | None = None,
    roster: bool = True,
    seed: int = 1,
    token: str = "",
    timeout: float = 30.0,
    progress: Any = None,
) -> MultitierRun:
    """Run the mix against the gateway at ``url`` for ``duration`` seconds."""
    run = MultitierRun(url, concurrency, duration, corpora or ["workers"], f"playbook_multitier_{seed}_{int(time.time())}")
    names = list(SCENARIOS)
    weights = [SCENARIOS[n] for n in names]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        scenarios = _Scenarios(StackClient(session, url, token), run, roster)
        start = time.monotonic()
        deadline = start + duration

        async def worker(i: int) -> None:
            rng = random.Random(seed * 100_003 + i)
            while time.monotonic() < deadline:
                name = rng.choices(names, weights)[0]
                t0 = time.perf_counter()
                try:
                    await getattr(scenarios, name)(rng)
                except ScenarioFailure as exc:
                    run.stats[name].add_failure(str(exc))
                else:
                    run.stats[name].latencies_ms.append((time.perf_counter() - t0) * 1000.0)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(1.0)
                if progress:
                    done = sum(len(s.latencies_ms) + s.failures for s in run.stats.values())
                    failed = sum(s.failures for s in run.stats.values())
                    progress(f"{time.monotonic() - start:5.0f}/{duration:.0f} s  {done} scenarios  {failed} failed")

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(worker(i) for i in range(concurrency)))
        finally:
            tick.cancel()
        run.elapsed_s = round(time.monotonic() - start, 3)
    return run


def markdown(run: MultitierRun) -> str:
    s = run.summary()
    lines = [
        f"# multitier against {run.url}",
        "",
        f"concurrency {run.concurrency}, {run.elapsed_s:.1f} s, corpora {', '.join(run.corpora)}; "
        f"{s['total']} scenarios at {s['rate_per_s']}/s",
        "",
        f"**{s['verdict']}**",
        "",
        "| scenario | weight | count | rate/s | p50 ms | p99 ms | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in s["scenarios"].items():
        lines.append(
            f"| {name} | {SCENARIOS[name]}% | {row['count']} | {row['rate_per_s']} | {row['p50_ms']} | {row['p99_ms']} | {row['failures']} |"
        )
    errors = [(n, e, c) for n, row in s["scenarios"].items() for e, c in row["errors"].items()]
    if errors:
        lines += ["", "| scenario | error | times |", "|---|---|---|"]
        lines += [f"| {n} | {e.replace('|', '/')} | {c} |" for n, e, c in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lakehouse reality multitier",
        description="The weighted scenario mix of contract 15.3 at a fixed concurrency for a fixed time.",
        epilog=(
            "example: lakehouse reality multitier --url http://127.0.0.1:3110 --concurrency 50 --duration 300\n"
            "         lakehouse reality multitier --no-roster --duration 30   # validatord without a roster"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_args(parser)
    parser.set_defaults(timeout=30.0)
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent scenario loops (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (default: %(default)s; the reference ran 300)")
    parser.add_argument("--corpora", default="workers", help="comma-separated corpora (default: %(default)s)")
    parser.add_argument("--no-roster", action="store_true", help="validatord has no roster of the corpus's workers")
    parser.add_argument("--seed", type=int, default=1, help="demand generator seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or not args.duration > 0:
        parser.error("--concurrency and --duration must be positive")
    progress, clear = terminal_progress()
    run = asyncio.run(
        run_multitier(
            args.url,
            concurrency=args.concurrency,
            duration=args.duration,
            corpora=[c for c in args.corpora.split(",") if c],
            roster=not args.no_roster,
            seed=args.seed,
            token=args.token,
            timeout=args.timeout,
            progress=progress,
        )
    )
    clear()
    s = run.summary()
    data = {
        "name": NAME,
        "url": run.url,
        "concurrency": run.concurrency,
        "duration_s": run.duration_s,
        "elapsed_s": run.elapsed_s,
        "corpora": run.corpora,
        "playbook": run.playbook,
        "summary": s,
    }
    json_path, md_path = write_report(args.out, NAME, data, markdown(run))
    print(f"{s['verdict']}; {s['total']} scenarios at {s['rate_per_s']}/s")
    print(f"wrote {json_path} and {md_path}")
    return 0 if not s["failures"] else 1
