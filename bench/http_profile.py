"""Where each 0.1 ms of a request goes, per daemon, from py-spy's stacks.

    python -m bench.http_chain --profile /tmp/prof     # record (py-spy, one extra cell)
    python -m bench.http_profile /tmp/prof             # the tables of docs/performance.md

``http_chain --profile`` records every daemon process with ``py-spy record --format raw
--idle --nonblocking`` during one cell of load and writes the cell's figures beside the
stacks (``cell.json``: requests/second and each daemon's CPU, % of one core). Here every
sample of a daemon's main thread that is not idle is classified by the innermost frame that
matches a rule of :data:`RULES` (so each sample counts once), and each class's share of the
busy samples is turned into CPU microseconds per request:
``share x daemon CPU (cores) / requests per second``.

Idle: a main-thread sample whose innermost Python frame is aiohttp's ``run_app`` (or our
``run_shared``) is inside
the event loop's C code (uvloop: waiting in epoll, or its own socket work); it is counted
apart. vectord's search threads are summarised apart as well (they run without the GIL).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

#: (class, substrings of a frame "function (file:line)"): the innermost frame that matches
#: any rule decides; rules are tried in this order for that frame
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("socket writes (send on loopback: the kernel delivers to the peer here)",
     ("StreamWriter._writelines", "StreamWriter._write ", "transport.write", "_SelectorSocketTransport.write")),
    ("native search (the HNSW core)", ("HnswIndex", "NamedIndex.search", "_run_trip", "search_batch (lakehouse/vectors")),
    ("embedding (hash provider, LRU cache)", ("lakehouse/embed/",)),
    ("playbook arithmetic and entries", ("apply_playbook", "lakehouse/matrix/ranking.py", "parse_entry", "calibration.py")),
    ("JSON / binary decode (bodies, answers)", ("decode_json", "read_json", "orjson.loads", "loads (", "_parse (lakehouse/clients",
                                                "decode_vectors", "lakehouse/transport.py", "np.asarray", "frombuffer")),
    ("JSON encode", ("dumps (lakehouse/web.py", "_answer (lakehouse/services/vectord.py", "_hits_json", "json_response")),
    ("HTTP client (aiohttp / our pool: request, connection, response)", ("aiohttp/client", "aiohttp/connector", "aiohttp/helpers",
                                                                         "aiohttp/payload", "aiohttp/streams", "lakehouse/clients/pool.py")),
    ("HTTP server (aiohttp: parse, dispatch, response)", ("aiohttp/web_", "aiohttp/http_", "aiohttp/base_protocol")),
    ("our middlewares (trace id, errors, auth)", ("_middleware", "middleware (lakehouse/web.py")),
    ("gateway relay (headers, URL)", ("lakehouse/services/gateway.py",)),
    ("hand-off to a search thread (submit: wakes it, waits for the GIL back)", ("concurrent/futures", "threading.py")),
    ("asyncio scheduling (tasks, futures, timeouts)", ("asyncio/", "uvloop")),
    ("handler logic (validation, merge, fan-out)", ("lakehouse/",)),
]
#: the innermost Python frame of a main thread waiting in the event loop's C code
IDLE = ("run_app (aiohttp/web.py", "run_shared (lakehouse/web.py")


def _rows(path: Path) -> list[tuple[str, list[str], int]]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        rows.append((frames[0], frames[1:], int(n)))
    return rows


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in RULES:
            if any(n in frame for n in needles):
                return name
    return "other (interpreter, imports)"


def summarise(path: Path) -> dict[str, object]:
    """Busy-sample shares of one process's main thread, and its other threads' busy share."""
    main: collections.Counter[str] = collections.Counter()
    total = idle = threads_busy = 0
    for thread, frames, n in _rows(path):
        if "MainThread" not in thread:
            if frames and not any(w in frames[-1] for w in ("wait (threading", "_worker (concurrent", "get (queue")):
                threads_busy += n
            continue
        total += n
        if not frames or frames[-1].startswith(IDLE):
            idle += n
            continue
        main[classify(frames)] += n
    if threads_busy:
        # vectord's search threads: the native search runs there, with the GIL released
        main["search threads (native search, hits, answer JSON; GIL released in the core)"] += threads_busy
    busy = max(1, total - idle + threads_busy)
    return {"samples": total, "idle_share": round(idle / max(1, total), 3),
            "shares": {k: v / busy for k, v in main.most_common()},
            "thread_busy_vs_main": round(threads_busy / max(1, total), 3)}


def report(directory: Path) -> str:
    cell = json.loads((directory / "cell.json").read_text())
    rps = cell["rps"]
    lines = [f"Load while profiled: {rps:,.0f} req/s at concurrency {cell['concurrency']} "
             f"(py-spy itself costs CPU on this 2-core machine, so the rate is below the unprofiled one).", ""]
    grand = 0.0
    for f in sorted(directory.glob("*.txt")):
        daemon = f.stem.split("-", 1)[0]
        cpu = (cell.get("server_cpu_by_process") or {}).get(daemon)
        if cpu is None:
            continue
        s = summarise(f)
        n_files = len(list(directory.glob(f"{daemon}*.txt")))
        us = 1e6 * (cpu / 100) / rps / n_files  # this process's CPU per request
        grand += us
        lines.append(f"**{f.stem}**: {us:,.0f} us of CPU per request ({cpu:.0f} % of a core"
                     f"{f' over {n_files} processes' if n_files > 1 else ''}); main thread idle "
                     f"{100 * s['idle_share']:.0f} % of samples"
                     + (f"; search threads busy {100 * s['thread_busy_vs_main']:.0f} % of the main thread's samples"
                        if s["thread_busy_vs_main"] else ""))
        lines.append("")
        lines.append("| where | share | us / request |")
        lines.append("|---|---|---|")
        for name, share in s["shares"].items():  # type: ignore[union-attr]
            if share >= 0.01:
                lines.append(f"| {name} | {100 * share:.0f} % | {share * us:,.0f} |")
        lines.append("")
    lines.append(f"All daemons together: {grand:,.0f} us of CPU per request "
                 f"(the generator: {10 * cell['client_cpu'][0] / rps * 1000:,.0f} us).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    print(report(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
