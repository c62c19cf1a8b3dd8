"""Replay (contract 14.4): a task -> retrieval from the RAG corpus -> context bundle ->
local model -> validation gate -> escalation when allowed -> one ``replay_run.v1`` row in
``_kb/replay_runs.jsonl``.

The RAG corpus is a matrixd corpus built from ``exports/rag/playbooks.jsonl``
(:func:`build_rag_corpus`: the export is ingested as a dataset through ingestd, then
matrixd's corpus builder embeds it), so retrieval is a plain ``/v1/matrix/search``.

Invariants (the reference's): retrieval is never bypassed unless ``no_retrieval`` (a
retrieval failure fails the run, it does not fall back to no context); provenance is kept
(each retrieved artifact names its ``rag_id`` and ``source_run_id``); the validation gate
always runs; every run is logged, failures and dry runs included. A model that fails is a
failed validation (``local call failed: ...``), never an exception.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson

from ..clients.base import ServiceClient, UpstreamError
from ..validation.extract import extract_json
from .common import Layout, append_jsonl, iter_jsonl, now_rfc3339

__all__ = [
    "REPLAY_SCHEMA",
    "PREVIEW_CHARS",
    "ReplayRequest",
    "ReplayBackend",
    "GatewayBackend",
    "build_context",
    "replay",
    "build_rag_corpus",
    "RAG_COLUMNS",
]

REPLAY_SCHEMA = "replay_run.v1"
PREVIEW_CHARS = 240
#: how much of each retrieved artifact goes into the prompt
PROMPT_CHARS = 1200
RESPONSE_CHARS = 4000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RAG_COLUMNS = ("id", "title", "content", "tags", "source_run_id", "success_score", "source_category")


@dataclass
class ReplayRequest:
    task: str
    local_only: bool = False
    allow_escalation: bool = False
    no_retrieval: bool = False
    dry_run: bool = False
    local_model: str = ""
    escalation_model: str = ""
    corpus: str = "rag"
    k: int = 5
    #: validatord kind (fill / email / playbook) for the gate; "" = the built-in checks
    kind: str = ""
    #: validatord context (target_count, city, ...)
    context: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None

    def validate(self) -> None:
        if not self.task.strip():
            raise ValueError("task: must not be empty")
        if not 1 <= self.k <= 100:
            raise ValueError("k: must be 1..100")
        if not self.dry_run and not self.local_model:
            raise ValueError("local model: not set (give --model or set [models].local_fast)")
        if self.kind and self.kind not in ("fill", "email", "playbook"):
            raise ValueError("kind: one of fill, email, playbook (or empty)")


class ReplayBackend(Protocol):
    async def search(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def chat(self, model: str, messages: list[dict[str, str]], max_tokens: int | None) -> str: ...
    async def validate(self, kind: str, artifact: dict[str, Any], context: dict[str, Any]) -> tuple[bool, list[str]]: ...


class GatewayBackend:
    """Retrieval, chat and validation through the gateway's ``/v1`` routes."""

    def __init__(self, session: aiohttp.ClientSession, gateway_url: str, timeout: float = 300.0):
        self.client = ServiceClient(session, gateway_url, "gateway", timeout)

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.post("/v1/matrix/search", body)

    async def chat(self, model: str, messages: list[dict[str, str]], max_tokens: int | None) -> str:
        body: dict[str, Any] = {"model": model, "messages": messages}
        if max_tokens:
            body["max_tokens"] = max_tokens
        answer = await self.client.post("/v1/chat", body)
        return str((answer or {}).get("content") or "")

    async def validate(
        self, kind: str, artifact: dict[str, Any], context: dict[str, Any]
    ) -> tuple[bool, list[str]]:
        body = {"kind": kind, "artifact": artifact, "context": context}
        try:
            await self.client.post("/v1/validate", body)
        except UpstreamError as exc:
            if exc.status == 422:
                return False, [orjson.dumps(exc.body).decode() if exc.body is not None else exc.message]
            raise
        return True, []


def _artifact(hit: Mapping[str, Any]) -> dict[str, Any]:
    md = hit.get("metadata") if isinstance(hit.get("metadata"), Mapping) else {}
    tags = md.get("tags")
    if isinstance(tags, str):
        tags = [t for t in tags.split(";") if t]
    content = str(md.get("content") or "")
    return {
        "rag_id": str(md.get("id") or hit.get("id") or ""),
        "source_run_id": str(md.get("source_run_id") or ""),
        "title": str(md.get("title") or ""),
        "content_preview": content[:PREVIEW_CHARS],
        "success_score": str(md.get("success_score") or ""),
        "tags": list(tags) if isinstance(tags, list) else [],
        "score": float(hit.get("distance", 0.0)),
        "_content": content,
    }


def build_context(task: str, retrieved: list[dict[str, Any]]) -> str:
    """The context bundle's text: the retrieved artifacts, most similar first."""
    if not retrieved:
        return ""
    parts = ["Prior accepted answers for similar tasks (most similar first):"]
    for i, a in enumerate(retrieved, 1):
        parts.append(f"[{i}] {a['title']} (run {a['source_run_id'] or '?'}, {a['success_score']})")
        parts.append(a["_content"][:PROMPT_CHARS])
    return "\n".join(parts)


