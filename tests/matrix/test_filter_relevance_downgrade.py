"""The pure parts of matrixd: metadata filter, relevance scoring, downgrade gate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.matrix import downgrade, relevance
from lakehouse.matrix.filter import FilterError, MetadataFilter, json_equal

# -- metadata filter (contract 9.5) ------------------------------------------------------


@pytest.mark.parametrize(
    "spec,metadata,expected",
    [
        (None, {"a": 1}, True),
        ({}, None, True),
        ({"city": "Milwaukee"}, {"city": "Milwaukee"}, True),
        ({"city": "Milwaukee"}, {"city": "milwaukee"}, False),
        ({"n": 1}, {"n": 1.0}, True),
        ({"n": 5.0}, {"n": 5}, True),
        ({"n": 1}, {"n": "1"}, False),
        ({"n": 1}, {"n": True}, False),
        ({"ok": True}, {"ok": 1}, False),
        ({"ok": True}, {"ok": True}, True),
        ({"ok": False}, {"ok": False}, True),
        ({"city": ["Milwaukee", "Chicago"]}, {"city": "Chicago"}, True),
        ({"city": ["Milwaukee", "Chicago"]}, {"city": "Detroit"}, False),
        ({"city": "Milwaukee", "shift": "night"}, {"city": "Milwaukee", "shift": "night"}, True),
        ({"city": "Milwaukee", "shift": "night"}, {"city": "Milwaukee", "shift": "day"}, False),
        ({"city": "Milwaukee"}, {"state": "WI"}, False),
        ({"city": "Milwaukee"}, None, False),
        ({"city": "Milwaukee"}, "not an object", False),
        ({"city": "Milwaukee"}, ["Milwaukee"], False),
        ({"certs": "OSHA-30"}, {"certs": ["OSHA-30"]}, False),
        ({"n": [1, "x"]}, {"n": 1.0}, True),
    ],
)
def test_filter_truth_table(spec, metadata, expected):
    assert MetadataFilter(spec).matches(metadata) is expected


def test_filter_smoke_keeps_two_of_six():
    labels = ["a near", "a far", "b near", "b far", "c near", "c far"]
    items = [{"id": str(i), "metadata": {"label": lab}} for i, lab in enumerate(labels)]
    kept, dropped = MetadataFilter({"label": ["a near", "b near"]}).apply(items)
    assert [i["metadata"]["label"] for i in kept] == ["a near", "b near"]
    assert dropped == 4


@pytest.mark.parametrize("spec", [{"a": None}, {"a": {"b": 1}}, {"a": []}, {"a": [[1]]}, {"a": [None]}])
def test_filter_refuses_values_that_match_nothing(spec):
    with pytest.raises(FilterError, match="metadata_filter"):
        MetadataFilter(spec)


scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), st.text(max_size=3))


@given(scalars, scalars)
def test_json_equal_is_symmetric_and_keeps_bools_apart(a, b):
    assert json_equal(a, b) == json_equal(b, a)
    if isinstance(a, bool) != isinstance(b, bool):
        assert not json_equal(a, b)


# -- relevance (contract 9.13) -------------------------------------------------------------

FOCUS = relevance.Focus(
    path="crates/queryd/src/db.go",
    defined_symbols=["Connector"],
    imported_symbols=["catalogd::Registry"],
)


def test_relevance_smoke_numbers():
    chunks = [
        relevance.Chunk("Connector opens a db pool with conn handle", "crates/vectord/src/pool.rs"),
        relevance.Chunk("Registry lookup of a manifest: dataset entries", "crates/catalogd/src/registry.rs"),
        relevance.Chunk("lorem ipsum dolor sit amet", "notes/junk.md"),
    ]
    scored = relevance.filter_chunks(FOCUS, chunks)
    assert [s.score for s in scored] == [pytest.approx(0.68), pytest.approx(-0.46), 0.0]
    assert [s.kept for s in scored] == [True, False, False]
    assert set(scored[0].signals) == {"defined_match", "token_overlap"}
    assert set(scored[1].signals) == {"import_penalty", "token_overlap"}
    assert scored[2].signals == {}


def test_relevance_path_filename_and_prefix_signals():
    s, sig = relevance.score_relevance(FOCUS, relevance.Chunk("nothing here", "crates/queryd/src/db.go#L10"))
    assert sig["path_match"] == 1.0 and sig["prefix_match"] == 0.3
    s, sig = relevance.score_relevance(FOCUS, relevance.Chunk("nothing", doc_id="crates_queryd_src_db.go:3"))
    assert "path_match" in sig
    s, sig = relevance.score_relevance(FOCUS, relevance.Chunk("see DB.GO for details", "x/y/z.md"))
    assert sig["filename_match"] == 0.6 and "path_match" not in sig and "prefix_match" not in sig
    s, sig = relevance.score_relevance(FOCUS, relevance.Chunk("zzz", "crates/queryd/src/other.go"))
    assert sig == {"prefix_match": 0.3}
    assert s == 0.3
    # defined + imported mentioned: no penalty
    s, sig = relevance.score_relevance(FOCUS, relevance.Chunk("Connector uses Registry", ""))
    assert "import_penalty" not in sig and "defined_match" in sig
    # word boundaries: ConnectorPool is not Connector
    s, sig = relevance.score_relevance(FOCUS, relevance.Chunk("ConnectorPool", ""))
    assert "defined_match" not in sig


def test_relevance_threshold_is_inclusive():
    chunk = relevance.Chunk("zzz", "crates/queryd/src/other.go")
    assert relevance.filter_chunks(FOCUS, [chunk], threshold=0.3)[0].kept
    assert not relevance.filter_chunks(FOCUS, [chunk], threshold=0.31)[0].kept


def test_extract_symbols_rust_ts_go():
    rust = """
    use catalogd::{Registry, manifest::Manifest as M};
    use std::sync::Arc;
    pub struct Connector { pool: Arc<Pool> }
    impl Connector { pub fn open(&self) {} }
    pub const MAX_ROWS: usize = 10;
    """
    assert relevance.extract_defined_symbols(rust)[:3] == ["Connector", "open", "MAX_ROWS"]
    assert relevance.extract_imported_symbols(rust) == ["Registry", "M", "Arc"]
    ts = "import { Pool, Conn as C } from './db';\nexport class Server {}\nexport function start() {}"
    assert relevance.extract_defined_symbols(ts) == ["Server", "start"]
    assert relevance.extract_imported_symbols(ts) == ["Pool", "C"]
    go = "func (c *Connector) Query(sql string) {}\ntype Connector struct{}"
    assert relevance.extract_defined_symbols(go) == ["Query", "Connector"]


def test_focus_content_adds_symbols():
    focus = relevance.Focus("src/a/b.rs", content="use x::Registry;\npub fn connect() {}")
    defined, imported = focus.symbols()
    assert defined == ["connect"] and imported == ["Registry"]


def test_tokenize_and_jaccard():
    assert relevance.tokenize("The Connector fn opens a DB") == {"connector", "opens", "db"}
    assert relevance.jaccard(set(), set()) == 0.0
    assert relevance.jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert relevance.file_prefix("crates/queryd/src/db.go") == "crates/queryd"
    assert relevance.file_prefix("main.go") == ""


# -- downgrade (contract 9.14) ------------------------------------------------------------

FULL, ISO = downgrade.FULL_MODE, downgrade.ISOLATION_MODE


@pytest.mark.parametrize(
    "mode,model,forced,force_full,expected_mode,reason",
    [
        ("codereview_null", "grok-4.1-fast", False, False, "codereview_null", "mode_not_eligible"),
        (FULL, "grok-4.1-fast", True, False, FULL, "forced_mode"),
        (FULL, "qwen3.5:latest", True, True, FULL, "forced_mode"),  # forced beats every bypass
        (FULL, "grok-4.1-fast", False, True, FULL, "force_full_enrichment"),
        (FULL, "qwen3.5:latest", False, False, FULL, "weak_model"),
        (FULL, "grok-4.1-fast", False, False, ISO, "strong_model"),
    ],
)
def test_downgrade_truth_table(mode, model, forced, force_full, expected_mode, reason):
    d = downgrade.decide(mode, model, forced_mode=forced, force_full_enrichment=force_full, environ={})
    assert (d.mode, d.reason) == (expected_mode, reason)
    assert (d.downgraded_from == FULL) is (expected_mode == ISO)
    body = d.to_json()
    assert ("downgraded_from" in body) is (expected_mode == ISO)


@pytest.mark.parametrize(
    "model,weak",
    [
        ("openrouter/x:free", True),
        ("opencode/x:free/y", True),
        ("qwen3:latest", True),
        ("qwen3.5:latest", True),
        ("qwen2.5:latest", False),
        ("x:freedom", False),
        ("kimi-k2.6:cloud", False),
    ],
)
def test_is_weak_model(model, weak):
    assert downgrade.is_weak_model(model) is weak


def test_downgrade_weak_list_and_environment():
    assert downgrade.decide(FULL, "m", weak_models=["m"], environ={}).reason == "weak_model"
    assert downgrade.decide(FULL, "qwen3:latest", weak_models=[], environ={}).mode == ISO
    for value, bypass in [("1", True), ("true", True), ("TRUE", True), ("0", False), ("yes", False), ("", False)]:
        d = downgrade.decide(FULL, "strong", environ={"LH_FORCE_FULL_ENRICHMENT": value})
        assert (d.reason == "force_full_enrichment") is bypass
    # an explicit false beats the environment
    d = downgrade.decide(FULL, "strong", force_full_enrichment=False, environ={"LH_FORCE_FULL_ENRICHMENT": "1"})
    assert d.mode == ISO


@pytest.mark.parametrize("mode", ["", "   "])
def test_downgrade_empty_mode(mode):
    with pytest.raises(ValueError, match="mode"):
        downgrade.decide(mode, "m")
