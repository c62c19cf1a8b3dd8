"""extract_json: the 12 parity fixture classes of contract section 13.5, plus properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.validation.extract import extract_json, extract_json_report

# (class number, name, input, expected value or None for "not matched")
CLASSES = [
    (1, "fenced json block",
     'Here you go:\n```json\n{"fills": [{"candidate_id": "W-1"}]}\n```\nDone.',
     {"fills": [{"candidate_id": "W-1"}]}),
    (2, "unfenced (plain) block",
     'Answer:\n```\n{"a": 1, "b": [1, 2]}\n```',
     {"a": 1, "b": [1, 2]}),
    (3, "bare braces with prose around",
     'Sure! The artifact is {"operation": "fill: Welder x2"} as requested.',
     {"operation": "fill: Welder x2"}),
    (4, "several objects: the first balanced one",
     'First {"n": 1} then {"n": 2} and {"n": 3}',
     {"n": 1}),
    (5, "nested objects: the outer one",
     'Result: {"outer": {"inner": {"deep": true}}, "k": 0} end',
     {"outer": {"inner": {"deep": True}}, "k": 0}),
    (6, "unicode inside strings",
     'Voilà {"name": "José Ñúñez", "note": "— × 日本語 🚜"} fin',
     {"name": "José Ñúñez", "note": "— × 日本語 🚜"}),
    (7, "escaped quotes and braces inside strings",
     r'{"body": "He said \"hi {there}\" and left \\", "x": "}"}',
     {"body": 'He said "hi {there}" and left \\', "x": "}"}),
    (8, "empty object matches", "the answer is {} ok", {}),
    (9, "top-level array: the first inner object",
     '[{"id": "W-1"}, {"id": "W-2"}]',
     {"id": "W-1"}),
    (10, "no JSON at all", "I cannot help with that request.", None),
    (11, "depth-balanced but syntactically invalid",
     "{name: 'W-1', count: 2,}",
     None),
    (12, "trailing garbage after a valid object",
     '{"ok": true}}} garbage ]] {{',
     {"ok": True}),
]


@pytest.mark.parametrize("number, name, text, expected", CLASSES, ids=[c[1] for c in CLASSES])
def test_the_twelve_fixture_classes(number, name, text, expected):
    got = extract_json(text)
    assert got == expected
    assert (got is not None) == (expected is not None)  # {} is a match, not "no match"
    assert extract_json_report(text) == {"matched": expected is not None, "value": expected}


def test_class_list_is_complete():
    assert [c[0] for c in CLASSES] == list(range(1, 13))


def test_fence_details():
    # a ```json block wins over an earlier plain block and over bare objects
    text = '{"bare": 1}\n```\n{"plain": 2}\n```\n```json\n{"tagged": 3}\n```'
    assert extract_json(text) == {"tagged": 3}
    # a fence with no object falls back to the text around it
    assert extract_json('```json\nnot json\n```\nthen {"after": 1}') == {"after": 1}
    # a fenced array yields its first object
    assert extract_json('```json\n[{"a": 1}, {"b": 2}]\n```') == {"a": 1}


def test_invalid_span_hides_its_nested_objects_but_not_later_ones():
    assert extract_json('{"a": {"b": 1}, oops}') is None
    assert extract_json('{oops} and then {"good": 1}') == {"good": 1}


def test_truncated_output_is_not_matched():
    assert extract_json('{"fills": [{"candidate_id": "W-1", "name": "A"}, {"candidate_id"') is None


def test_prose_quotes_before_the_object_are_ignored():
    assert extract_json('He said "wait. {"a": "b"}') == {"a": "b"}
    assert extract_json("it's a \"test\" {\"x\": 1}") == {"x": 1}


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        extract_json(None)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
prose = st.text(alphabet=st.characters(blacklist_characters="{}[]`\""), max_size=40)


@given(prose, st.dictionaries(st.text(max_size=8), json_values, max_size=4), prose)
def test_an_object_in_prose_is_found(before, obj, after):
    for encoded in (json.dumps(obj), json.dumps(obj, ensure_ascii=False, indent=2)):
        assert extract_json(before + encoded + after) == obj


@given(st.text(max_size=300))
def test_never_raises_and_only_returns_objects(text):
    got = extract_json(text)
    assert got is None or isinstance(got, dict)


def test_linear_time_on_pathological_input():
    import time

    text = "{" * 50_000 + '{"a": 1}' + "x" * 10
    start = time.perf_counter()
    extract_json(text)
    extract_json("{}" * 50_000)
    extract_json("{x}" * 50_000 + '{"a": 1}')
    assert time.perf_counter() - start < 2.0
