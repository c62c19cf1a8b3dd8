"""Validation of model output against the roster, and the generate -> validate -> correct loop.

* :mod:`.report`: :class:`ValidationError` (the reference's externally tagged wire form)
  and :class:`Report`;
* :mod:`.workers`: the worker roster (tolerant JSONL rows, case-insensitive ids);
* :mod:`.roster_source`: where the roster comes from (a file, or a dataset through queryd)
  and reloading it;
* :mod:`.validators`: the fill, email and playbook validators and :func:`validate`;
* :mod:`.extract`: :func:`extract_json`;
* :mod:`.iterate`: :func:`run_iterate`, the loop behind ``/iterate``;
* :mod:`.session_log`: the ``session.iterate.v1`` JSONL log.

validatord (``services/validatord.py``) only wires these to HTTP.
"""

from __future__ import annotations

from .extract import extract_json, extract_json_report
from .iterate import (
    ChatFailure,
    IterateOutcome,
    IterateRequest,
    compose_model,
    run_iterate,
)
from .report import Finding, Report, ValidationError
from .roster_source import RosterSource, RosterUnavailable, load_dataset_roster
from .session_log import SCHEMA, SessionLog
from .validators import (
    KINDS,
    UnknownKind,
    contains_salary_disclosure,
    contains_ssn_pattern,
    grounded_in_roster,
    inject_context,
    validate,
    validate_email,
    validate_fill,
    validate_playbook,
)
from .workers import Worker, WorkerRoster, parse_worker

__all__ = [
    "KINDS",
    "SCHEMA",
    "ChatFailure",
    "Finding",
    "IterateOutcome",
    "IterateRequest",
    "Report",
    "RosterSource",
    "RosterUnavailable",
    "SessionLog",
    "UnknownKind",
    "ValidationError",
    "Worker",
    "WorkerRoster",
    "compose_model",
    "contains_salary_disclosure",
    "contains_ssn_pattern",
    "extract_json",
    "extract_json_report",
    "grounded_in_roster",
    "inject_context",
    "load_dataset_roster",
    "parse_worker",
    "run_iterate",
    "validate",
    "validate_email",
    "validate_fill",
    "validate_playbook",
]
