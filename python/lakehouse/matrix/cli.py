"""``lakehouse corpus``: build a vector corpus from SQL through a running stack's gateway.

    lakehouse corpus build workers --sql "SELECT * FROM workers" --id-column worker_id \\
        --text-template "{role} in {city}, {state}. Certifications: {certifications}"
    lakehouse corpus status JOB_ID

``build`` sends ``POST /v1/matrix/corpus/build`` with ``wait: false`` and follows the job
(``GET /v1/matrix/corpus/build/{job}``) until it ends, showing a progress bar on stderr when
stderr is a terminal and a plain line per tenth otherwise (:mod:`lakehouse.progress`). The
total comes from ``SELECT count(*)`` over the same SQL (``/v1/sql``) before the build starts;
when that count fails the bar shows the rows embedded so far without a total. The final
summary goes to stdout (``--json``: the job's report as JSON). Exit status: 0 the build is
``done``; 1 ``partial`` or ``failed`` (the cause is printed), or the stack cannot be reached;
2 bad arguments. Ctrl-C stops following, not the build (matrixd goes on; ``status`` shows it).
Where the embedding runs is matrixd's choice (``[matrixd].ray_address``: on a Ray cluster,
docs/scale-out.md); the command, its progress and its report are the same either way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp
import orjson

from ..clients.base import UpstreamError
from ..clients.matrixd import MatrixdClient
from ..clients.queryd import QuerydClient
from ..config import load_config
from ..progress import Progress

__all__ = ["build", "main"]

POLL_SECONDS = 0.25


async def count_rows(queryd: QuerydClient, sql: str) -> int | None:
    """``count(*)`` of ``sql``'s rows, or None when queryd will not say."""
    inner = sql.strip().rstrip(";").strip()
    try:
        answer = await queryd.sql(f"SELECT count(*) AS n FROM ({inner}) AS lakehouse_corpus_count")
        return int(answer["rows"][0][0])
    except (UpstreamError, LookupError, TypeError, ValueError):
        return None


