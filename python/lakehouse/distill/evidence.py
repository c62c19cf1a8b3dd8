"""The materializer (contract 14.2): source JSONL rows -> ``EvidenceRecord`` v1 rows under
``evidence/YYYY/MM/DD/<source>.jsonl``, idempotent, with a receipt.

Sixteen sources: the reference's twelve (tier 1 and 2, read from ``_kb/<source>.jsonl``) and
four logs the stack writes itself (validatord's sessions, observerd's ops, pathwayd's trace
events, the replay log). Each has a pure transform ``row -> fields``; the caller supplies
``recorded_at`` and the ``sig_hash`` (sha256 of the source row's canonical key-sorted JSON).
A row a transform cannot use raises :class:`SkipRow` with the reason; the materializer
counts it and goes on (a bad line is never fatal).

Idempotency: a row's ``sig_hash`` already present anywhere under ``evidence/`` is not
written again, so a second run over the same sources writes nothing. The day partition is
the row's own time (its ``created_at`` or equivalent), so the same row always lands in the
same file; a row without a usable time is skipped (as the reference skips outcomes missing
``created_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..config import Config
from .common import (
    Layout,
    Receipt,
    append_jsonl,
    day_dir,
    iter_jsonl,
    now_rfc3339,
    parse_time,
    rfc3339,
)
from .scoring import sig_hash

__all__ = [
    "EVIDENCE_SCHEMA_VERSION",
    "MODEL_ROLES",
    "TIER1",
    "TIER2",
    "OWN_SOURCES",
    "SOURCES",
    "EvidenceRecord",
    "Provenance",
    "SkipRow",
    "transform",
    "source_paths",
    "materialize",
    "load_evidence",
]

EVIDENCE_SCHEMA_VERSION = 1
#: who produced the record's text
MODEL_ROLES = ("executor", "escalation", "reviewer", "extractor", "observer", "unknown")

TIER1 = (
    "distilled_facts",
    "distilled_procedures",
    "distilled_config_hints",
    "contract_analyses",
    "mode_experiments",
    "scrum_reviews",
    "observer_escalations",
    "audit_facts",
)
TIER2 = ("auto_apply", "observer_reviews", "audits", "outcomes")
OWN_SOURCES = ("iterate_sessions", "observer_ops", "pathway_traces", "replay_runs")
SOURCES = TIER1 + TIER2 + OWN_SOURCES


class SkipRow(ValueError):
    """A source row the transform cannot turn into evidence (the message is the reason)."""


class Provenance(msgspec.Struct, forbid_unknown_fields=True):
    source_file: str
    #: 0 = the first line of the file; always emitted (no omitempty)
    line_offset: int
    sig_hash: str
    recorded_at: str


class EvidenceRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One row of evidence (schema version 1). ``metadata`` is the typed bucket of the
    source's remaining fields (what the scorers read: verdicts, flags, scores)."""

    schema_version: int
    run_id: str
    source: str
    model_role: str
    timestamp: str
    provenance: Provenance
    #: the question / instruction / subject the text answers ("" when none)
    task: str = ""
    #: the produced text: answer, review, fact, artifact JSON ("" when none)
    text: str = ""
    context: str = ""
    model_name: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @property
    def sig_hash(self) -> str:
        return self.provenance.sig_hash


_decoder = msgspec.json.Decoder(EvidenceRecord)


def decode_evidence(line: bytes | str | Mapping[str, Any]) -> EvidenceRecord:
    """Decode one evidence row; ``ValueError`` for a bad row, and a **hard reject** for a
    ``schema_version`` other than :data:`EVIDENCE_SCHEMA_VERSION`."""
    try:
        if isinstance(line, Mapping):
            rec = msgspec.convert(dict(line), EvidenceRecord)
        else:
            rec = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not an EvidenceRecord: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ValueError("not JSON") from exc
    if rec.schema_version != EVIDENCE_SCHEMA_VERSION:
        raise ValueError(
            f"schema_version {rec.schema_version} != {EVIDENCE_SCHEMA_VERSION} (hard reject)"
        )
    if rec.source not in SOURCES:
        raise ValueError(f"unknown source {rec.source!r}")
    return rec


# -- transforms ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """A table-driven transform: which fields give the time, task, text, model and run id."""

    role: str
    task: tuple[str, ...]
    text: tuple[str, ...]
    time: tuple[str, ...] = ("created_at", "timestamp", "recorded_at")
    run_id: tuple[str, ...] = ("run_id", "id")
    context: tuple[str, ...] = ("context",)


