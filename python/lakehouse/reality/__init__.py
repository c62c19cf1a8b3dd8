"""Reality harnesses (contract section 15): end-to-end measurements against any stack.

``lakehouse reality playbook-lift`` (:mod:`.playbook_lift`), ``multi-coord``
(:mod:`.multi_coord`) and ``multitier`` (:mod:`.multitier`); docs/reality.md.
Each harness talks to a stack through its gateway's ``/v1`` routes only, and writes
``reports/<name>_<NNN>.json`` and ``.md`` (:mod:`.report`).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

#: subcommand -> ("module:function", help)
HARNESSES = {
    "playbook-lift": (
        "lakehouse.reality.playbook_lift:main",
        "cold pass, judge, record, warm pass: does the playbook lift the approved answers?",
    ),
    "multi-coord": (
        "lakehouse.reality.multi_coord:main",
        "three coordinators, three contracts, nine phases over 48 hours: overlap, determinism, fresh resumes",
    ),
    "multitier": (
        "lakehouse.reality.multitier:main",
        "the weighted scenario mix at a fixed concurrency for a fixed time: rate, p50, p99, failures",
    ),
}


def main(argv: list[str]) -> int:
    """``lakehouse reality NAME [options]``."""
    import importlib

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lakehouse reality HARNESS [options]\n\nharnesses:")
        for name, (_, text) in HARNESSES.items():
            print(f"  {name:<15} {text}")
        print("\nexample: lakehouse reality playbook-lift --url http://127.0.0.1:3110")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in HARNESSES:
        print(f"lakehouse reality: unknown harness {name!r} (choose from {', '.join(HARNESSES)})", file=sys.stderr)
        return 2
    module, func = HARNESSES[name][0].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


def add_stack_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:3110", help="the stack's gateway (default: %(default)s)")
    parser.add_argument("--token", default="", help="bearer token for a gateway with auth")
    parser.add_argument("--out", default="reports", help="report directory (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
