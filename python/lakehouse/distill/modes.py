"""observerd workflow modes for the distillation steps (``distill.*``).

Each runs one stage on observerd's data directory (``ModeServices.data_dir``), off the event
loop, and returns the stage's receipt (or report / row) as the node's output, so a workflow
can chain ``materialize -> score -> export -> promote -> audit`` and refer to the counts
(``$score.output.counts.totals.accepted``). ``distill.promote`` and ``distill.replay`` call
matrixd (and chatd) through the daemon's clients; replay's gate here is the built-in one
(non-empty answer), as observerd has no validatord client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from ..memory.workflow import ModeContext, ModeError, ModeRegistry, _typed
from . import audit, evidence, export, promote, replay, scored

__all__ = ["register_distill_modes", "MODE_NAMES"]


def _root(ctx: ModeContext, mode: str) -> Path:
    root = getattr(ctx.services, "data_dir", "")
    if not root:
        raise ModeError(f"{mode}: no data directory configured")
    return Path(root)


class _MaterializeInputs(msgspec.Struct, forbid_unknown_fields=True):
    sources: list[str] | None = None


async def mode_materialize(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{sources?}`` -> the materialize receipt."""
    req = _typed(inputs, _MaterializeInputs, "distill.materialize")
    root = _root(ctx, "distill.materialize")
    try:
        r = await asyncio.to_thread(evidence.materialize, root, sources=req.sources)
    except ValueError as exc:
        raise ModeError(f"distill.materialize: {exc}") from exc
    return r.to_json()


class _Empty(msgspec.Struct, forbid_unknown_fields=True):
    pass


async def mode_score(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{}`` -> the score receipt."""
    _typed(inputs, _Empty, "distill.score")
    r = await asyncio.to_thread(scored.score, _root(ctx, "distill.score"))
    return r.to_json()


class _ExportInputs(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    include_partial: bool = False


async def mode_export(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{kind: sft|rag|preference, include_partial?}`` -> the export receipt."""
    req = _typed(inputs, _ExportInputs, "distill.export")
    root = _root(ctx, "distill.export")
    try:
        r = await asyncio.to_thread(export.export, root, req.kind, include_partial=req.include_partial)
    except ValueError as exc:
        raise ModeError(f"distill.export: {exc}") from exc
    return r.to_json()


class _AuditInputs(msgspec.Struct, forbid_unknown_fields=True):
    threshold: float = audit.DEFAULT_DRIFT_WARN_THRESHOLD
    record: bool = True


async def mode_audit(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{threshold?, record?}`` -> the audit report (checks, baseline, drift table)."""
    req = _typed(inputs, _AuditInputs, "distill.audit")
    root = _root(ctx, "distill.audit")
    try:
        report = await asyncio.to_thread(
            audit.run_audit, root, threshold=req.threshold, record=req.record
        )
    except ValueError as exc:
        raise ModeError(f"distill.audit: {exc}") from exc
    return report.to_json()


class _PromoteInputs(msgspec.Struct, forbid_unknown_fields=True):
    answer_corpus: str
    playbook_corpus: str = "playbook_memory"
    role: str = ""
    dry_run: bool = False


async def mode_promote(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{answer_corpus, playbook_corpus?, role?, dry_run?}`` -> the promote receipt."""
    req = _typed(inputs, _PromoteInputs, "distill.promote")
    root = _root(ctx, "distill.promote")
    matrixd = ctx.services.matrixd
    if matrixd is None and not req.dry_run:
        raise ModeError("distill.promote: no matrixd configured")

    async def bulk(entries: list[dict[str, Any]], corpus: str) -> dict[str, Any]:
        return await matrixd.record_bulk(entries, playbook_corpus=corpus, trace_id=ctx.trace_id)

    try:
        r = await promote.promote(
            root, None if req.dry_run else bulk, answer_corpus=req.answer_corpus,
            playbook_corpus=req.playbook_corpus, role=req.role, dry_run=req.dry_run,
        )
    except ValueError as exc:
        raise ModeError(f"distill.promote: {exc}") from exc
    return r.to_json()


class _ServicesBackend:
    """Replay through observerd's matrixd and chatd clients."""

    def __init__(self, ctx: ModeContext) -> None:
        self.ctx = ctx

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.ctx.services.matrixd is None:
            raise ModeError("distill.replay: no matrixd configured")
        return await self.ctx.services.matrixd.search(body, trace_id=self.ctx.trace_id)

    async def chat(self, model: str, messages: list[dict[str, str]], max_tokens: int | None) -> str:
        if self.ctx.services.chatd is None:
            raise ModeError("distill.replay: no chatd configured")
        answer = await self.ctx.services.chatd.chat(
            model, messages, max_tokens=max_tokens, trace_id=self.ctx.trace_id
        )
        return str(answer.get("content") or "")

    async def validate(self, kind: str, artifact: dict[str, Any], context: dict[str, Any]) -> tuple[bool, list[str]]:
        raise ModeError("distill.replay: no validatord here (leave kind empty)")


class _ReplayInputs(msgspec.Struct, forbid_unknown_fields=True):
    task: str
    corpus: str = "rag"
    k: int = 5
    model: str = ""
    escalation_model: str = ""
    allow_escalation: bool = False
    local_only: bool = False
    no_retrieval: bool = False
    dry_run: bool = False


async def mode_replay(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{task, corpus?, k?, model?, ...}`` -> the ``replay_run.v1`` row (also logged)."""
    req = _typed(inputs, _ReplayInputs, "distill.replay")
    root = _root(ctx, "distill.replay")
    rr = replay.ReplayRequest(
        task=req.task, corpus=req.corpus, k=req.k,
        local_model=req.model or ctx.model or ctx.services.default_model,
        escalation_model=req.escalation_model, allow_escalation=req.allow_escalation,
        local_only=req.local_only, no_retrieval=req.no_retrieval, dry_run=req.dry_run,
    )
    try:
        return await replay.replay(_ServicesBackend(ctx), rr, root)
    except ValueError as exc:
        raise ModeError(f"distill.replay: {exc}") from exc


_MODES = {
    "distill.materialize": mode_materialize,
    "distill.score": mode_score,
    "distill.export": mode_export,
    "distill.replay": mode_replay,
    "distill.promote": mode_promote,
    "distill.audit": mode_audit,
}
MODE_NAMES = tuple(_MODES)


def register_distill_modes(registry: ModeRegistry) -> ModeRegistry:
    """Add the ``distill.*`` modes to ``registry`` (observerd does, at start)."""
    for name, fn in _MODES.items():
        registry.register(name, fn)
    return registry