_SPECS: dict[str, _Spec] = {
    "distilled_facts": _Spec("extractor", ("question", "topic", "subject"), ("fact", "text", "content")),
    "distilled_procedures": _Spec(
        "extractor", ("title", "goal", "task"), ("procedure", "steps", "text", "content")
    ),
    "distilled_config_hints": _Spec(
        "extractor", ("key", "setting", "topic"), ("hint", "text", "content")
    ),
    "contract_analyses": _Spec(
        "extractor", ("contract", "contract_id", "question"), ("analysis", "summary", "text", "content")
    ),
    "mode_experiments": _Spec("executor", ("task", "prompt", "query"), ("response", "output", "text")),
    "scrum_reviews": _Spec("reviewer", ("subject", "target", "task"), ("review", "summary", "text", "body")),
    "observer_escalations": _Spec("observer", ("endpoint", "subject", "task"), ("reason", "summary", "text")),
    "audit_facts": _Spec("reviewer", ("subject", "claim", "topic"), ("fact", "text", "summary")),
    "auto_apply": _Spec("executor", ("task", "finding", "description"), ("patch", "diff", "change", "text")),
    "observer_reviews": _Spec("observer", ("subject", "endpoint", "task"), ("review", "summary", "text")),
    "audits": _Spec("reviewer", ("subject", "target", "task"), ("summary", "report", "text")),
    # the reference skipped outcomes without created_at: outcomes read only that field
    "outcomes": _Spec(
        "executor", ("task", "demand", "query", "prompt"), ("result", "answer", "summary", "text"),
        time=("created_at",),
    ),
}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _first(row: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    for k in keys:
        if k in row and row[k] is not None and row[k] != "":
            return k, row[k]
    return "", None


def _time(row: Mapping[str, Any], keys: tuple[str, ...]) -> datetime:
    for k in keys:
        if k in row:
            when = parse_time(row[k])
            if when is None:
                raise SkipRow(f"{k} is not a time")
            return when
    raise SkipRow(f"missing {keys[0]}")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _tokens(row: Mapping[str, Any]) -> tuple[int | None, int | None]:
    usage = row.get("usage") if isinstance(row.get("usage"), Mapping) else {}
    return (
        _int_or_none(row.get("prompt_tokens", usage.get("prompt_tokens"))),
        _int_or_none(row.get("completion_tokens", usage.get("completion_tokens"))),
    )


def _table_transform(source: str, row: Mapping[str, Any]) -> dict[str, Any]:
    spec = _SPECS[source]
    when = _time(row, spec.time)
    task_key, task = _first(row, spec.task)
    text_key, text = _first(row, spec.text)
    ctx_key, ctx = _first(row, spec.context)
    run_key, run_id = _first(row, spec.run_id)
    model_key, model = _first(row, ("model", "model_name"))
    lifted = {task_key, text_key, ctx_key, run_key, model_key, "usage", "prompt_tokens", "completion_tokens"}
    role = row.get("model_role")
    pt, ct = _tokens(row)
    return {
        "timestamp": when,
        "task": _as_text(task),
        "text": _as_text(text),
        "context": _as_text(ctx),
        "model_name": _as_text(model),
        "model_role": role if role in MODEL_ROLES else spec.role,
        "run_id": _as_text(run_id),
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "metadata": {k: v for k, v in row.items() if k not in lifted and k != "model_role"},
    }


def _iterate_session(row: Mapping[str, Any]) -> dict[str, Any]:
    if row.get("schema") != "session.iterate.v1":
        raise SkipRow("not a session.iterate.v1 row")
    artifact = row.get("artifact")
    keep = ("kind", "provider", "iterations", "max_iterations", "final_verdict",
            "grounded_in_roster", "duration_ms", "daemon")
    meta = {k: row[k] for k in keep if k in row}
    attempts = row.get("attempts")
    meta["attempts"] = len(attempts) if isinstance(attempts, list) else 0
    if isinstance(artifact, Mapping):
        meta["artifact"] = dict(artifact)
    return {
        "timestamp": _time(row, ("timestamp",)),
        "task": _as_text(row.get("prompt")),
        "text": _as_text(artifact) if isinstance(artifact, Mapping) else "",
        "model_name": _as_text(row.get("model")),
        "model_role": "executor",
        "run_id": _as_text(row.get("session_id")),
        "metadata": meta,
    }


def _observer_op(row: Mapping[str, Any]) -> dict[str, Any]:
    endpoint = row.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise SkipRow("not an observed op (no endpoint)")
    task = endpoint + (f" {row['input_summary']}" if row.get("input_summary") else "")
    meta = {k: row[k] for k in ("source", "success", "duration_ms", "error", "scenario",
                               "trace_id", "endpoint") if k in row}
    return {
        "timestamp": _time(row, ("timestamp",)),
        "task": task,
        "text": _as_text(row.get("output_summary")),
        "model_role": "observer",
        "run_id": _as_text(row.get("trace_id")),
        "metadata": meta,
    }


def _pathway_trace(row: Mapping[str, Any]) -> dict[str, Any]:
    op = row.get("op")
    trace = row.get("trace")
    if op not in ("add", "revise") or not isinstance(trace, Mapping):
        raise SkipRow(f"pathway {op!r} event carries no new trace")
    content = trace.get("content")
    tags = trace.get("tags") if isinstance(trace.get("tags"), list) else []
    meta: dict[str, Any] = {"op": op, "tags": tags}
    if trace.get("predecessor_uid"):
        meta["predecessor_uid"] = trace["predecessor_uid"]
    if isinstance(content, Mapping):
        # a trace's own confidence / verdict fields are what a scorer reads
        for k in ("confidence", "verdict", "success"):
            if k in content:
                meta[k] = content[k]
    task = ""
    if isinstance(content, Mapping):
        _, task = _first(content, ("task", "question", "query", "title"))
    return {
        "timestamp": _time(trace, ("created_at_ns",)),
        "task": _as_text(task) or " ".join(str(t) for t in tags),
        "text": _as_text(content),
        "model_role": "unknown",
        "run_id": _as_text(trace.get("uid")),
        "metadata": meta,
    }


def _replay_run(row: Mapping[str, Any]) -> dict[str, Any]:
    if row.get("schema") != "replay_run.v1":
        raise SkipRow("not a replay_run.v1 row")
    path = row.get("escalation_path") if isinstance(row.get("escalation_path"), list) else []
    meta = {k: row[k] for k in ("validation", "dry_run", "escalation_path", "task_hash", "kind",
                               "corpus", "duration_ms", "artifact") if k in row}
    meta["retrieved_ids"] = [
        r.get("rag_id") for r in row.get("retrieved") or [] if isinstance(r, Mapping)
    ]
    return {
        "timestamp": _time(row, ("recorded_at",)),
        "task": _as_text(row.get("task")),
        "text": _as_text(row.get("response")),
        "context": _as_text(row.get("context")),
        "model_name": _as_text(row.get("model_used")),
        "model_role": "escalation" if len(path) > 1 else "executor",
        "run_id": _as_text(row.get("recorded_run_id")),
        "metadata": meta,
    }


_OWN: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "iterate_sessions": _iterate_session,
    "observer_ops": _observer_op,
    "pathway_traces": _pathway_trace,
    "replay_runs": _replay_run,
}


