"""Every rule of the fill, email and playbook validators (contract section 13.3), the
ValidationError wire form (13.2) and the roster's tolerant rows."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.validation.report import Report, ValidationError, rust_debug
from lakehouse.validation.validators import (
    UnknownKind,
    contains_salary_disclosure,
    contains_ssn_pattern,
    grounded_in_roster,
    inject_context,
    validate,
)
from lakehouse.validation.workers import WorkerRoster, parse_worker

ROWS = [
    {"candidate_id": "W-1", "name": "Donald Green", "role": "Welder", "city": "Toledo", "state": "OH",
     "status": "active"},
    {"candidate_id": "W-2", "name": "Ana Ruiz", "role": "Welder", "city": "Toledo", "state": "OH",
     "status": "active", "blacklisted_clients": ["C-9"]},
    {"worker_id": 3, "name": "Lee Park", "role": "Welder", "city": "Louisville", "state": "KY",
     "availability": 2},
    {"candidate_id": "W-4", "name": "Sam Ode", "role": "Welder", "city": "Toledo", "state": "OH",
     "status": "inactive"},
    {"candidate_id": "w-5", "name": "Kim Lo", "role": "Forklift Operator", "city": "Toledo",
     "state": "OH"},
    {"candidate_id": "W-6", "name": "Val Ng", "role": None, "city": None, "state": "OH"},
]


@pytest.fixture
def roster() -> WorkerRoster:
    return WorkerRoster.from_rows(ROWS)


def fail(kind, artifact, roster, context=None) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(kind, artifact, roster, context)
    return info.value


def wire(exc: ValidationError) -> str:
    return exc.to_json().decode("utf-8")


# -- the six parity cases of section 13.2 (byte-exact) ---------------------------------------

PLAYBOOK_OK = {
    "operation": "fill: Welder x1 in Toledo, OH",
    "endorsed_names": ["Donald Green"],
    "target_count": 1,
    "fingerprint": "fp-1",
}


def test_parity_playbook_happy(roster):
    report = validate("playbook", PLAYBOOK_OK, roster)
    assert report.to_json()["findings"] == [] and report.validator == "staffing.playbook"


@pytest.mark.parametrize(
    "change, body",
    [
        ({"fingerprint": None},
         '{"Schema":{"field":"fingerprint","reason":"missing — required for Phase 25 validity window"}}'),
        ({"operation": "sms_draft: hello"},
         '{"Schema":{"field":"operation","reason":"expected `fill: ...` prefix, got \\"sms_draft: hello\\""}}'),
        ({"endorsed_names": []},
         '{"Completeness":{"reason":"endorsed_names must be non-empty"}}'),
        ({"endorsed_names": ["A", "B", "C"]},
         '{"Completeness":{"reason":"endorsed_names (3) exceeds target_count × 2 (2)"}}'),
    ],
    ids=["missing_fingerprint", "wrong_prefix", "empty_endorsed", "overfull"],
)
def test_parity_playbook_failures_byte_exact(roster, change, body):
    artifact = {k: v for k, v in {**PLAYBOOK_OK, **change}.items() if v is not None}
    exc = fail("playbook", artifact, roster)
    assert exc.to_json() == body.encode("utf-8")  # UTF-8 em dash and ×, no \u escapes


def test_parity_fill_phantom_byte_exact(roster):
    exc = fail("fill", {"fills": [{"candidate_id": "W-FAKE-99999", "name": "Nobody"}]}, roster)
    assert exc.to_json() == (
        b'{"Consistency":{"reason":"fills[0].candidate_id \'W-FAKE-99999\' does not exist in '
        b'worker roster"}}'
    )


# -- ValidationError wire form ------------------------------------------------------------------


def test_wire_forms_and_legacy_flat_form():
    cases = [
        ValidationError.schema("x", "y"),
        ValidationError.completeness("y"),
        ValidationError.consistency("y"),
        ValidationError.policy("y"),
    ]
    assert [wire(c) for c in cases] == [
        '{"Schema":{"field":"x","reason":"y"}}',
        '{"Completeness":{"reason":"y"}}',
        '{"Consistency":{"reason":"y"}}',
        '{"Policy":{"reason":"y"}}',
    ]
    for c in cases:
        assert ValidationError.from_wire(orjson.loads(c.to_json())) == c
    legacy = ValidationError.from_wire({"Kind": "schema", "Field": "x", "Reason": "y"})
    assert legacy == cases[0]
    assert ValidationError.from_wire({"Kind": "policy", "Reason": "y"}) == cases[3]
    for bad in [{"Nope": {"reason": "y"}}, {"Schema": {"reason": "y"}}, {"Kind": "weird", "Reason": "y"},
                [], {"Policy": {"reason": 1}}, {"Policy": {}, "Schema": {}}]:
        with pytest.raises(ValueError):
            ValidationError.from_wire(bad)
    with pytest.raises(ValueError):
        ValidationError("Bogus", "y")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ValidationError("Schema", "y")
    assert str(cases[0]) == "Schema error on x: y"


@given(st.sampled_from(["Schema", "Completeness", "Consistency", "Policy"]), st.text(), st.text())
def test_wire_round_trip(category, reason, field):
    exc = ValidationError(category, reason, field if category == "Schema" else None)
    assert ValidationError.from_wire(orjson.loads(exc.to_json())) == exc


def test_rust_debug_quoting():
    assert rust_debug('sms_draft: "hi"\n\\') == '"sms_draft: \\"hi\\"\\n\\\\"'
    assert rust_debug("café ×") == '"café ×"'
    assert rust_debug("\x07") == '"\\u{7}"'


# -- roster ---------------------------------------------------------------------------------------


def test_roster_rows_are_tolerant(roster, tmp_path: Path):
    assert len(roster) == 6
    assert roster.get("w-1").name == "Donald Green"  # case-insensitive
    assert roster.get(" W-5 ").role == "Forklift Operator"
    assert roster.get("W-3").city == "Louisville"  # int worker_id -> W-<id>
    assert roster.get("W-4").active is False and roster.get("W-4").status == "inactive"
    assert roster.get("W-6").city is None and roster.get("W-6").active is True
    assert "C-9".casefold() in roster.get("W-2").blacklisted_clients
    assert parse_worker({"name": "no id"}) is None
    assert parse_worker({"id": True}) is None
    for row, active in [
        ({"id": "a", "availability": 0}, False),
        ({"id": "a", "availability": 0.5}, True),
        ({"id": "a", "availability": "On assignment"}, False),
        ({"id": "a", "availability": "Immediate"}, True),
        ({"id": "a", "active": False}, False),
        ({"id": "a", "status": "Available"}, True),
        ({"id": "a", "status": "terminated", "availability": 3}, False),  # status first
    ]:
        assert parse_worker(row).active is active, row
    assert parse_worker({"id": "a", "first_name": "Jo", "last_name": "Doe"}).name == "Jo Doe"
    path = tmp_path / "roster.jsonl"
    path.write_bytes(
        b'{"candidate_id": "W-1", "name": "First"}\n\nnot json\n[1, 2]\n{"name": "no id"}\n'
        b'{"candidate_id": "w-1", "name": "Second"}\n'
    )
    loaded = WorkerRoster.load(path)
    assert len(loaded) == 1 and loaded.skipped == 3
    assert loaded.get("W-1").name == "Second"  # a later row replaces an earlier one
    with pytest.raises(OSError):
        WorkerRoster.load(tmp_path / "missing.jsonl")


def test_roster_reads_gen_roster_csv(tmp_path: Path):
    from lakehouse.roster import write_roster

    buf = io.StringIO()
    write_roster(buf, 200, seed=3)
    path = tmp_path / "workers.csv"
    path.write_text(buf.getvalue())
    roster = WorkerRoster.load(path)
    assert len(roster) == 200 and roster.skipped == 0
    first = roster.get("W-00001")
    assert first is not None and first.city and first.state and first.role
    statuses = {roster.get(f"w-{i:05d}").active for i in range(1, 201)}
    assert statuses == {True, False}  # "On assignment" rows are inactive


# -- fill -----------------------------------------------------------------------------------------

CTX = {"target_count": 1, "city": "Toledo", "state": "OH", "role": "Welder", "client_id": "C-1"}


def fills(*ids, names=None):
    names = names or ["Donald Green"] * len(ids)
    return {"fills": [{"candidate_id": i, "name": n} for i, n in zip(ids, names, strict=True)]}


def test_fill_happy_path(roster):
    report = validate("fill", fills("W-1"), roster, CTX)
    assert isinstance(report, Report) and report.findings == []
    # elapsed_ms is wall time (0 on a quiet machine, more under load): its type, not its value
    answer = report.to_json()
    assert isinstance(answer.pop("elapsed_ms"), int)
    assert answer == {"validator": "staffing.fill", "findings": []}


@pytest.mark.parametrize(
    "artifact, context, expected",
    [
        ({}, None, '{"Schema":{"field":"fills","reason":"missing or not an array"}}'),
        ({"fills": {"a": 1}}, None, '{"Schema":{"field":"fills","reason":"missing or not an array"}}'),
        ({"fills": ["W-1"]}, None, '{"Schema":{"field":"fills[0]","reason":"must be an object"}}'),
        ({"fills": [{"name": "x"}]}, None,
         '{"Schema":{"field":"fills[0].candidate_id","reason":"missing or not a non-empty string"}}'),
        ({"fills": [{"candidate_id": " ", "name": "x"}]}, None,
         '{"Schema":{"field":"fills[0].candidate_id","reason":"missing or not a non-empty string"}}'),
        ({"fills": [{"candidate_id": "W-1"}]}, None,
         '{"Schema":{"field":"fills[0].name","reason":"missing or not a string"}}'),
        ({"fills": [], "_context": "x"}, None, '{"Schema":{"field":"_context","reason":"must be an object"}}'),
        (fills("W-1"), {"target_count": -1},
         '{"Schema":{"field":"_context.target_count","reason":"must be a non-negative integer"}}'),
        (fills("W-1"), {"target_count": True},
         '{"Schema":{"field":"_context.target_count","reason":"must be a non-negative integer"}}'),
        (fills("W-1"), {"city": 5}, '{"Schema":{"field":"_context.city","reason":"must be a string"}}'),
        (fills("W-1"), {"blacklist": "W-1"},
         '{"Schema":{"field":"_context.blacklist","reason":"must be an array of strings"}}'),
    ],
)
def test_fill_schema_rules(roster, artifact, context, expected):
    assert wire(fail("fill", artifact, roster, context)) == expected


def test_fill_completeness_rules(roster):
    exc = fail("fill", fills("W-1", "W-2", names=["Donald Green", "Ana Ruiz"]), roster, {"target_count": 3})
    assert wire(exc) == '{"Completeness":{"reason":"fills has 2 endorsed candidates but target_count is 3"}}'
    assert wire(fail("fill", {"fills": []}, roster)) == '{"Completeness":{"reason":"fills must be non-empty"}}'
    # completeness is checked before the roster: a phantom does not hide a count mismatch
    exc = fail("fill", fills("W-FAKE"), roster, {"target_count": 2})
    assert exc.category == "Completeness"


@pytest.mark.parametrize(
    "artifact, context, reason",
    [
        (fills("W-404"), CTX, "fills[0].candidate_id 'W-404' does not exist in worker roster"),
        (fills("W-4", names=["Sam Ode"]), CTX, "fills[0].candidate_id 'W-4' is not active (status 'inactive')"),
        (fills("W-3", names=["Lee Park"]), {**CTX, "state": None},
         "fills[0] city 'Louisville' doesn't match contract city 'Toledo'"),
        (fills("W-1"), {**CTX, "city": None, "state": "KY"},
         "fills[0] state 'OH' doesn't match contract state 'KY'"),
        (fills("W-5", names=["Kim Lo"]), CTX,
         "fills[0] role 'Forklift Operator' doesn't match contract role 'Welder'"),
        (fills("W-1", "w-1"), {**CTX, "target_count": 2}, "fills[1].candidate_id 'w-1' duplicates fills[0]"),
    ],
    ids=["phantom", "inactive", "city", "state", "role", "duplicate"],
)
def test_fill_consistency_rules(roster, artifact, context, reason):
    exc = fail("fill", artifact, roster, context)
    assert exc.category == "Consistency" and exc.reason == reason


def test_fill_matching_ignores_case_and_spacing(roster):
    ctx = {"city": "  toledo ", "state": "oh", "role": "WELDER", "target_count": 1}
    assert validate("fill", fills("w-1", names=["donald  GREEN"]), roster, ctx).findings == []


def test_empty_roster_fails_every_existence_check():
    exc = fail("fill", fills("W-1"), WorkerRoster())
    assert exc.reason == "fills[0].candidate_id 'W-1' does not exist in worker roster"


def test_fill_policy_rules(roster):
    exc = fail("fill", fills("W-2", names=["Ana Ruiz"]), roster, {**CTX, "client_id": "c-9"})
    assert wire(exc) == '{"Policy":{"reason":"fills[0].candidate_id \'W-2\' is blacklisted for client \'c-9\'"}}'
    exc = fail("fill", fills("W-1"), roster, {**CTX, "blacklist": ["w-1"]})
    assert wire(exc) == '{"Policy":{"reason":"fills[0].candidate_id \'W-1\' is on the client blacklist"}}'
    # consistency comes before policy
    exc = fail("fill", fills("W-2", "W-404", names=["Ana Ruiz", "x"]), roster,
               {"client_id": "C-9", "target_count": 2})
    assert exc.category == "Consistency"


def test_fill_warnings(roster):
    report = validate("fill", fills("W-1", names=["Anyone"]), roster, CTX)
    assert [(f.severity, f.message) for f in report.findings] == [
        ("Warning", "fills[0].name 'Anyone' differs from roster name 'Donald Green'")
    ]
    report = validate("fill", fills("W-6", names=["Val Ng"]), roster, CTX)
    assert [f.message for f in report.warnings] == [
        "roster has no city for 'W-6'; city not checked",
        "roster has no role for 'W-6'; role not checked",
    ]
    assert report.to_json()["findings"][0] == {
        "severity": "Warning", "field": "fills[0]", "message": "roster has no city for 'W-6'; city not checked"
    }


# -- email ----------------------------------------------------------------------------------------


def email(**kw):
    return {"to": "ana@example.com", "subject": "Shift tomorrow", "body": "Hi Ana, are you free?", **kw}


def test_email_happy_and_schema(roster):
    assert validate("email", email(), roster).validator == "staffing.email"
    cases = [
        ({"body": "x"}, '{"Schema":{"field":"to","reason":"missing or empty"}}'),
        ({"to": "", "body": "x"}, '{"Schema":{"field":"to","reason":"missing or empty"}}'),
        ({"to": "a@b.c"}, '{"Schema":{"field":"body","reason":"missing or not a string"}}'),
        ({"to": "a@b.c", "body": 3}, '{"Schema":{"field":"body","reason":"missing or not a string"}}'),
        ({"to": "a@b.c", "body": "x", "subject": 1}, '{"Schema":{"field":"subject","reason":"must be a string"}}'),
        ({"to": "a@b.c", "body": "x", "channel": "fax"}, '{"Schema":{"field":"channel","reason":"must be \'sms\' or \'email\'"}}'),
    ]
    for artifact, expected in cases:
        assert wire(fail("email", artifact, roster)) == expected


def test_sms_body_limit_is_160_characters(roster):
    assert validate("email", {"to": "+14195550100", "body": "é" * 160}, roster)
    exc = fail("email", {"to": "+14195550100", "body": "é" * 161}, roster)
    assert wire(exc) == '{"Schema":{"field":"body","reason":"SMS body is 161 characters; the limit is 160"}}'
    # the channel can be explicit; an email body has no such limit
    assert fail("email", {"to": "a@b.c", "channel": "sms", "body": "x" * 161}, roster).field == "body"
    assert validate("email", {"to": "a@b.c", "body": "x" * 2000}, roster)
    assert fail("email", {"to": "a@b.c", "type": "SMS", "body": "x" * 161}, roster).field == "body"


def test_email_subject_limit_is_78_characters(roster):
    assert validate("email", email(subject="s" * 78), roster)
    exc = fail("email", email(subject="s" * 79), roster)
    assert wire(exc) == '{"Schema":{"field":"subject","reason":"subject is 79 characters; the limit is 78"}}'


@pytest.mark.parametrize(
    "text, flagged",
    [
        ("SSN 123-45-6789 on file", True),
        ("123-45-6789", True),
        ("(ssn:123-45-6789)", True),
        ("acct 1123-45-6789", False),
        ("acct 123-45-67890", False),
        ("call 555-123-4567", False),
        ("call (555) 123-4567", False),
        ("+1 419-555-0100", False),
        ("order 12-345-6789", False),
        ("x123-45-6789y", True),
    ],
)
def test_ssn_pattern_and_its_flanking_digit_guard(text, flagged):
    assert contains_ssn_pattern(text) is flagged


def test_ssn_in_body_or_subject_is_policy(roster):
    exc = fail("email", email(body="Your SSN 123-45-6789 is on file"), roster)
    assert exc.category == "Policy" and exc.reason.startswith("SSN-shaped sequence in body")
    assert fail("email", email(subject="re 123-45-6789"), roster).reason.startswith(
        "SSN-shaped sequence in subject"
    )
    assert validate("email", email(body="Call 555-123-4567 today"), roster)


@pytest.mark.parametrize(
    "text, flagged",
    [
        ("Your salary will be $55,000 a year", True),
        ("pay: $18.50/hr", True),
        ("$22 per hour is the hourly rate", True),
        ("Compensation:$1,200 weekly", True),
        ("The wage " + "x" * 39 + "$20", True),  # 40 characters between: still close
        ("The wage " + "x" * 40 + "$20", False),
        ("Bring $20 for parking", False),
        ("Salary details at the interview", False),
        ("repayment of $50", False),
    ],
)
def test_salary_disclosure(text, flagged):
    assert contains_salary_disclosure(text) is flagged


def test_salary_disclosure_is_policy(roster):
    exc = fail("email", email(body="Hi Ana, the pay is $19/hr."), roster)
    assert exc.category == "Policy" and exc.reason.startswith("salary disclosure in body")


def test_email_name_consistency(roster):
    ctx = {"candidate_id": "W-2"}
    assert validate("email", email(), roster, ctx).findings == []
    exc = fail("email", email(), roster, {"candidate_id": "W-404"})
    assert exc.reason == "_context.candidate_id 'W-404' does not exist in worker roster"
    exc = fail("email", email(name="Donald Green"), roster, ctx)
    assert exc.category == "Consistency"
    assert exc.reason == "name 'Donald Green' doesn't match roster name 'Ana Ruiz' for candidate_id 'W-2'"
    report = validate("email", email(body="Hello there, are you free?"), roster, ctx)
    assert [f.message for f in report.warnings] == ["body does not mention the candidate's name 'Ana Ruiz'"]


def test_email_check_order(roster):
    # length before PII, PII before the roster
    long_sms = {"to": "+1419", "body": "123-45-6789 " * 20}
    assert fail("email", long_sms, roster).category == "Schema"
    assert fail("email", email(body="123-45-6789"), roster, {"candidate_id": "W-404"}).category == "Policy"


# -- playbook -------------------------------------------------------------------------------------


def test_playbook_other_rules(roster):
    assert fail("playbook", {**PLAYBOOK_OK, "operation": 5}, roster).reason == 'expected `fill: ...` prefix, got ""'
    assert fail("playbook", {**PLAYBOOK_OK, "operation": "fill:x"}, roster).field == "operation"
    exc = fail("playbook", {**PLAYBOOK_OK, "endorsed_names": "Donald"}, roster)
    assert wire(exc) == '{"Schema":{"field":"endorsed_names","reason":"must be an array of strings"}}'
    no_names = {k: v for k, v in PLAYBOOK_OK.items() if k != "endorsed_names"}
    assert fail("playbook", no_names, roster).reason == "endorsed_names must be non-empty"
    assert fail("playbook", {**PLAYBOOK_OK, "fingerprint": "  "}, roster).field == "fingerprint"
    # target_count from the context when the artifact has none; no bound without either
    no_target = {k: v for k, v in PLAYBOOK_OK.items() if k != "target_count"}
    many = {**no_target, "endorsed_names": ["a", "b", "c", "d", "e"]}
    assert validate("playbook", many, roster)
    assert fail("playbook", many, roster, {"target_count": 2}).reason == (
        "endorsed_names (5) exceeds target_count × 2 (4)"
    )
    assert fail("playbook", {**PLAYBOOK_OK, "target_count": "2"}, roster).field == "target_count"
    assert validate("playbook", {**PLAYBOOK_OK, "endorsed_names": ["a", "b"]}, roster)


# -- dispatch, context, grounding -------------------------------------------------------------


def test_unknown_kind_and_context_injection(roster):
    with pytest.raises(UnknownKind):
        validate("nonsense", {}, roster)
    artifact = {"fills": [], "_context": {"city": "Toledo", "target_count": 0}}
    merged = inject_context(artifact, {"target_count": 1})
    assert merged["_context"] == {"city": "Toledo", "target_count": 1}
    assert artifact["_context"] == {"city": "Toledo", "target_count": 0}  # not mutated
    assert inject_context({"a": 1}, None) == {"a": 1}
    # the embedded _context is used when the request has none
    exc = fail("fill", {**fills("W-1"), "_context": {"target_count": 2}}, roster)
    assert exc.category == "Completeness"


def test_grounded_in_roster(roster):
    assert grounded_in_roster("fill", fills("W-1", "w-2"), roster) is True
    assert grounded_in_roster("fill", fills("W-1", "W-404"), roster) is False
    assert grounded_in_roster("fill", {"fills": []}, roster) is False
    assert grounded_in_roster("fill", None, roster) is None
    assert grounded_in_roster("email", email(), roster) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["fills", "candidate_id", "name", "to", "body", "subject", "channel", "operation",
                         "endorsed_names", "fingerprint", "target_count", "_context", "city", "blacklist"]),
        inner, max_size=5),
    max_leaves=15,
)


@given(st.sampled_from(["fill", "email", "playbook"]), st.dictionaries(st.text(max_size=14), json_values, max_size=5)
       | json_values.filter(lambda v: isinstance(v, dict)), st.none() | st.dictionaries(st.text(max_size=12), json_values, max_size=3))
def test_any_artifact_gives_a_report_or_a_validation_error(kind, artifact, context):
    roster = WorkerRoster.from_rows(ROWS)
    try:
        report = validate(kind, artifact, roster, context)
    except ValidationError as exc:
        assert ValidationError.from_wire(orjson.loads(exc.to_json())) == exc
    else:
        orjson.dumps(report.to_json())
