"""Playbook memory: recording approved answers (contract sections 9.7 and 9.8).

A playbook corpus is an ordinary vectord index (default ``playbook_memory``, one per
coordinator if callers like: ``playbook_alice``). An entry's vector is the embedding of its
``query_text``; its metadata is the entry itself::

    {"query_text", "answer_id", "answer_corpus", "score", "tags", "role", "recorded_at"}

Its id is :func:`lakehouse.matrix.ranking.playbook_id` of ``(query_text, answer_id,
answer_corpus)``, so recording the same triple again replaces the entry (the last score
wins). The corpus is created on first use with the embedding's dimension (cosine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from ..bodycheck import explain_value
from ..clients.base import UpstreamError
from ..web import ApiError
from .context import MatrixContext, check_corpus_name, upstream_failure
from .ranking import playbook_id
from .types import BulkRequest, RecordRequest

__all__ = ["PlaybookEntry", "check_record", "parse_entry", "record", "record_bulk"]


@dataclass(frozen=True)
class PlaybookEntry:
    """A recorded entry as read back from a playbook corpus hit."""

    query_text: str
    answer_id: str
    answer_corpus: str
    score: float
    role: str


def parse_entry(metadata: Any) -> PlaybookEntry | None:
    """The entry in a hit's metadata; None when it is not a usable entry (such a hit is
    ignored: a playbook corpus written by hand must not break searches)."""
    if not isinstance(metadata, Mapping):
        return None
    answer_id = metadata.get("answer_id")
    corpus = metadata.get("answer_corpus")
    score = metadata.get("score")
    role = metadata.get("role") or ""
    query = metadata.get("query_text") or ""
    if not isinstance(answer_id, str) or not answer_id:
        return None
    if not isinstance(corpus, str) or not corpus:
        return None
    if isinstance(score, bool) or not isinstance(score, int | float):
        return None
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        return None
    if not isinstance(role, str) or not isinstance(query, str):
        return None
    return PlaybookEntry(query, answer_id, corpus, float(score), role)


def check_record(req: RecordRequest) -> None:
    """ValueError naming the first invalid field (a 400, or one failed bulk entry)."""
    if not req.query_text.strip():
        raise ValueError("query_text must not be empty")
    if not req.answer_id:
        raise ValueError("answer_id must not be empty")
    if not req.answer_corpus:
        raise ValueError("answer_corpus must not be empty")
    check_corpus_name(req.answer_corpus, "answer_corpus")
    if req.playbook_corpus:
        check_corpus_name(req.playbook_corpus, "playbook_corpus")
    if not (math.isfinite(req.score) and 0.0 <= req.score <= 1.0):
        raise ValueError(f"score must be within [0, 1], got {req.score}")


def _entry_metadata(req: RecordRequest, recorded_at: str) -> dict[str, Any]:
    return {
        "query_text": req.query_text,
        "answer_id": req.answer_id,
        "answer_corpus": req.answer_corpus,
        "score": req.score,
        "tags": list(req.tags),
        "role": req.role,
        "recorded_at": recorded_at,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def ensure_corpus(ctx: MatrixContext, name: str, dimension: int, trace_id: str | None) -> None:
    """Create the playbook corpus if needed; 400 when it exists with another dimension
    (the entry was embedded by a different model than the corpus's)."""
    known = ctx.known_dims.get(name)
    if known is None:
        try:
            info = await ctx.vectord.create(
                name, dimension, distance="cosine", exist_ok=True, trace_id=trace_id
            )
        except UpstreamError as exc:
            raise upstream_failure(f"playbook corpus {name!r}", exc) from None
        known = int(info.get("dimension", dimension))
        ctx.known_dims[name] = known
    if known != dimension:
        raise ApiError.bad_request(
            f"playbook corpus {name!r} holds {known}-d vectors, the embedding has {dimension} "
            "(record with the model the corpus was made with, or use another playbook_corpus)"
        )


async def _add(
    ctx: MatrixContext,
    corpus: str,
    ids: list[str],
    vectors: np.ndarray,
    metadata: list[dict[str, Any]],
    trace_id: str | None,
) -> None:
    await ensure_corpus(ctx, corpus, int(vectors.shape[1]), trace_id)
    ctx.calibrator.invalidate(corpus)  # the playbook changes: calibrate again on next use
    try:
        await ctx.vectord.add(corpus, ids, vectors, metadata, trace_id=trace_id)
    except UpstreamError as exc:
        if exc.status == 404:
            # dropped since we cached it: create it again, once
            ctx.known_dims.pop(corpus, None)
            await ensure_corpus(ctx, corpus, int(vectors.shape[1]), trace_id)
            try:
                await ctx.vectord.add(corpus, ids, vectors, metadata, trace_id=trace_id)
                return
            except UpstreamError as again:
                exc = again
        raise upstream_failure(f"playbook corpus {corpus!r}", exc) from None


async def record(ctx: MatrixContext, req: RecordRequest, trace_id: str | None) -> dict[str, Any]:
    """``POST /matrix/playbooks/record`` -> ``{playbook_id, playbook_corpus}``."""
    try:
        check_record(req)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    corpus = req.playbook_corpus or ctx.settings.playbook_corpus
    pid = playbook_id(req.query_text, req.answer_id, req.answer_corpus)
    _, vectors = await ctx.embed([req.query_text], req.model, trace_id)
    await _add(ctx, corpus, [pid], vectors, [_entry_metadata(req, _now())], trace_id)
    return {"playbook_id": pid, "playbook_corpus": corpus}


async def record_bulk(ctx: MatrixContext, req: BulkRequest, trace_id: str | None) -> dict[str, Any]:
    """``POST /matrix/playbooks/bulk``: each entry recorded or failed on its own.

    -> ``{results: [{index, playbook_id, playbook_corpus} | {index, error}], recorded,
    failed}``. Entries are embedded together per model and added together per corpus; a
    failing upstream call fails exactly the entries it carried.
    """
    if req.playbook_corpus and req.corpus and req.playbook_corpus != req.corpus:
        raise ApiError.bad_request("playbook_corpus and corpus disagree: give one of them")
    if len(req.entries) > ctx.settings.max_bulk_entries:
        raise ApiError.bad_request(
            f"too many entries: {len(req.entries)} > {ctx.settings.max_bulk_entries}"
        )
    batch_corpus = req.playbook_corpus or req.corpus or ctx.settings.playbook_corpus
    try:
        check_corpus_name(batch_corpus, "playbook_corpus" if req.playbook_corpus else "corpus")
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    results: list[dict[str, Any] | None] = [None] * len(req.entries)
    valid: list[tuple[int, RecordRequest, str]] = []
    for i, raw in enumerate(req.entries):
        try:
            entry = msgspec.convert(raw, RecordRequest, strict=True)
            check_record(entry)
        except msgspec.ValidationError:
            results[i] = {"index": i, "error": explain_value(RecordRequest, raw) or "not a playbook entry"}
            continue
        except ValueError as exc:
            results[i] = {"index": i, "error": str(exc)}
            continue
        valid.append((i, entry, entry.playbook_corpus or batch_corpus))

    recorded_at = _now()
    by_model: dict[str, list[tuple[int, RecordRequest, str]]] = {}
    for item in valid:
        by_model.setdefault(item[1].model, []).append(item)
    # grouped by (corpus, model): one add per group, vectors of one dimension
    by_corpus: dict[tuple[str, str], list[tuple[int, RecordRequest, np.ndarray]]] = {}
    for model, items in by_model.items():
        try:
            _, vectors = await ctx.embed([e.query_text for _, e, _ in items], model, trace_id)
        except ApiError as exc:
            for i, _, _ in items:
                results[i] = {"index": i, "error": exc.message}
            continue
        for (i, entry, corpus), vec in zip(items, vectors, strict=True):
            by_corpus.setdefault((corpus, model), []).append((i, entry, vec))

    for (corpus, _), items in by_corpus.items():
        ids = [playbook_id(e.query_text, e.answer_id, e.answer_corpus) for _, e, _ in items]
        try:
            await _add(
                ctx,
                corpus,
                ids,
                np.stack([v for _, _, v in items]),
                [_entry_metadata(e, recorded_at) for _, e, _ in items],
                trace_id,
            )
        except ApiError as exc:
            for i, _, _ in items:
                results[i] = {"index": i, "error": exc.message}
            continue
        for (i, _, _), pid in zip(items, ids, strict=True):
            results[i] = {"index": i, "playbook_id": pid, "playbook_corpus": corpus}

    final = [r for r in results if r is not None]
    failed = sum(1 for r in final if "error" in r)
    return {"results": final, "recorded": len(final) - failed, "failed": failed}