def transform(
    source: str, row: Any, *, source_file: str, line_offset: int, recorded_at: str, sig: str
) -> EvidenceRecord:
    """One source row -> its evidence record. Pure: the caller supplies ``recorded_at`` and
    ``sig`` (the row's sig_hash). :class:`SkipRow` when the row cannot be used."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    if not isinstance(row, Mapping):
        raise SkipRow("not a JSON object")
    fields = _OWN[source](row) if source in _OWN else _table_transform(source, row)
    when: datetime = fields.pop("timestamp")
    run_id = fields.pop("run_id") or f"{source}:{sig[:16]}"
    return EvidenceRecord(
        schema_version=EVIDENCE_SCHEMA_VERSION,
        run_id=run_id,
        source=source,
        timestamp=rfc3339(when),
        provenance=Provenance(source_file, line_offset, sig, recorded_at),
        **fields,
    )


# -- the materializer -----------------------------------------------------------------------


def source_paths(root: Path, config: Config | None = None) -> dict[str, Path]:
    """Where each source is read from under ``root``. The project's own logs follow the
    config's paths when it names them relative to the data dir (the defaults otherwise)."""
    paths = {s: root / "_kb" / f"{s}.jsonl" for s in TIER1 + TIER2}
    own = {
        "iterate_sessions": "validator/sessions.jsonl",
        "observer_ops": "observer/ops.jsonl",
        "pathway_traces": "pathway/events.jsonl",
    }
    if config is not None:
        for src, value in (
            ("iterate_sessions", config.validatord.session_log_path),
            ("observer_ops", config.observerd.persist_path),
            ("pathway_traces", config.pathwayd.persist_path),
        ):
            if value:
                own[src] = value
    for src, rel in own.items():
        p = Path(rel)
        paths[src] = p if p.is_absolute() else root / p
    paths["replay_runs"] = root / "_kb" / "replay_runs.jsonl"
    return paths


