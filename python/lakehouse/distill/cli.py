"""``lakehouse distill materialize|score|export|replay|audit|drift|promote``.

Every command works on a data root: ``--data-dir`` (else the config's ``data_dir``, the
stack's). The commands that talk to the stack (``export rag --corpus``, ``replay``,
``promote``) go through the gateway: ``--gateway``, else ``$LH_GATEWAY_URL``, else the
config's gateway address. Long steps show a progress line on a terminal; each command ends
with a summary (``--json``: the receipt or report as JSON instead).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson

from ..clients.base import UpstreamError
from ..config import Config, load_config
from . import audit as audit_mod
from . import drift as drift_mod
from .common import Receipt, iter_jsonl
from .evidence import SOURCES, materialize
from .export import KINDS, export
from .promote import promote
from .replay import GatewayBackend, ReplayRequest, build_rag_corpus, load_replay_runs, replay
from .scored import load_scored, score

__all__ = ["main"]

EXAMPLES = {
    "materialize": "lakehouse distill materialize --data-dir ./lakehouse-data",
    "score": "lakehouse distill score",
    "export": "lakehouse distill export sft --include-partial\n  lakehouse distill export rag --corpus rag",
    "replay": 'lakehouse distill replay "need 2 welders in Toledo, OH" --kind fill --allow-escalation',
    "audit": "lakehouse distill audit --threshold 0.2",
    "drift": "lakehouse distill drift scorer\n  lakehouse distill drift psi --expected replay:-2 --actual replay:-1"
    "\n  lakehouse distill drift psi --expected scores:0 --actual scores:-1",
    "promote": "lakehouse distill promote --answer-corpus workers --playbook-corpus playbook_memory",
}


class Progress:
    """A transient status line on a terminal (nothing elsewhere)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.shown = False

    def __call__(self, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\033[K{text}")
            self.out.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.out.write("\r\033[K")
            self.out.flush()
            self.shown = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lakehouse distill",
        description="Distillation: run logs -> evidence -> scored runs -> exports -> replay, "
        "audit baselines and drift, and promotion into the playbook (docs/distillation.md).",
        epilog="example:\n  lakehouse distill materialize && lakehouse distill score && "
        "lakehouse distill export sft",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
        c.add_argument("--data-dir", help="the data root (default: the config's data_dir)")
        c.add_argument("--json", action="store_true", help="print the result as JSON")
        return c

    c = command("materialize", "source logs -> evidence/YYYY/MM/DD/<source>.jsonl (idempotent)")
    c.add_argument("--source", action="append", choices=SOURCES, metavar="SOURCE",
                   help=f"only this source (repeatable; default all: {', '.join(SOURCES)})")
    command("score", "score every new evidence record into scored-runs/YYYY/MM/DD/")
    c = command("export", "write the SFT, RAG or preference export (behind the firewall)")
    c.add_argument("kind", choices=KINDS)
    c.add_argument("--include-partial", action="store_true",
                   help="SFT / preference: also partially_accepted runs")
    c.add_argument("--corpus", nargs="?", const="rag", metavar="NAME",
                   help="rag: also build matrixd corpus NAME (default rag) from the export")
    c.add_argument("--gateway", help="gateway URL (default: $LH_GATEWAY_URL, else the config's)")
    c = command("replay", "retrieve -> context -> model -> validate -> log one replay run")
    c.add_argument("task", help="the task text")
    c.add_argument("--model", help="the local model (default [models].local_fast)")
    c.add_argument("--escalation-model", help="the escalation model (default [models].cloud_review)")
    c.add_argument("--allow-escalation", action="store_true", help="escalate when validation fails")
    c.add_argument("--local-only", action="store_true", help="never escalate")
    c.add_argument("--no-retrieval", action="store_true", help="skip retrieval (no context)")
    c.add_argument("--dry-run", action="store_true", help="retrieve and log, call no model")
    c.add_argument("--corpus", default="rag", help="the RAG corpus (default rag)")
    c.add_argument("-k", type=int, default=5, help="artifacts retrieved (default 5)")
    c.add_argument("--kind", choices=("fill", "email", "playbook"),
                   help="validate the answer with validatord as this kind")
    c.add_argument("--context", default="{}", help="validatord context as JSON")
    c.add_argument("--max-tokens", type=int, help="max tokens per model answer")
    c.add_argument("--gateway", help="gateway URL (default: $LH_GATEWAY_URL, else the config's)")
    c = command("audit", "tally every stage, append an audit baseline, print the drift table")
    c.add_argument("--threshold", type=float, default=audit_mod.DEFAULT_DRIFT_WARN_THRESHOLD,
                   help="relative change that warns (default 0.20)")
    c.add_argument("--no-record", action="store_true", help="do not append the baseline")
    c = command("drift", "scorer drift, or PSI between two score / distance distributions")
    c.add_argument("what", choices=("scorer", "psi"))
    c.add_argument("--expected", help="psi: replay:N (the Nth replay run's distances, -1 = last), "
                   "scores, scores:N (score run N), or a .json / .jsonl file of numbers")
    c.add_argument("--actual", help="psi: the same forms as --expected")
    c.add_argument("--field", help="psi: dotted path of the number in each .jsonl row")
    c.add_argument("--buckets", type=int, help="psi: bucket count (default 10)")
    c = command("promote", "accepted outcomes -> playbook entries (/v1/matrix/playbooks/bulk)")
    c.add_argument("--answer-corpus", default="workers",
                   help="the corpus the named workers live in (default workers)")
    c.add_argument("--playbook-corpus", help="default [matrixd].playbook_corpus")
    c.add_argument("--role", default="", help="role recorded with each entry (role gate)")
    c.add_argument("--dry-run", action="store_true", help="list the entries, send nothing")
    c.add_argument("--force", action="store_true", help="send entries promoted before too")
    c.add_argument("--gateway", help="gateway URL (default: $LH_GATEWAY_URL, else the config's)")
    return p


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, data_dir=args.data_dir)


def _gateway(args: argparse.Namespace, config: Config) -> str:
    return (args.gateway or os.environ.get("LH_GATEWAY_URL") or config.base_url("gateway")).rstrip("/")


def _session(config: Config) -> aiohttp.ClientSession:
    token = config.auth.resolved_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(headers=headers)


def _print_receipt(r: Receipt, title: str, extra: list[str] | None = None) -> None:
    print(f"{title}: read {r.read}, written {r.written}, skipped {r.skipped}")
    for reason, n in sorted(r.skip_reasons.items(), key=lambda kv: -kv[1]):
        print(f"  skipped {n:>6}  {reason}")
    for line in extra or []:
        print(f"  {line}")
    status = "ok" if r.validation_pass else "NOT BALANCED"
    print(f"  receipt: reports/distillation/{r.run_id}/{r.stage}.json ({status})")


def _emit_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _materialize(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    r = materialize(
        config.data_dir,
        config=config,
        sources=args.source,
        progress=lambda src, n: progress(f"materialize: {src}: {n:,} rows read"),
    )
    progress.done()
    if args.json:
        _emit_json(r.to_json())
        return 0
    extra = [
        f"{src:<24} read {c['read']:>6}  written {c['written']:>6}  skipped {c['skipped']:>5}"
        f"  unchanged {c['unchanged']:>6}"
        for src, c in r.counts["sources"].items()
        if not c.get("missing")
    ]
    missing = [s for s, c in r.counts["sources"].items() if c.get("missing")]
    if missing:
        extra.append(f"no file for: {', '.join(missing)}")
    extra.append(f"unchanged (already materialized): {r.counts['unchanged']}")
    _print_receipt(r, "materialize", extra)
    return 0


def _score(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    r = score(config.data_dir, progress=lambda i, n: progress(f"score: {i:,} / {n:,}"))
    progress.done()
    if args.json:
        _emit_json(r.to_json())
        return 0
    t = r.counts["totals"]
    _print_receipt(
        r,
        f"score ({r.counts['scorer_version']})",
        [
            "written by category: "
            + ", ".join(f"{k} {v}" for k, v in r.counts["written_by_category"].items()),
            "all scored runs:     " + ", ".join(f"{k} {v}" for k, v in t.items()),
        ],
    )
    return 0


async def _build_corpus(args: argparse.Namespace, config: Config, progress: Progress) -> dict[str, Any]:
    progress(f"building corpus {args.corpus} through matrixd ...")
    async with _session(config) as session:
        return await build_rag_corpus(session, _gateway(args, config), config.data_dir, name=args.corpus)


def _export(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    if args.corpus and args.kind != "rag":
        print("lakehouse distill export: --corpus applies to rag only", file=sys.stderr)
        return 2
    r = export(config.data_dir, args.kind, include_partial=args.include_partial)
    out: dict[str, Any] = {"receipt": r.to_json()}
    if args.corpus:
        try:
            out["corpus"] = asyncio.run(_build_corpus(args, config, progress))
        except (UpstreamError, aiohttp.ClientError, ValueError) as exc:
            progress.done()
            print(f"lakehouse distill export: building corpus {args.corpus}: {exc}", file=sys.stderr)
            return 1
        progress.done()
    if args.json:
        _emit_json(out)
        return 0
    extra = [f"file: {out['receipt']['outputs'][0]['path']}" if r.outputs else "file: (none)"]
    if "corpus" in out:
        c = out["corpus"]
        extra.append(
            f"corpus {args.corpus}: {c['rows']} rows, status {c.get('status')}, "
            f"failed batches {len(c.get('failed_batches') or [])}"
        )
    _print_receipt(r, f"export {args.kind}", extra)
    return 0


def _replay(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    try:
        context = orjson.loads(args.context)
    except orjson.JSONDecodeError:
        context = None
    if not isinstance(context, dict):
        print("lakehouse distill replay: --context must be a JSON object", file=sys.stderr)
        return 2
    req = ReplayRequest(
        task=args.task,
        local_only=args.local_only,
        allow_escalation=args.allow_escalation,
        no_retrieval=args.no_retrieval,
        dry_run=args.dry_run,
        local_model=args.model or config.models.local_fast,
        escalation_model=args.escalation_model or config.models.cloud_review,
        corpus=args.corpus,
        k=args.k,
        kind=args.kind or "",
        context=context,
        max_tokens=args.max_tokens,
    )
    try:
        req.validate()
    except ValueError as exc:
        print(f"lakehouse distill replay: {exc}", file=sys.stderr)
        return 2

    async def go() -> dict[str, Any]:
        async with _session(config) as session:
            return await replay(GatewayBackend(session, _gateway(args, config)), req, config.data_dir)

    progress("replay: retrieving, asking the model, validating ...")
    try:
        row = asyncio.run(go())
    except aiohttp.ClientError as exc:  # the gateway itself unreachable mid-way
        progress.done()
        print(f"lakehouse distill replay: {exc}", file=sys.stderr)
        return 1
    progress.done()
    if args.json:
        _emit_json(row)
    else:
        v = row["validation"]
        print(f"replay {row['recorded_run_id'][:16]}: {'PASSED' if v['passed'] else 'FAILED'}"
              f" in {row['duration_ms']:.0f} ms{' (dry run)' if row['dry_run'] else ''}")
        print(f"  retrieved {len(row['retrieved'])} artifact(s) from {row['corpus'] or '(none)'}")
        for a in row["retrieved"][:5]:
            print(f"    {a['score']:.3f}  {a['title'][:70]}  [{a['success_score']}]")
        if row["escalation_path"]:
            print(f"  models: {' -> '.join(row['escalation_path'])}")
        for reason in v["reasons"]:
            print(f"  reason: {reason}")
        if row["response"]:
            print(f"  response: {row['response'][:300]}")
        print("  logged to _kb/replay_runs.jsonl")
    return 0 if row["validation"]["passed"] or row["dry_run"] else 1


def _audit(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    try:
        report = audit_mod.run_audit(config.data_dir, threshold=args.threshold, record=not args.no_record)
    except ValueError as exc:
        print(f"lakehouse distill audit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _emit_json(report.to_json())
    else:
        for name, (ok, detail) in report.checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
        print()
        if report.prior is None:
            print("no previous baseline: every metric is a first run")
        else:
            print(f"against the baseline of {report.prior.recorded_at}:")
        print(audit_mod.format_drift_table(report.drift))
        print()
        print(f"{report.warnings} of {len(report.drift)} metric(s) warn (threshold "
              f"{args.threshold:.2f}); baseline {'not ' if args.no_record else ''}appended to "
              "_kb/audit_baselines.jsonl")
    return 0 if report.passed else 1


def _dig(value: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            i = int(part)
            value = value[i] if -len(value) <= i < len(value) else None
        else:
            return None
    return value


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def _sample(spec: str, field_path: str | None, root: Path) -> list[float]:
    """A PSI sample: ``replay:N`` (the retrieved distances of replay run N), ``scores`` (the
    quality of every scored run: accepted 1, partial 0.5, others 0), ``scores:N`` (the same
    for the rows score run N wrote), or a file."""
    if spec.startswith("replay:"):
        runs = load_replay_runs(root)
        try:
            row = runs[int(spec.split(":", 1)[1])]
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{spec}: no such replay run ({len(runs)} logged)") from exc
        return [float(a.get("score", 0.0)) for a in row.get("retrieved") or []]
    if spec == "scores" or spec.startswith("scores:"):
        weight = {"accepted": 1.0, "partially_accepted": 0.5}
        scored_rows = list(load_scored(root).values())
        if spec != "scores":  # one score run: the rows written together (one scored_at)
            runs = sorted({str(r.get("scored_at")) for r in scored_rows})
            try:
                when = runs[int(spec.split(":", 1)[1])]
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{spec}: no such score run ({len(runs)} so far)") from exc
            scored_rows = [r for r in scored_rows if r.get("scored_at") == when]
        return [weight.get(r["category"], 0.0) for r in scored_rows]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec}: not replay:N, scores, or a file")
    if path.suffix == ".jsonl":
        if not field_path:
            raise ValueError("--field is required for a .jsonl sample")
        out: list[float] = []
        for _, row, err in iter_jsonl(path):
            if not err:
                out += _numbers(_dig(row, field_path.split(".")))
        return out
    try:
        return _numbers(orjson.loads(path.read_bytes()))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{spec}: not JSON") from exc


def _drift(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    root = Path(config.data_dir)
    if args.what == "scorer":
        from .evidence import load_evidence

        evidence = load_evidence(root)
        pairs = [
            {"record": evidence[r["sig_hash"]].to_json(), "category": r["category"]}
            for r in load_scored(root, scorer_version=None).values()
            if r["sig_hash"] in evidence
        ]
        result = drift_mod.compute_scorer_drift(pairs)
        if args.json:
            _emit_json(result)
        else:
            print(f"scorer drift ({result['scorer_version']}): {result['mismatches']} of "
                  f"{result['total']} persisted categories differ "
                  f"({result['mismatch_rate'] * 100:.1f}%)")
            for e in result["entries"][:20]:
                print(f"  #{e['index']}: {e['persisted']} -> {e['current']} ({'; '.join(e['reasons'])})")
        return 0
    if not args.expected or not args.actual:
        print("lakehouse distill drift psi: --expected and --actual are required", file=sys.stderr)
        return 2
    try:
        result = drift_mod.compute_distribution_drift(
            _sample(args.expected, args.field, root), _sample(args.actual, args.field, root), args.buckets
        )
    except ValueError as exc:
        print(f"lakehouse distill drift psi: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _emit_json(result)
    else:
        print(f"PSI {result['psi']:.4f}: {result['tier']} ({result['n_expected']} expected, "
              f"{result['n_actual']} actual, {result['num_buckets']} buckets)")
        for b in result["buckets"]:
            print(f"  [{b['lower']:.4g}, {b['upper']:.4g}]  {b['expected_count']:>6} {b['actual_count']:>6}"
                  f"  {b['psi']:+.4f}")
        if result.get("note"):
            print(f"  note: {result['note']}")
    return 0


def _promote(args: argparse.Namespace, config: Config, progress: Progress) -> int:
    pb_corpus = args.playbook_corpus or config.matrixd.playbook_corpus

    async def go() -> Receipt:
        if args.dry_run:
            return await promote(config.data_dir, None, answer_corpus=args.answer_corpus,
                                 playbook_corpus=pb_corpus, role=args.role, dry_run=True)
        async with _session(config) as session:
            backend = GatewayBackend(session, _gateway(args, config))

            async def bulk(entries: list[dict[str, Any]], corpus: str) -> dict[str, Any]:
                return await backend.client.post(
                    "/v1/matrix/playbooks/bulk", {"entries": entries, "playbook_corpus": corpus}
                )

            return await promote(
                config.data_dir, bulk, answer_corpus=args.answer_corpus, playbook_corpus=pb_corpus,
                role=args.role, force=args.force,
                progress=lambda i, n: progress(f"promote: {i:,} / {n:,} entries"),
            )

    try:
        r = asyncio.run(go())
    except (UpstreamError, aiohttp.ClientError, ValueError) as exc:
        progress.done()
        print(f"lakehouse distill promote: {exc}", file=sys.stderr)
        return 1
    progress.done()
    if args.json:
        _emit_json(r.to_json())
        return 0
    c = r.counts
    _print_receipt(
        r,
        f"promote into {pb_corpus}{' (dry run)' if args.dry_run else ''}",
        [f"{c['candidates']} candidate entries, {c['already_promoted']} already promoted, "
         f"{c['recorded']} recorded, {c['failed']} failed"]
        + [f"error: {e}" for e in c["errors"]]
        + [f"would record: {e['query_text'][:60]!r} -> {e['answer_id']}" for e in c["entries"]],
    )
    return 0 if not c["failed"] else 1


_HANDLERS: dict[str, Callable[[argparse.Namespace, Config, Progress], int]] = {
    "materialize": _materialize,
    "score": _score,
    "export": _export,
    "replay": _replay,
    "audit": _audit,
    "drift": _drift,
    "promote": _promote,
}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)  # the root need not exist yet: every stage creates what it writes
    return _HANDLERS[args.command](args, config, Progress())
