"""``python -m parity [PROBE ...]``: run the parity probes; exit 1 if any of them fails.

Probes (all of them when none is named):

    fixtures   every library fixture through the implementation and its pure-Python twin,
               against the contract's expectation
    generated  hypothesis-generated inputs through the native core and the twins
               (--examples per check, --seed to reproduce)
    hnswlib    the native index against hnswlib above the brute-force threshold, and against
               the exact twin below it ("missing" when hnswlib is not installed: a failure)
    http       every HTTP fixture sent to two runtimes (--left/--right specs as for
               `lakehouse parity`; by default two fresh in-process instances of this runtime)

Run from the repository root (``tox -e parity`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

PROBES = ("fixtures", "generated", "hnswlib", "http")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def run_fixtures(directory: Path, only: str | None) -> bool:
    from lakehouse.parity import load_fixtures, select
    from parity.library import FUNCTIONS, check_fixture

    fixtures = select(load_fixtures(directory, kind="library"), only)
    failed = 0
    lines = []
    for fx in fixtures:
        problems = check_fixture(fx)
        fn = FUNCTIONS.get(fx["function"])
        against = "twin + contract" if fn is not None and fn.twin is not None else "contract"
        if problems:
            failed += 1
            lines.append(f"  MISMATCH  {fx['contract']} {fx['name']} ({fx['function']}, {against})")
            for p in problems:
                lines.extend("      " + line for line in p.splitlines())
        else:
            lines.append(f"  ok        {fx['contract']} {fx['name']} ({fx['function']}, {against})")
    print(f"library fixtures ({directory}):")
    print("\n".join(lines))
    print(f"{len(fixtures) - failed}/{len(fixtures)} matched")
    return bool(fixtures) and failed == 0


def run_generated(examples: int, seed: int | None) -> bool:
    from parity.generated import run

    results = run(examples, seed=seed)
    print(f"generated inputs, native / library vs reference ({examples} examples per check):")
    for r in results:
        print(f"  {'ok' if r.ok else 'MISMATCH':<9} {r.name} ({r.examples} inputs)")
        if not r.ok:
            print("\n".join("      " + line for line in r.error.splitlines()))
    print(f"{sum(r.ok for r in results)}/{len(results)} matched")
    return all(r.ok for r in results)


def run_hnswlib(n: int, queries: int) -> bool:
    from parity.hnsw import run

    report = run(n=n, queries=queries)
    print(report.render())
    return report.ok


def run_http(args: argparse.Namespace) -> bool:
    from lakehouse.parity import load_fixtures, probe, roster_for, select

    fixtures = select(load_fixtures(args.fixtures, kind="http"), args.only)
    report = asyncio.run(
        probe(
            fixtures, args.left, args.right, roster=roster_for(args.fixtures),
            left_token=args.left_token, right_token=args.right_token, timeout=args.timeout,
        )
    )
    print(report.render())
    return report.ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probes", nargs="*", metavar="PROBE",
                        help=f"which probes ({', '.join(PROBES)}; default: all)")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="fixture directory")
    parser.add_argument("--only", help="fixtures whose name or contract section contains this text")
    parser.add_argument("--examples", type=int, default=200, help="generated inputs per check")
    parser.add_argument("--seed", type=int, help="seed for the generated inputs")
    parser.add_argument("--hnsw-n", type=int, default=5000, help="items for the graph comparison")
    parser.add_argument("--hnsw-queries", type=int, default=100)
    parser.add_argument("--left", default="local", help="HTTP probe: left side spec (default: local)")
    parser.add_argument("--right", default="local", help="HTTP probe: right side spec (default: local)")
    parser.add_argument("--left-token", default="")
    parser.add_argument("--right-token", default="")
    parser.add_argument("--timeout", type=float, default=15.0, help="HTTP probe: seconds per request")
    args = parser.parse_args(argv)
    unknown = [p for p in args.probes if p not in PROBES]
    if unknown:
        parser.error(f"unknown probe(s) {', '.join(unknown)} (known: {', '.join(PROBES)})")
    chosen = args.probes or list(PROBES)
    results = {}
    for name in chosen:
        start = time.perf_counter()
        if name == "fixtures":
            ok = run_fixtures(args.fixtures, args.only)
        elif name == "generated":
            ok = run_generated(args.examples, args.seed)
        elif name == "hnswlib":
            ok = run_hnswlib(args.hnsw_n, args.hnsw_queries)
        else:
            ok = run_http(args)
        results[name] = ok
        print(f"[{name}: {'ok' if ok else 'FAILED'} in {time.perf_counter() - start:.1f} s]\n")
    print("parity: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
