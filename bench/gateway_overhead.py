"""What the gateway adds: the same requests sent to an upstream directly and through the gateway.

    python -m bench.gateway_overhead                     # concurrency 1, 10, 50; 5 s each
    python -m bench.gateway_overhead --duration 10 --concurrency 10

The upstream is a minimal aiohttp app in its own process answering ``POST /matrix/search``
with a fixed ~2 KiB JSON body (the size of a k=10 matrix answer), so the figures measure
the proxy hop, not a daemon's work. The gateway is ``lakehouse serve gateway`` in another
process with ``matrixd_url`` pointing at the upstream. Besides latency and throughput it
reports the CPU time each request costs the upstream (direct) and the gateway process (via
the gateway), read from /proc: that figure holds up on a busy machine, the others do not. The load generator is a closed loop
of keep-alive connections on raw asyncio protocols (requests prepared in advance), in this
process. Prints requests/second, p50 and p99 for both paths and the added latency, and
writes ``bench/results/gateway_overhead.json``.

On a small machine the three processes share the cores: read the figures as "the cost of
one extra local hop", not as a capacity figure for either side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.rawhttp import Conn, free_port, request_bytes

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "gateway_overhead.json"
BODY = json.dumps({"query_text": "forklift operator with OSHA-30 in Milwaukee", "corpora": ["workers"], "k": 10}).encode()


# -- the fake upstream (runs in a child process) -----------------------------------------------


def serve_fake(port: int) -> None:
    from aiohttp import web

    answer = json.dumps(
        {
            "results": [
                {"id": f"w-{i:05d}", "corpus": "workers", "distance": 0.1 * i, "source": "retrieval",
                 "metadata": {"role": "Forklift Operator", "city": "Milwaukee", "state": "WI",
                              "certifications": ["OSHA-30", "Forklift"], "rating": 4.5}}
                for i in range(10)
            ],
            "per_corpus": {"workers": 10},
            "metadata_filter_dropped": 0,
        }
    ).encode()

    async def search(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "matrixd"})

    app = web.Application()
    app.router.add_post("/matrix/search", search)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the load generator ------------------------------------------------------------------------


async def load(port: int, path: str, concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    request = request_bytes("127.0.0.1", path, BODY)
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    errors = 0
    start = time.perf_counter() + warmup
    stop = start + duration

    async def one() -> None:
        nonlocal errors
        _, conn = await loop.create_connection(Conn, "127.0.0.1", port)
        while (now := time.perf_counter()) < stop:
            t0 = time.perf_counter_ns()
            status = await conn.send(request)
            t1 = time.perf_counter_ns()
            if now >= start:
                if status == 200:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
        assert conn.transport is not None
        conn.transport.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6, 3)

    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, port: int, path: str, c: int, warmup: float, duration: float) -> dict[str, Any]:
    """One load run, plus the CPU the process ``pid`` spent per request (µs)."""
    before = cpu_seconds(pid)
    result = asyncio.run(load(port, path, c, warmup, duration))
    spent = cpu_seconds(pid) - before
    # the warm-up requests also cost CPU: spread over every request sent, counted or not
    sent = result["requests"] * (warmup + duration) / duration
    result["cpu_us_per_request"] = round(1e6 * spent / max(1.0, sent), 1)
    return result


def wait_health(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,10,50", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return 0

    fake_port, gw_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["LAKEHOUSE_GATEWAY_MATRIXD_URL"] = f"http://127.0.0.1:{fake_port}"
    env["LAKEHOUSE_LOG_LEVEL"] = "WARNING"
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.gateway_overhead", "--serve-fake", str(fake_port)], cwd=ROOT),
        subprocess.Popen(
            [sys.executable, "-m", "lakehouse", "serve", "gateway", "--port", str(gw_port),
             "--config", os.devnull],
            env=env,
        ),
    ]
    try:
        wait_health(fake_port)
        wait_health(gw_port)
        rows = []
        for c in [int(x) for x in args.concurrency.split(",")]:
            direct = measured(procs[0].pid, fake_port, "/matrix/search", c, args.warmup, args.duration)
            via = measured(procs[1].pid, gw_port, "/v1/matrix/search", c, args.warmup, args.duration)
            rows.append({"concurrency": c, "direct": direct, "gateway": via,
                         "added_p50_ms": round(via["p50_ms"] - direct["p50_ms"], 3)})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    print(f"{'conc':>5} {'direct rps':>11} {'p50':>7} {'p99':>7} {'cpu us':>7} "
          f"{'gateway rps':>12} {'p50':>7} {'p99':>7} {'cpu us':>7} {'+p50 ms':>8}")
    for r in rows:
        d, g = r["direct"], r["gateway"]
        print(f"{r['concurrency']:>5} {d['rps']:>11} {d['p50_ms']:>7} {d['p99_ms']:>7} {d['cpu_us_per_request']:>7} "
              f"{g['rps']:>12} {g['p50_ms']:>7} {g['p99_ms']:>7} {g['cpu_us_per_request']:>7} {r['added_p50_ms']:>8}")
    print("cpu us: CPU time per request of the upstream (direct) and of the gateway process (via)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "duration_s": args.duration, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