def _messages(req: ReplayRequest, context: str) -> list[dict[str, str]]:
    system = (
        "You are a staffing co-pilot. Answer the task. Prior accepted answers to similar "
        "tasks are given as context: reuse what applies, and do not invent workers."
    )
    if req.kind:
        system += " Respond with exactly one JSON object and nothing else."
    user = f"{context}\n\nTask: {req.task}" if context else f"Task: {req.task}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def _gate(
    backend: ReplayBackend, req: ReplayRequest, response: str
) -> tuple[bool, list[str], dict[str, Any] | None]:
    """The validation gate (built-in checks, then validatord when ``kind`` is set)."""
    if not response.strip():
        return False, ["empty response"], None
    artifact = extract_json(response)
    if not req.kind:
        return True, [], artifact
    if artifact is None:
        return False, ["no JSON object in the response"], None
    try:
        ok, reasons = await backend.validate(req.kind, artifact, dict(req.context))
    except UpstreamError as exc:
        return False, [f"validation call failed: {exc}"], artifact
    return ok, reasons, artifact


async def replay(
    backend: ReplayBackend, req: ReplayRequest, root: Path | str | None = None
) -> dict[str, Any]:
    """Run one replay and append its row under ``root`` (None: do not log); the row.

    ``ValueError`` for a request that cannot run (empty task, no model); every other
    failure (retrieval, model, validation) is recorded in the row.
    """
    req.validate()
    t0 = time.perf_counter()
    recorded_at = now_rfc3339()
    retrieved: list[dict[str, Any]] = []
    reasons: list[str] = []
    passed = False
    response = ""
    artifact: dict[str, Any] | None = None
    model_used = ""
    path: list[str] = []
    retrieval_ok = True
    if not req.no_retrieval:
        body = {"query_text": req.task, "corpora": [req.corpus], "k": req.k}
        try:
            answer = await backend.search(body)
            retrieved = [_artifact(h) for h in answer.get("results") or [] if isinstance(h, Mapping)]
        except UpstreamError as exc:
            retrieval_ok = False
            reasons = [f"retrieval failed: {exc}"]
    context = build_context(req.task, retrieved)
    # a failed retrieval fails the run as it is: never a fallback to no context
    if retrieval_ok and req.dry_run:
        reasons = ["dry run: no model called"]
    elif retrieval_ok:
        messages = _messages(req, context)
        models = [req.local_model]
        if req.allow_escalation and not req.local_only and req.escalation_model:
            models.append(req.escalation_model)
        for i, model in enumerate(models):
            who = "local" if i == 0 else "escalation"
            path.append(model)
            model_used = model
            try:
                response = await backend.chat(model, messages, req.max_tokens)
            except UpstreamError as exc:
                reasons.append(f"{who} call failed: {exc}")
                response = ""
                continue
            ok, why, artifact = await _gate(backend, req, response)
            if ok:
                passed = True
                break
            reasons += [f"{who}: {w}" for w in why]
    row: dict[str, Any] = {
        "schema": REPLAY_SCHEMA,
        "recorded_at": recorded_at,
        "recorded_run_id": hashlib.sha256(recorded_at.encode()).hexdigest(),
        "task": req.task,
        "task_hash": hashlib.sha256(req.task.encode()).hexdigest(),
        "corpus": "" if req.no_retrieval else req.corpus,
        "kind": req.kind,
        "model_used": model_used,
        "escalation_path": path,
        "retrieved": [{k: v for k, v in a.items() if not k.startswith("_")} for a in retrieved],
        "context": context,
        "response": response[:RESPONSE_CHARS],
        "validation": {"passed": passed, "reasons": [] if passed else reasons},
        "duration_ms": round((time.perf_counter() - t0) * 1000.0, 3),
        "dry_run": req.dry_run,
        "local_only": req.local_only,
        "no_retrieval": req.no_retrieval,
    }
    if passed and artifact is not None:
        row["artifact"] = artifact
    if root is not None:
        append_jsonl(Layout.of(root).replay_runs, [row])
    return row


def load_replay_runs(root: Path | str) -> list[dict[str, Any]]:
    """Every well-formed ``replay_run.v1`` row, in file order."""
    return [
        row for _, row, err in iter_jsonl(Layout.of(root).replay_runs)
        if not err and isinstance(row, dict) and row.get("schema") == REPLAY_SCHEMA
    ]


def rag_csv(root: Path | str) -> tuple[bytes, int]:
    """The RAG export as CSV (``tags`` joined by ``;``) and its row count."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RAG_COLUMNS)
    n = 0
    for _, row, err in iter_jsonl(Layout.of(root).rag):
        if err or not isinstance(row, dict):
            continue
        cells = []
        for col in RAG_COLUMNS:
            v = row.get(col, "")
            cells.append(";".join(map(str, v)) if isinstance(v, list) else str(v))
        w.writerow(cells)
        n += 1
    return buf.getvalue().encode(), n


async def build_rag_corpus(
    session: aiohttp.ClientSession,
    gateway_url: str,
    root: Path | str,
    *,
    name: str = "rag",
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Ingest the RAG export as dataset ``name`` (ingestd) and build the matrixd corpus of
    the same name from it (replacing an older one); matrixd's build report, plus ``rows``.

    ``ValueError`` when the export is missing or empty (run ``distill export rag`` first).
    """
    if not _IDENT.match(name):
        raise ValueError(f"corpus name must be a plain identifier (letters, digits, _), got {name!r}")
    data, n = rag_csv(root)
    if n == 0:
        raise ValueError("the RAG export is empty or missing: run 'lakehouse distill export rag'")
    client = ServiceClient(session, gateway_url, "gateway", timeout)
    await client.request(
        "POST", f"/v1/ingest?name={name}", raw=data, content_type="text/csv"
    )
    report = await client.post(
        "/v1/matrix/corpus/build",
        {
            "name": name,
            "sql": f"SELECT * FROM {name}",
            "id_column": "id",
            "text_template": "{title}\n{content}",
            "metadata_columns": list(RAG_COLUMNS),
            "replace": True,
        },
    )
    out = dict(report or {})
    out["rows"] = n
    return out
