"""Distillation scoring (contract section 14.1): one evidence record -> one category.

Categories: ``accepted``, ``partially_accepted``, ``rejected``, ``needs_human_review``;
:data:`SCORER_VERSION` is ``v1.0.0``. The reference dispatches each record by its class to one
of eight scorers (we add three for the stack's own logs); ADR-001 asks for the *logic*, not
bit-identical output, and the reference's rule tables were not readable, so the rules below
are our reading, written down so that a reader can check them against their data:

=================  ===================================  =========================================
class              sources (``record["source"]``)       rule
=================  ===================================  =========================================
verdict            scrum_reviews                        ``scrum_review``: the ``verdict`` word
verdict            observer_reviews,                    ``observer_review``: the ``verdict``
                   observer_escalations                 word; an escalation without one needs a
                                                        human
verdict            audits, audit_facts                  ``audit_severity`` when the record has
                                                        ``findings`` or ``severity`` (worst
                                                        severity decides), else ``audit_legacy``
                                                        (the ``passed`` flag)
telemetry          auto_apply                           ``auto_apply``: applied, not reverted,
                                                        tests not failed -> accepted
telemetry          outcomes                             ``outcomes``: ``success`` flag or
                                                        ``outcome`` word
telemetry          mode_experiments                     ``mode_experiment``: ``score`` in [0, 1]
                                                        (>= 0.8 / >= 0.5 / below); an ``error``
                                                        rejects
extraction         distilled_facts,                     ``extraction``: empty text rejects;
                   distilled_procedures,                ``confidence`` >= 0.8 accepted, >= 0.5
                   distilled_config_hints,              partial, below -> human review; no
                   contract_analyses,                   confidence -> partial
                   pathway_traces
telemetry          iterate_sessions                     ``iterate_session``: validatord's
                                                        ``final_verdict``: accepted (and not
                                                        ``grounded_in_roster: false``) ->
                                                        accepted; max_iter_exhausted ->
                                                        rejected; infra_error -> human review
telemetry          replay_runs                          ``replay``: a dry run -> human review;
                                                        ``validation.passed`` -> accepted, else
                                                        rejected
telemetry          observer_ops                         ``observed_op``: a failed op -> rejected;
                                                        a successful one -> partially_accepted
                                                        (an op that worked is not a reviewed
                                                        answer: SFT only with --include-partial)
=================  ===================================  =========================================

A field is read from the record itself, else from its ``metadata`` bucket. Verdict words
(case-insensitive): accept / accepted / approve / approved / pass / passed / lgtm / ship ->
accepted; accept_with_changes / approve_with_changes / partial / partially_accepted /
minor_changes / warn -> partially_accepted; reject / rejected / block / blocked / fail /
failed / request_changes -> rejected; anything else, or none, -> needs_human_review. A record
whose source has no scorer also goes to needs_human_review (never silently accepted).

Also here: the SFT firewall of section 14.3 (:data:`SFT_NEVER`, :func:`sft_allowed`), the
scored-run dedup key ``sig_hash:scorer_version`` and the canonical ``sig_hash`` of 14.2.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ACCEPTED",
    "PARTIALLY_ACCEPTED",
    "REJECTED",
    "NEEDS_HUMAN_REVIEW",
    "CATEGORIES",
    "SCORER_VERSION",
    "SFT_NEVER",
    "Score",
    "score_record",
    "sft_allowed",
    "dedup_key",
    "sig_hash",
    "SOURCE_SCORERS",
]

ACCEPTED = "accepted"
PARTIALLY_ACCEPTED = "partially_accepted"
REJECTED = "rejected"
NEEDS_HUMAN_REVIEW = "needs_human_review"
CATEGORIES = (ACCEPTED, PARTIALLY_ACCEPTED, REJECTED, NEEDS_HUMAN_REVIEW)
SCORER_VERSION = "v1.0.0"
#: categories never exported as SFT samples (IsSftNever)
SFT_NEVER = frozenset({REJECTED, NEEDS_HUMAN_REVIEW})

_VERDICTS = {
    **dict.fromkeys(
        ("accept", "accepted", "approve", "approved", "pass", "passed", "lgtm", "ship"), ACCEPTED
    ),
    **dict.fromkeys(
        (
            "accept_with_changes",
            "approve_with_changes",
            "partial",
            "partially_accepted",
            "minor_changes",
            "warn",
        ),
        PARTIALLY_ACCEPTED,
    ),
    **dict.fromkeys(
        (
            "reject",
            "rejected",
            "block",
            "blocked",
            "fail",
            "failed",
            "request_changes",
        ),
        REJECTED,
    ),
}
#: audit severities, worst first, and the category the worst one gives
_SEVERITY = {
    "critical": REJECTED,
    "blocker": REJECTED,
    "block": REJECTED,
    "high": REJECTED,
    "medium": PARTIALLY_ACCEPTED,
    "warn": PARTIALLY_ACCEPTED,
    "warning": PARTIALLY_ACCEPTED,
    "low": ACCEPTED,
    "info": ACCEPTED,
    "none": ACCEPTED,
}
_SEVERITY_RANK = {REJECTED: 2, PARTIALLY_ACCEPTED: 1, ACCEPTED: 0}


@dataclass(frozen=True)
class Score:
    """A scoring decision."""

    category: str
    #: the scorer that decided (e.g. ``scrum_review``), "" when none applied
    scorer: str
    #: verdict / telemetry / extraction, "" when unknown
    record_class: str
    reasons: tuple[str, ...]
    scorer_version: str = SCORER_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "scorer": self.scorer,
            "record_class": self.record_class,
            "reasons": list(self.reasons),
            "scorer_version": self.scorer_version,
        }


def _field(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    meta = record.get("metadata")
    return meta.get(name) if isinstance(meta, Mapping) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _verdict(record: Mapping[str, Any]) -> tuple[str, str]:
    raw = _field(record, "verdict")
    if not isinstance(raw, str) or not raw.strip():
        return NEEDS_HUMAN_REVIEW, "no verdict"
    word = raw.strip().lower().replace("-", "_").replace(" ", "_")
    category = _VERDICTS.get(word)
    if category is None:
        return NEEDS_HUMAN_REVIEW, f"unrecognised verdict {raw!r}"
    return category, f"verdict {raw!r}"


def _score_scrum_review(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    cat, why = _verdict(r)
    return cat, [why]


def _score_observer_review(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    cat, why = _verdict(r)
    if _field(r, "verdict") is None and _field(r, "escalated") is True:
        return NEEDS_HUMAN_REVIEW, ["escalated without a verdict"]
    return cat, [why]


def _score_audit_legacy(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    passed = _field(r, "passed")
    if passed is True:
        return ACCEPTED, ["audit passed"]
    if passed is False:
        return REJECTED, ["audit failed"]
    return NEEDS_HUMAN_REVIEW, ["audit without a passed flag"]


def _score_audit_severity(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    severities: list[Any] = []
    findings = _field(r, "findings")
    if isinstance(findings, list):
        severities += [f.get("severity") if isinstance(f, Mapping) else None for f in findings]
    if _field(r, "severity") is not None:
        severities.append(_field(r, "severity"))
    worst, reasons = ACCEPTED, []
    for sev in severities:
        cat = _SEVERITY.get(str(sev).lower()) if isinstance(sev, str) else None
        if cat is None:
            return NEEDS_HUMAN_REVIEW, [f"unknown severity {sev!r}"]
        if _SEVERITY_RANK[cat] > _SEVERITY_RANK[worst]:
            worst = cat
    reasons.append(f"{len(severities)} finding(s), worst -> {worst}")
    return worst, reasons


def _score_auto_apply(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    applied = _field(r, "applied")
    if applied is True:
        if _field(r, "reverted") is True:
            return REJECTED, ["applied, then reverted"]
        if _field(r, "tests_passed") is False:
            return REJECTED, ["applied, tests failed"]
        return ACCEPTED, ["applied and kept"]
    if applied is False:
        if _field(r, "error"):
            return REJECTED, [f"not applied: {_field(r, 'error')}"]
        return NEEDS_HUMAN_REVIEW, ["not applied, no error given"]
    return NEEDS_HUMAN_REVIEW, ["no applied flag"]


def _score_outcomes(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    success = _field(r, "success")
    if isinstance(success, bool):
        return (ACCEPTED if success else REJECTED), [f"success={success}"]
    outcome = _field(r, "outcome")
    words = {"success": ACCEPTED, "partial": PARTIALLY_ACCEPTED, "failure": REJECTED}
    if isinstance(outcome, str) and outcome.lower() in words:
        return words[outcome.lower()], [f"outcome {outcome!r}"]
    return NEEDS_HUMAN_REVIEW, ["no success flag or known outcome"]


def _score_mode_experiment(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    if _field(r, "error"):
        return REJECTED, [f"error: {_field(r, 'error')}"]
    score = _number(_field(r, "score"))
    if score is None or not 0.0 <= score <= 1.0:
        return NEEDS_HUMAN_REVIEW, ["no score in [0, 1]"]
    if score >= 0.8:
        return ACCEPTED, [f"score {score:g} >= 0.8"]
    if score >= 0.5:
        return PARTIALLY_ACCEPTED, [f"score {score:g} >= 0.5"]
    return REJECTED, [f"score {score:g} < 0.5"]


def _score_extraction(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    text = _field(r, "text")
    if text is None:
        text = _field(r, "content")
    if not isinstance(text, str) or not text.strip():
        return REJECTED, ["empty extraction text"]
    confidence = _number(_field(r, "confidence"))
    if confidence is None:
        return PARTIALLY_ACCEPTED, ["no confidence given"]
    if confidence >= 0.8:
        return ACCEPTED, [f"confidence {confidence:g} >= 0.8"]
    if confidence >= 0.5:
        return PARTIALLY_ACCEPTED, [f"confidence {confidence:g} >= 0.5"]
    return NEEDS_HUMAN_REVIEW, [f"confidence {confidence:g} < 0.5"]


def _score_iterate_session(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    verdict = _field(r, "final_verdict")
    if verdict == "accepted":
        if _field(r, "grounded_in_roster") is False:
            return REJECTED, ["accepted but not grounded in the roster"]
        return ACCEPTED, ["validatord accepted the artifact"]
    if verdict == "max_iter_exhausted":
        return REJECTED, ["no accepted artifact within max_iterations"]
    if verdict == "infra_error":
        return NEEDS_HUMAN_REVIEW, ["the session failed on infrastructure, not on content"]
    return NEEDS_HUMAN_REVIEW, [f"unknown final_verdict {verdict!r}"]


def _score_replay(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    if _field(r, "dry_run") is True:
        return NEEDS_HUMAN_REVIEW, ["dry run: no model answered"]
    validation = _field(r, "validation")
    passed = validation.get("passed") if isinstance(validation, Mapping) else None
    if passed is True:
        return ACCEPTED, ["replay validation passed"]
    if passed is False:
        reasons = validation.get("reasons") if isinstance(validation, Mapping) else None
        first = reasons[0] if isinstance(reasons, list) and reasons else "no reason given"
        return REJECTED, [f"replay validation failed: {first}"]
    return NEEDS_HUMAN_REVIEW, ["no validation result"]


def _score_observed_op(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    success = _field(r, "success")
    if success is True:
        return PARTIALLY_ACCEPTED, ["op succeeded (not a reviewed answer)"]
    if success is False:
        return REJECTED, ["op failed"]
    return NEEDS_HUMAN_REVIEW, ["no success flag"]


_Scorer = Callable[[Mapping[str, Any]], tuple[str, list[str]]]

#: source -> (record class, scorer name); audits pick legacy or severity per record
SOURCE_SCORERS: dict[str, tuple[str, str]] = {
    "scrum_reviews": ("verdict", "scrum_review"),
    "observer_reviews": ("verdict", "observer_review"),
    "observer_escalations": ("verdict", "observer_review"),
    "audits": ("verdict", "audit"),
    "audit_facts": ("verdict", "audit"),
    "auto_apply": ("telemetry", "auto_apply"),
    "outcomes": ("telemetry", "outcomes"),
    "mode_experiments": ("telemetry", "mode_experiment"),
    "distilled_facts": ("extraction", "extraction"),
    "distilled_procedures": ("extraction", "extraction"),
    "distilled_config_hints": ("extraction", "extraction"),
    "contract_analyses": ("extraction", "extraction"),
    "pathway_traces": ("extraction", "extraction"),
    "iterate_sessions": ("telemetry", "iterate_session"),
    "replay_runs": ("telemetry", "replay"),
    "observer_ops": ("telemetry", "observed_op"),
}

_SCORERS: dict[str, _Scorer] = {
    "scrum_review": _score_scrum_review,
    "observer_review": _score_observer_review,
    "audit_legacy": _score_audit_legacy,
    "audit_severity": _score_audit_severity,
    "auto_apply": _score_auto_apply,
    "outcomes": _score_outcomes,
    "mode_experiment": _score_mode_experiment,
    "extraction": _score_extraction,
    "iterate_session": _score_iterate_session,
    "replay": _score_replay,
    "observed_op": _score_observed_op,
}


def score_record(record: Mapping[str, Any]) -> Score:
    """Score one evidence record (a mapping with at least ``source``).

    ``ValueError`` when ``record`` is not a mapping. An unknown or missing source is not an
    error: it scores ``needs_human_review`` with the reason.
    """
    if not isinstance(record, Mapping):
        raise ValueError("record: expected a JSON object")
    source = record.get("source")
    if not isinstance(source, str) or source not in SOURCE_SCORERS:
        return Score(NEEDS_HUMAN_REVIEW, "", "", (f"no scorer for source {source!r}",))
    record_class, name = SOURCE_SCORERS[source]
    if name == "audit":
        has_severity = _field(record, "findings") is not None or _field(record, "severity") is not None
        name = "audit_severity" if has_severity else "audit_legacy"
    category, reasons = _SCORERS[name](record)
    return Score(category, name, record_class, tuple(reasons))


def sft_allowed(category: str, include_partial: bool = False) -> bool:
    """May a record of this category become an SFT sample? (never rejected / human review)"""
    if category in SFT_NEVER:
        return False
    return category == ACCEPTED or (include_partial and category == PARTIALLY_ACCEPTED)


def sig_hash(row: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical (key-sorted, compact) JSON of a source row."""
    return hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).hexdigest()


def dedup_key(sig: str) -> str:
    """The scored-run dedup key ``sig_hash:scorer_version``."""
    return f"{sig}:{SCORER_VERSION}"
