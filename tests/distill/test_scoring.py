"""Distillation scoring: dispatch by source, the class scorers, the SFT firewall."""

from __future__ import annotations

import pytest

from lakehouse.distill.scoring import (
    CATEGORIES,
    SCORER_VERSION,
    SFT_NEVER,
    dedup_key,
    score_record,
    sft_allowed,
    sig_hash,
)


@pytest.mark.parametrize(
    "record, category, scorer",
    [
        ({"source": "scrum_reviews", "verdict": "Approved"}, "accepted", "scrum_review"),
        ({"source": "scrum_reviews", "verdict": "request changes"}, "rejected", "scrum_review"),
        ({"source": "scrum_reviews", "verdict": "accept-with-changes"}, "partially_accepted", "scrum_review"),
        ({"source": "scrum_reviews", "verdict": "hmm"}, "needs_human_review", "scrum_review"),
        ({"source": "scrum_reviews"}, "needs_human_review", "scrum_review"),
        ({"source": "observer_reviews", "metadata": {"verdict": "pass"}}, "accepted", "observer_review"),
        ({"source": "observer_escalations", "escalated": True}, "needs_human_review", "observer_review"),
        ({"source": "audits", "passed": True}, "accepted", "audit_legacy"),
        ({"source": "audits", "passed": False}, "rejected", "audit_legacy"),
        ({"source": "audits"}, "needs_human_review", "audit_legacy"),
        ({"source": "audit_facts", "findings": [{"severity": "low"}, {"severity": "HIGH"}]}, "rejected", "audit_severity"),
        ({"source": "audits", "findings": [{"severity": "medium"}, {"severity": "info"}]}, "partially_accepted", "audit_severity"),
        ({"source": "audits", "findings": []}, "accepted", "audit_severity"),
        ({"source": "audits", "severity": "weird"}, "needs_human_review", "audit_severity"),
        ({"source": "auto_apply", "applied": True}, "accepted", "auto_apply"),
        ({"source": "auto_apply", "applied": True, "reverted": True}, "rejected", "auto_apply"),
        ({"source": "auto_apply", "applied": True, "tests_passed": False}, "rejected", "auto_apply"),
        ({"source": "auto_apply", "applied": False, "error": "conflict"}, "rejected", "auto_apply"),
        ({"source": "auto_apply", "applied": False}, "needs_human_review", "auto_apply"),
        ({"source": "outcomes", "success": True}, "accepted", "outcomes"),
        ({"source": "outcomes", "outcome": "partial"}, "partially_accepted", "outcomes"),
        ({"source": "outcomes", "success": "yes"}, "needs_human_review", "outcomes"),
        ({"source": "mode_experiments", "score": 0.8}, "accepted", "mode_experiment"),
        ({"source": "mode_experiments", "score": 0.5}, "partially_accepted", "mode_experiment"),
        ({"source": "mode_experiments", "score": 0.49}, "rejected", "mode_experiment"),
        ({"source": "mode_experiments", "score": 1.5}, "needs_human_review", "mode_experiment"),
        ({"source": "mode_experiments", "score": True}, "needs_human_review", "mode_experiment"),
        ({"source": "mode_experiments", "score": 0.9, "error": "timeout"}, "rejected", "mode_experiment"),
        ({"source": "distilled_facts", "text": "OSHA-30 needed", "confidence": 0.9}, "accepted", "extraction"),
        ({"source": "distilled_procedures", "text": "step", "confidence": 0.6}, "partially_accepted", "extraction"),
        ({"source": "contract_analyses", "content": "x", "confidence": 0.2}, "needs_human_review", "extraction"),
        ({"source": "distilled_config_hints", "text": "x"}, "partially_accepted", "extraction"),
        ({"source": "distilled_facts", "text": "   "}, "rejected", "extraction"),
    ],
)
def test_scorers(record, category, scorer):
    s = score_record(record)
    assert (s.category, s.scorer) == (category, scorer)
    assert s.category in CATEGORIES and s.reasons and s.scorer_version == SCORER_VERSION


def test_unknown_source_needs_a_human():
    for record in ({"source": "tea_leaves"}, {}, {"source": 3}):
        s = score_record(record)
        assert s.category == "needs_human_review" and s.scorer == "" and "no scorer" in s.reasons[0]
    with pytest.raises(ValueError):
        score_record(["not", "a", "record"])  # type: ignore[arg-type]


def test_sft_firewall_pins_the_never_set():
    assert {"rejected", "needs_human_review"} == SFT_NEVER
    assert sft_allowed("accepted") and not sft_allowed("partially_accepted")
    assert sft_allowed("partially_accepted", include_partial=True)
    for c in SFT_NEVER:
        assert not sft_allowed(c, include_partial=True)


def test_sig_hash_is_canonical_and_dedup_key():
    assert sig_hash({"b": 1, "a": [1, 2]}) == sig_hash({"a": [1, 2], "b": 1})
    assert len(sig_hash({})) == 64
    assert dedup_key("abc") == "abc:v1.0.0"


@pytest.mark.parametrize(
    "record, category, scorer",
    [
        ({"source": "iterate_sessions", "metadata": {"final_verdict": "accepted"}}, "accepted", "iterate_session"),
        ({"source": "iterate_sessions", "metadata": {"final_verdict": "accepted", "grounded_in_roster": False}},
         "rejected", "iterate_session"),
        ({"source": "iterate_sessions", "metadata": {"final_verdict": "max_iter_exhausted"}}, "rejected", "iterate_session"),
        ({"source": "iterate_sessions", "metadata": {"final_verdict": "infra_error"}}, "needs_human_review", "iterate_session"),
        ({"source": "iterate_sessions", "metadata": {}}, "needs_human_review", "iterate_session"),
        ({"source": "replay_runs", "metadata": {"validation": {"passed": True}}}, "accepted", "replay"),
        ({"source": "replay_runs", "metadata": {"validation": {"passed": False, "reasons": ["x"]}}}, "rejected", "replay"),
        ({"source": "replay_runs", "metadata": {"dry_run": True, "validation": {"passed": False}}},
         "needs_human_review", "replay"),
        ({"source": "replay_runs", "metadata": {}}, "needs_human_review", "replay"),
        ({"source": "observer_ops", "metadata": {"success": True}}, "partially_accepted", "observed_op"),
        ({"source": "observer_ops", "metadata": {"success": False}}, "rejected", "observed_op"),
        ({"source": "observer_ops"}, "needs_human_review", "observed_op"),
        ({"source": "pathway_traces", "text": "{}", "metadata": {"confidence": 0.95}}, "accepted", "extraction"),
    ],
)
def test_the_scorers_of_the_stacks_own_logs(record, category, scorer):
    s = score_record(record)
    assert (s.category, s.scorer) == (category, scorer) and s.reasons
