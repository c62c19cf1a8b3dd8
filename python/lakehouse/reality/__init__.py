"""Reality harnesses (contract section 15): end-to-end measurements against any stack.

``lakehouse reality playbook-lift`` (:mod:`.playbook_lift`), ``multi-coord``
(:mod:`.multi_coord`) and ``multitier`` (:mod:`.multitier`); docs/reality.md.
Each harness talks to a stack through its gateway's ``/v1`` routes only, and writes
``reports/<name>_<NNN>.json`` and ``.md`` (:mod:`.report`).
"""

from __future__ import annotations

import argparse

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
    from ..cli import dispatch

    return dispatch(
        HARNESSES,
        argv,
        prog="lakehouse reality",
        noun="harness",
        plural="harnesses",
        footer="example: lakehouse reality playbook-lift --url http://127.0.0.1:3110",
    )


def add_stack_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:3110", help="the stack's gateway (default: %(default)s)")
    parser.add_argument("--token", default="", help="bearer token for a gateway with auth")
    parser.add_argument("--out", default="reports", help="report directory (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