async def build(
    session: aiohttp.ClientSession,
    base_url: str,
    body: dict[str, Any],
    progress: Progress,
    *,
    poll: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Start the build described by ``body`` at ``base_url`` (a gateway's ``.../v1``), follow
    it, and return its final report. UpstreamError when the build is refused."""
    matrixd = MatrixdClient(session, base_url)
    total = await count_rows(QuerydClient(session, base_url), body["sql"])
    progress.update(0, total)
    report = await matrixd.request("POST", "/matrix/corpus/build", {**body, "wait": False})
    while report.get("status") == "running":
        progress.update(int(report.get("rows_embedded") or 0), note=_note(report))
        await asyncio.sleep(poll)
        report = await matrixd.corpus_job(str(report["job_id"]))
    progress.update(int(report.get("rows_embedded") or 0), note=_note(report))
    return report


def _note(report: dict[str, Any]) -> str:
    failed = len(report.get("failed_batches") or [])
    return f"{failed} batch(es) failed" if failed else ""


def summary(report: dict[str, Any]) -> str:
    """One line saying how the build ended."""
    seconds = float(report.get("elapsed_ms") or 0) / 1000
    name = report.get("name")
    counts = (
        f"{report.get('rows_embedded', 0):,} rows embedded ({report.get('added', 0):,} added, "
        f"{report.get('updated', 0):,} updated, {report.get('rows_skipped', 0):,} skipped) in "
        f"{report.get('batches', 0)} batches, {seconds:.1f} s"
    )
    status = report.get("status")
    if status == "done":
        return f"built corpus {name}: {counts}, {report.get('dimension')}-d, model {report.get('model')}"
    failed = report.get("failed_batches") or []
    first = f"; first failure: batch {failed[0].get('batch')} ({failed[0].get('stage')}): {failed[0].get('error')}" if failed else ""
    error = f": {report['error']}" if report.get("error") else ""
    return f"corpus {name} build {status}{error}; {counts}{first}"


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def _gateway(args: argparse.Namespace) -> tuple[str, str]:
    config = load_config(args.config)
    url = (args.url or config.base_url("gateway")).rstrip("/")
    return url + "/v1", config.auth.resolved_token()


def _session(token: str) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(headers=headers)


def _unreachable(exc: UpstreamError, base: str) -> str:
    if exc.status is None:
        return f"the stack does not answer at {base} ({exc.message}); start it with `lakehouse up`"
    return str(exc)


def _build_main(args: argparse.Namespace) -> int:
    base, token = _gateway(args)
    body: dict[str, Any] = {"name": args.name, "sql": args.sql, "id_column": args.id_column}
    if args.text_template is not None:
        body["text_template"] = args.text_template
    if args.text_columns is not None:
        body["text_columns"] = _split(args.text_columns)
    if args.metadata_columns is not None:
        body["metadata_columns"] = _split(args.metadata_columns)
    for key in ("batch_size", "model", "distance"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.replace:
        body["replace"] = True
    progress = Progress(f"building corpus {args.name}", unit="rows", out=sys.stderr)

    async def run() -> dict[str, Any]:
        async with _session(token) as session:
            return await build(session, base, body, progress)

    try:
        report = asyncio.run(run())
    except UpstreamError as exc:
        progress.close()
        print(f"lakehouse corpus build: {_unreachable(exc, base)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.close(
            "stopped following; the build goes on in matrixd (lakehouse corpus status shows jobs)"
        )
        return 130
    progress.close()
    print(orjson.dumps(report).decode() if args.json else summary(report))
    return 0 if report.get("status") == "done" else 1


def _status_main(args: argparse.Namespace) -> int:
    base, token = _gateway(args)

    async def run() -> Any:
        async with _session(token) as session:
            matrixd = MatrixdClient(session, base)
            if args.job_id:
                return await matrixd.corpus_job(args.job_id)
            return await matrixd.get("/matrix/corpus/build")

    try:
        answer = asyncio.run(run())
    except UpstreamError as exc:
        print(f"lakehouse corpus status: {_unreachable(exc, base)}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(answer).decode())
    elif args.job_id:
        print(summary(answer) if answer.get("status") != "running" else _running(answer))
    else:
        jobs = answer.get("jobs") or []
        for job in jobs:
            print(f"{job['job_id']}  {job['status']:<8} {job['name']}")
        if not jobs:
            print("no corpus build jobs")
    return 0


def _running(report: dict[str, Any]) -> str:
    return (
        f"corpus {report.get('name')} build running: {report.get('rows_embedded', 0):,} rows "
        f"embedded of {report.get('rows_read', 0):,} read so far"
    )


def main(argv: list[str]) -> int:
    """``lakehouse corpus build|status``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="the gateway of a running stack (default: the configuration's, :3110)"
    )
    common.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
    common.add_argument("--json", action="store_true", help="print the job's report as JSON")
    parser = argparse.ArgumentParser(
        prog="lakehouse corpus",
        description="build vector corpora through a running stack's gateway",
        epilog=(
            "examples:\n"
            "  lakehouse corpus build workers --sql 'SELECT * FROM workers' "
            "--id-column worker_id --text-columns role,city\n"
            "  lakehouse corpus status\n"
            "'lakehouse corpus build --help' for every option."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build",
        parents=[common],
        help="build (or extend) a corpus from SQL, with progress",
        description=(
            "Run SQL on queryd, embed each row and fill the vectord index NAME, through the "
            "gateway. A progress bar on stderr when it is a terminal, plain lines otherwise. "
            "On a stack whose matrixd has [matrixd].ray_address set (lakehouse up --engine ray "
            "sets it) the embed batches run in parallel on the Ray cluster (docs/scale-out.md)."
        ),
        epilog=(
            "example:\n"
            "  lakehouse corpus build workers --sql 'SELECT * FROM workers' --id-column worker_id \\\n"
            "      --text-template '{role} in {city}, {state}. Certifications: {certifications}'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("name", help="the corpus (vectord index) to fill")
    b.add_argument("--sql", required=True, help="a read-only query over cataloged datasets")
    b.add_argument("--id-column", required=True, help="the column holding each row's id")
    text = b.add_mutually_exclusive_group(required=True)
    text.add_argument("--text-template", help='the text embedded per row: "{role} in {city}"')
    text.add_argument("--text-columns", help="or: these columns (comma-separated) as lines")
    b.add_argument("--metadata-columns", help="columns kept as metadata (default: all)")
    b.add_argument("--batch-size", type=int, help="rows per embed + add batch")
    b.add_argument("--model", help="embedding model (default: embedd's)")
    b.add_argument("--distance", choices=("cosine", "euclidean", "dot"), help="for a new index")
    b.add_argument("--replace", action="store_true", help="drop an existing index first")
    s = sub.add_parser(
        "status",
        parents=[common],
        help="one build job's report, or the list of jobs",
        epilog="example:\n  lakehouse corpus status 3f2a9c0d1e4b5a6c",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("job_id", nargs="?", help="a job id (default: list the jobs)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return _build_main(args)
    return _status_main(args)