def existing_sigs(layout: Layout) -> set[str]:
    """Every sig_hash already under ``evidence/`` (decodable rows only)."""
    sigs: set[str] = set()
    for path in layout.day_files(layout.evidence):
        for _, value, _err in iter_jsonl(path):
            if isinstance(value, dict):
                prov = value.get("provenance")
                if isinstance(prov, dict) and isinstance(prov.get("sig_hash"), str):
                    sigs.add(prov["sig_hash"])
    return sigs


def materialize(
    root: Path | str,
    *,
    config: Config | None = None,
    sources: list[str] | None = None,
    recorded_at: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    save_receipt: bool = True,
) -> Receipt:
    """Materialize every (or the named) source under ``root``; the receipt.

    ``ValueError`` for an unknown source name. Missing source files are not errors (counted
    as ``missing`` in the receipt).
    """
    layout = Layout.of(root)
    chosen = list(sources) if sources else list(SOURCES)
    for s in chosen:
        if s not in SOURCES:
            raise ValueError(f"unknown source {s!r} (known: {', '.join(SOURCES)})")
    recorded_at = recorded_at or now_rfc3339()
    receipt = Receipt("materialize")
    seen = existing_sigs(layout)
    paths = source_paths(layout.root, config)
    per_source: dict[str, dict[str, int]] = {}
    unchanged = 0
    touched: set[Path] = set()
    for source in chosen:
        path = paths[source]
        counts = per_source[source] = {"read": 0, "written": 0, "skipped": 0, "unchanged": 0}
        if not path.is_file():
            counts["missing"] = 1
            continue
        receipt.add_input(path)
        out: dict[Path, list[dict[str, Any]]] = {}
        try:
            rel = str(path.relative_to(layout.root))
        except ValueError:
            rel = str(path)
        for offset, value, err in iter_jsonl(path):
            receipt.read += 1
            counts["read"] += 1
            if progress is not None and receipt.read % 500 == 0:
                progress(source, receipt.read)
            if err:
                receipt.skip(err, f"{rel}:{offset}")
                counts["skipped"] += 1
                continue
            sig = sig_hash(value) if isinstance(value, dict) else ""
            try:
                rec = transform(
                    source, value, source_file=rel, line_offset=offset, recorded_at=recorded_at, sig=sig
                )
            except SkipRow as exc:
                receipt.skip(str(exc), f"{rel}:{offset}")
                counts["skipped"] += 1
                continue
            if sig in seen:
                unchanged += 1
                counts["unchanged"] += 1
                continue
            seen.add(sig)
            when = parse_time(rec.timestamp) or datetime.now(UTC)
            target = day_dir(layout.evidence, when) / f"{source}.jsonl"
            out.setdefault(target, []).append(rec.to_json())
            counts["written"] += 1
        for target, rows in out.items():
            receipt.written += append_jsonl(target, rows)
            touched.add(target)
    for target in sorted(touched):
        receipt.add_output(target)
    receipt.counts = {"unchanged": unchanged, "sources": per_source}
    if save_receipt:
        receipt.save(layout)
    return receipt


def load_evidence(
    root: Path | str, *, receipt: Receipt | None = None
) -> dict[str, EvidenceRecord]:
    """Every valid evidence record under ``root`` by sig_hash (first one wins). Rows that do
    not decode or carry another schema version are rejected and counted on ``receipt``."""
    layout = Layout.of(root)
    out: dict[str, EvidenceRecord] = {}
    for path in layout.day_files(layout.evidence):
        for offset, value, err in iter_jsonl(path):
            if receipt is not None:
                receipt.read += 1
            if err:
                if receipt is not None:
                    receipt.skip(f"evidence: {err}", f"{path}:{offset}")
                continue
            try:
                if not isinstance(value, dict):
                    raise ValueError("not a JSON object")
                rec = decode_evidence(value)
            except ValueError as exc:
                if receipt is not None:
                    receipt.skip(f"evidence: {str(exc).split(':')[0]}", f"{path}:{offset}")
                continue
            out.setdefault(rec.sig_hash, rec)
    return out
