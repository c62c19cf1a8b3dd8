"""The exports (contract 14.3): SFT, RAG and preference pairs from scored runs + evidence,
behind the contamination firewall.

* **SFT** ``exports/sft/instruction_response.jsonl``: ``accepted`` runs, and
  ``partially_accepted`` only with ``include_partial``. ``rejected`` and
  ``needs_human_review`` never (:data:`~lakehouse.distill.scoring.SFT_NEVER`): the writer
  checks every sample again and raises :class:`SftContamination` rather than write one.
  A sample whose instruction or response has no non-whitespace character is refused.
* **RAG** ``exports/rag/playbooks.jsonl``: accepted and partially accepted runs with text.
* **Preference** ``exports/preference/pairs.jsonl``: for one task, a chosen (accepted) and a
  rejected answer whose run ids and texts differ.

What is held back goes to ``exports/quarantine/<kind>.jsonl`` with the reason. Each export
rewrites its file whole (atomic rename): the output is a function of the scored runs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .common import Layout, Receipt, write_jsonl_atomic
from .evidence import EvidenceRecord, load_evidence
from .scored import load_scored
from .scoring import (
    ACCEPTED,
    PARTIALLY_ACCEPTED,
    REJECTED,
    SFT_NEVER,
    sft_allowed,
)

__all__ = [
    "SFT_SAMPLE_SCHEMA_VERSION",
    "KINDS",
    "SftContamination",
    "build_instruction",
    "sft_samples",
    "rag_samples",
    "preference_pairs",
    "export",
    "MAX_PAIRS_PER_TASK",
]

SFT_SAMPLE_SCHEMA_VERSION = 1
KINDS = ("sft", "rag", "preference")
MAX_PAIRS_PER_TASK = 10
RAG_CATEGORIES = (ACCEPTED, PARTIALLY_ACCEPTED)

#: source -> how the record's task becomes an instruction (contract 14.3 leaves it [NF])
_TEMPLATES = {
    "distilled_facts": "State the fact about: {task}",
    "distilled_procedures": "Describe the procedure for: {task}",
    "distilled_config_hints": "Give the configuration hint for: {task}",
    "contract_analyses": "Analyse the contract: {task}",
    "scrum_reviews": "Review this change: {task}",
    "audits": "Audit: {task}",
    "audit_facts": "Audit: {task}",
    "observer_reviews": "Review this operation: {task}",
    "observer_escalations": "Review this operation: {task}",
    "auto_apply": "Propose a fix for: {task}",
}


class SftContamination(ValueError):
    """A sample of a category the firewall forbids reached the SFT writer (ErrSftContamination)."""


def build_instruction(rec: EvidenceRecord) -> str:
    """The instruction for a record: its task, framed by its source's template ("" when the
    record has no task, so the empty-pair guard refuses it)."""
    task = rec.task.strip()
    if not task:
        return ""
    return _TEMPLATES.get(rec.source, "{task}").format(task=task)


def _id(kind: str, sig: str) -> str:
    return hashlib.sha256(f"{kind}\x1f{sig}".encode()).hexdigest()[:32]


def _joined(
    root: Path, receipt: Receipt
) -> Iterable[tuple[dict[str, Any], EvidenceRecord | None]]:
    """Current-version scored rows in time order, each with its evidence (None: missing)."""
    evidence = load_evidence(root)
    rows = sorted(load_scored(root).values(), key=lambda r: (str(r.get("timestamp")), r["sig_hash"]))
    for row in rows:
        receipt.read += 1
        yield row, evidence.get(row["sig_hash"])


def _held(row: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "sig_hash": row["sig_hash"],
        "source_run_id": row.get("run_id", ""),
        "source": row.get("source", ""),
        "category": row["category"],
        "reason": reason,
    }


def _check_sft(sample: dict[str, Any], include_partial: bool) -> dict[str, Any]:
    q = sample["quality_score"]
    if q in SFT_NEVER or not sft_allowed(q, include_partial):
        raise SftContamination(f"SFT sample {sample['id']} has quality_score {q!r}")
    if not sample["instruction"].strip() or not sample["response"].strip():
        raise SftContamination(f"SFT sample {sample['id']} has an empty instruction or response")
    return sample


def sft_samples(
    root: Path | str, *, include_partial: bool = False, receipt: Receipt | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(samples, quarantined)`` for the SFT export."""
    receipt = receipt or Receipt("export_sft")
    samples: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for row, rec in _joined(Path(root), receipt):
        cat = row["category"]
        if rec is None:
            held.append(_held(row, "evidence missing"))
        elif not sft_allowed(cat, include_partial):
            why = "firewall: never exported" if cat in SFT_NEVER else "partial without --include-partial"
            held.append(_held(row, f"{why} ({cat})"))
        else:
            instruction, response = build_instruction(rec), rec.text.strip()
            if not instruction.strip() or not response:
                held.append(_held(row, "empty instruction or response"))
                continue
            samples.append(
                {
                    "schema_version": SFT_SAMPLE_SCHEMA_VERSION,
                    "id": _id("sft", rec.sig_hash),
                    "instruction": instruction,
                    "context": rec.context or "",
                    "response": response,
                    "source_run_id": rec.run_id,
                    "quality_score": cat,
                    "created_at": rec.timestamp,
                    "provenance": {
                        "source_file": rec.provenance.source_file,
                        "line_offset": rec.provenance.line_offset,
                        "sig_hash": rec.provenance.sig_hash,
                        "recorded_at": rec.provenance.recorded_at,
                    },
                }
            )
    return samples, held


