"""Promotion: accepted outcomes back into the playbook (the loop of SPEC section 1).

An outcome is promotable when its scored run is ``accepted`` (current scorer version), its
evidence comes from a replay run or a validatord iterate session, and its artifact names
workers: ``fills[].candidate_id`` (a fill) or ``candidate_id``. Each (task, worker) becomes
one playbook entry ``{query_text: task, answer_id: worker, answer_corpus, score: 1.0}``
recorded through ``/v1/matrix/playbooks/bulk``.

Idempotent by the playbook id rule (``sha256(query \\x1f answer_id \\x1f corpus)[:32]``):
matrixd upserts by that id, and ``_kb/promotions.jsonl`` remembers what was promoted into
which playbook corpus, so a second run sends nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from ..matrix.ranking import playbook_id
from .common import Layout, Receipt, append_jsonl, iter_jsonl, now_rfc3339
from .evidence import EvidenceRecord, load_evidence
from .scored import load_scored
from .scoring import ACCEPTED

__all__ = ["PROMOTABLE_SOURCES", "candidates", "promote", "BATCH"]

PROMOTABLE_SOURCES = ("replay_runs", "iterate_sessions")
BATCH = 100

RecordBulk = Callable[[list[dict[str, Any]], str], Awaitable[dict[str, Any]]]


def _workers(artifact: Any) -> list[str]:
    if not isinstance(artifact, Mapping):
        return []
    ids: list[str] = []
    fills = artifact.get("fills")
    if isinstance(fills, list):
        for f in fills:
            if isinstance(f, Mapping) and isinstance(f.get("candidate_id"), str):
                ids.append(f["candidate_id"].strip())
    if isinstance(artifact.get("candidate_id"), str):
        ids.append(artifact["candidate_id"].strip())
    return list(dict.fromkeys(i for i in ids if i))


def candidates(
    root: Path | str,
    *,
    answer_corpus: str,
    role: str = "",
    receipt: Receipt | None = None,
) -> list[dict[str, Any]]:
    """The playbook entries the accepted outcomes under ``root`` give (deduplicated by
    playbook id, in time order), each with its ``playbook_id`` and ``source_run_id``."""
    evidence = load_evidence(root)
    out: dict[str, dict[str, Any]] = {}
    rows = sorted(load_scored(root).values(), key=lambda r: (str(r.get("timestamp")), r["sig_hash"]))
    for row in rows:
        if row.get("source") not in PROMOTABLE_SOURCES:
            continue
        if receipt is not None:
            receipt.read += 1
        rec: EvidenceRecord | None = evidence.get(row["sig_hash"])
        if row["category"] != ACCEPTED:
            if receipt is not None:
                receipt.skip(f"not accepted ({row['category']})")
            continue
        if rec is None:
            if receipt is not None:
                receipt.skip("evidence missing")
            continue
        workers = _workers(rec.metadata.get("artifact"))
        task = rec.task.strip()
        if not task or not workers:
            if receipt is not None:
                receipt.skip("no task" if not task else "the answer names no worker")
            continue
        for w in workers:
            pid = playbook_id(task, w, answer_corpus)
            entry = {"query_text": task, "answer_id": w, "answer_corpus": answer_corpus,
                     "score": 1.0, "tags": ["distill", rec.source]}
            if role:
                entry["role"] = role
            out.setdefault(pid, {"playbook_id": pid, "source_run_id": rec.run_id, "entry": entry})
    return list(out.values())


def promoted_ids(root: Path | str, playbook_corpus: str) -> set[str]:
    ids = set()
    for _, row, err in iter_jsonl(Layout.of(root).promotions):
        if not err and isinstance(row, dict) and row.get("playbook_corpus") == playbook_corpus:
            ids.add(str(row.get("playbook_id")))
    return ids


async def promote(
    root: Path | str,
    record_bulk: RecordBulk | None,
    *,
    answer_corpus: str,
    playbook_corpus: str,
    role: str = "",
    dry_run: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Receipt:
    """Record the promotable entries not yet promoted into ``playbook_corpus``; the receipt
    (``counts``: candidates, already promoted, recorded, failed, and the errors).

    ``record_bulk(entries, playbook_corpus)`` is matrixd's bulk route (None with ``dry_run``).
    """
    if not answer_corpus.strip() or not playbook_corpus.strip():
        raise ValueError("answer_corpus and playbook_corpus must not be empty")
    layout = Layout.of(root)
    receipt = Receipt("promote")
    found = candidates(layout.root, answer_corpus=answer_corpus, role=role, receipt=receipt)
    done = set() if force else promoted_ids(layout.root, playbook_corpus)
    todo = [c for c in found if c["playbook_id"] not in done]
    already = len(found) - len(todo)
    recorded: list[dict[str, Any]] = []
    errors: list[str] = []
    if not dry_run:
        if record_bulk is None:
            raise ValueError("record_bulk is required unless dry_run")
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            answer = await record_bulk([c["entry"] for c in batch], playbook_corpus)
            for res in answer.get("results") or []:
                i = res.get("index")
                if not isinstance(i, int) or not 0 <= i < len(batch):
                    continue
                if "error" in res:
                    errors.append(f"{batch[i]['entry']['answer_id']}: {res['error']}")
                elif res.get("playbook_id") != batch[i]["playbook_id"]:
                    errors.append(
                        f"{batch[i]['entry']['answer_id']}: matrixd answered id "
                        f"{res.get('playbook_id')}, expected {batch[i]['playbook_id']}"
                    )
                else:
                    recorded.append(batch[i])
            if progress is not None:
                progress(min(start + BATCH, len(todo)), len(todo))
        now = now_rfc3339()
        append_jsonl(
            layout.promotions,
            (
                {
                    "playbook_id": c["playbook_id"],
                    "playbook_corpus": playbook_corpus,
                    "query_text": c["entry"]["query_text"],
                    "answer_id": c["entry"]["answer_id"],
                    "answer_corpus": answer_corpus,
                    "source_run_id": c["source_run_id"],
                    "promoted_at": now,
                }
                for c in recorded
            ),
        )
    receipt.written = len(recorded)
    receipt.counts = {
        "candidates": len(found),
        "already_promoted": already,
        "to_promote": len(todo),
        "recorded": len(recorded),
        "failed": len(errors),
        "errors": errors[:20],
        "dry_run": dry_run,
        "entries": [c["entry"] for c in todo[:50]] if dry_run else [],
    }
    # one outcome may give several entries (one per worker): the verdict is "nothing failed"
    receipt.valid = not errors
    receipt.save(layout)
    return receipt