def _tags(rec: EvidenceRecord) -> list[str]:
    tags = [rec.source, rec.model_role]
    extra = rec.metadata.get("tags")
    if isinstance(extra, list):
        tags += [t for t in extra if isinstance(t, str) and t]
    kind = rec.metadata.get("kind")
    if isinstance(kind, str) and kind:
        tags.append(kind)
    return list(dict.fromkeys(tags))


def rag_samples(
    root: Path | str, *, receipt: Receipt | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(samples, quarantined)`` for the RAG export (accepted and partial runs with text)."""
    receipt = receipt or Receipt("export_rag")
    samples: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for row, rec in _joined(Path(root), receipt):
        cat = row["category"]
        if rec is None:
            held.append(_held(row, "evidence missing"))
        elif cat not in RAG_CATEGORIES:
            held.append(_held(row, f"not a success ({cat})"))
        elif not rec.text.strip():
            held.append(_held(row, "empty content"))
        else:
            title = " ".join(rec.task.split())[:200] or f"{rec.source} {rec.run_id}"
            samples.append(
                {
                    "id": _id("rag", rec.sig_hash),
                    "title": title,
                    "content": rec.text.strip(),
                    "tags": _tags(rec),
                    "source_run_id": rec.run_id,
                    "success_score": cat,
                    "source_category": rec.source,
                }
            )
    return samples, held


def _norm_task(task: str) -> str:
    return re.sub(r"\s+", " ", task).strip().lower()


def preference_pairs(
    root: Path | str, *, include_partial: bool = False, receipt: Receipt | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(pairs, refused)``: for each task, chosen x rejected answers whose run ids and
    texts differ (at most :data:`MAX_PAIRS_PER_TASK` per task, in time order)."""
    receipt = receipt or Receipt("export_preference")
    good_cats = RAG_CATEGORIES if include_partial else (ACCEPTED,)
    groups: dict[str, tuple[list[EvidenceRecord], list[EvidenceRecord]]] = {}
    cats: dict[str, str] = {}
    for row, rec in _joined(Path(root), receipt):
        if rec is None or not rec.task.strip() or not rec.text.strip():
            continue
        side = 0 if row["category"] in good_cats else 1 if row["category"] == REJECTED else None
        if side is None:
            continue
        cats[rec.sig_hash] = row["category"]
        groups.setdefault(_norm_task(rec.task), ([], []))[side].append(rec)
    pairs: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for _task, (chosen, rejected) in sorted(groups.items()):
        n = 0
        for c in chosen:
            for r in rejected:
                if n >= MAX_PAIRS_PER_TASK:
                    break
                why = (
                    "same run id" if c.run_id == r.run_id
                    else "same text" if c.text.strip() == r.text.strip()
                    else ""
                )
                if why:
                    refused.append(
                        {"chosen_sig_hash": c.sig_hash, "rejected_sig_hash": r.sig_hash, "reason": why}
                    )
                    continue
                n += 1
                pairs.append(
                    {
                        "schema_version": 1,
                        "id": _id("pref", f"{c.sig_hash}:{r.sig_hash}"),
                        "prompt": c.task.strip(),
                        "chosen": c.text.strip(),
                        "rejected": r.text.strip(),
                        "chosen_run_id": c.run_id,
                        "rejected_run_id": r.run_id,
                        "chosen_score": cats[c.sig_hash],
                        "rejected_score": cats[r.sig_hash],
                        "source_category": c.source,
                    }
                )
    return pairs, refused


def export(
    root: Path | str, kind: str, *, include_partial: bool = False, save_receipt: bool = True
) -> Receipt:
    """Write one export (``sft``, ``rag`` or ``preference``) and its quarantine; the receipt."""
    if kind not in KINDS:
        raise ValueError(f"export kind must be one of {', '.join(KINDS)}, got {kind!r}")
    layout = Layout.of(root)
    receipt = Receipt(f"export_{kind}")
    if kind == "sft":
        rows, held = sft_samples(layout.root, include_partial=include_partial, receipt=receipt)
        rows = [_check_sft(s, include_partial) for s in rows]
        target = layout.sft
    elif kind == "rag":
        rows, held = rag_samples(layout.root, receipt=receipt)
        target = layout.rag
    else:
        rows, held = preference_pairs(layout.root, include_partial=include_partial, receipt=receipt)
        target = layout.preference
        # pairs are not one per scored row: the verdict is "every pair passed the checks"
        receipt.valid = all(
            p["chosen_run_id"] != p["rejected_run_id"] and p["chosen"] != p["rejected"] for p in rows
        )
    receipt.written = write_jsonl_atomic(target, rows)
    write_jsonl_atomic(layout.quarantine(kind), held)
    for h in held:
        receipt.skip(h["reason"].split(" (")[0])
    receipt.add_output(target)
    receipt.counts.update(
        kind=kind, include_partial=include_partial, rows=len(rows), quarantined=len(held)
    )
    if save_receipt:
        receipt.save(layout)
    return receipt
