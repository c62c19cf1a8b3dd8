"""The DAG runner: validation before running, Kahn order, references, skip cascade, timings."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.memory.workflow import (
    CycleError,
    DuplicateNodeIdError,
    MissingDependencyError,
    ModeError,
    ModeRegistry,
    UnknownModeError,
    UnresolvedRefError,
    Workflow,
    WorkflowError,
    builtin_registry,
    ops_for_run,
    plan,
    run,
)


def wf(*nodes, name="demo") -> Workflow:
    return msgspec.convert({"name": name, "nodes": list(nodes)}, Workflow)


def recording_registry():
    """The built-ins plus ``rec`` (records its calls) and ``boom`` (fails)."""
    calls: list[str] = []
    reg = builtin_registry()

    async def rec(ctx, inputs):
        calls.append(ctx.node_id)
        return {"node": ctx.node_id, **inputs}

    async def boom(ctx, inputs):
        calls.append(ctx.node_id)
        raise ModeError("boom")

    reg.register("rec", rec)
    reg.register("boom", boom)
    return reg, calls


def test_builtin_modes_are_the_eight_of_the_contract():
    assert builtin_registry().names() == sorted([
        "matrix.search", "matrix.relevance", "matrix.downgrade", "distillation.score",
        "drift.scorer", "llm.chat", "fixture.echo", "fixture.upper",
    ])


def test_kahn_order_with_declaration_ties():
    reg, _ = recording_registry()
    p = plan(wf(
        {"id": "d", "mode": "rec", "depends_on": ["b", "c"]},
        {"id": "c", "mode": "rec", "depends_on": ["a"]},
        {"id": "b", "mode": "rec", "depends_on": ["a"]},
        {"id": "a", "mode": "rec"},
        {"id": "e", "mode": "rec"},
    ), reg)
    # At each step the earliest-declared ready node runs: a and e are ready, a wins; then
    # c, b (declared before e); then d and e are ready and d is declared first.
    assert [n.id for n in p.order] == ["a", "c", "b", "d", "e"]


@pytest.mark.parametrize(
    "nodes, error, message",
    [
        ([], WorkflowError, "at least one node"),
        ([{"id": "a", "mode": "rec"}, {"id": "a", "mode": "rec"}], DuplicateNodeIdError, "'a'"),
        ([{"id": "a", "mode": "rec", "depends_on": ["zz"]}], MissingDependencyError, "zz"),
        ([{"id": "a", "mode": "nope.mode"}], UnknownModeError, "nope.mode"),
        ([{"id": "a", "mode": "rec", "depends_on": ["a"]}], CycleError, "a"),
        ([{"id": "a", "mode": "rec", "depends_on": ["c"]}, {"id": "b", "mode": "rec", "depends_on": ["a"]},
          {"id": "c", "mode": "rec", "depends_on": ["b"]}, {"id": "x", "mode": "rec"}], CycleError, "a, b, c"),
        ([{"id": "has space", "mode": "rec"}], WorkflowError, "id"),
        ([{"id": "a.b", "mode": "rec"}], WorkflowError, "id"),
        ([{"id": "", "mode": "rec"}], WorkflowError, "id"),
        ([{"id": "a", "mode": "rec"}, {"id": "b", "mode": "rec", "inputs": {"x": "$a.output.v"}}],
         UnresolvedRefError, "does not depend"),
        ([{"id": "a", "mode": "rec", "inputs": {"x": "$ghost.output.v"}}], UnresolvedRefError, "ghost"),
        ([{"id": "a", "mode": "rec"}, {"id": "b", "mode": "rec", "depends_on": ["a"], "inputs": {"x": "$a.v"}}],
         UnresolvedRefError, "expected"),
        ([{"id": "a", "mode": "rec"}, {"id": "b", "mode": "rec", "prompt": "use $a"}], UnresolvedRefError, "a"),
    ],
)
def test_invalid_workflows_are_refused_before_anything_runs(nodes, error, message):
    reg, calls = recording_registry()
    with pytest.raises(error, match=message):
        plan(wf(*nodes), reg)
    assert calls == []


def test_unknown_mode_found_even_after_valid_nodes():
    reg, calls = recording_registry()
    with pytest.raises(UnknownModeError):
        plan(wf({"id": "a", "mode": "rec"}, {"id": "b", "mode": "rec"}, {"id": "c"}), ModeRegistry({"rec": reg.get("rec")}))
    assert calls == []  # the default mode llm.chat is not in this registry


def test_name_required():
    with pytest.raises(WorkflowError, match="name"):
        plan(wf({"id": "a", "mode": "rec"}, name="  "), recording_registry()[0])


async def test_references_resolve_values_and_text():
    reg, _ = recording_registry()
    p = plan(wf(
        {"id": "src", "mode": "fixture.echo", "inputs": {"text": "forklift", "n": 3,
                                                         "deep": {"list": [{"k": "v0"}, {"k": "v1"}]}}},
        {"id": "up", "mode": "fixture.upper", "depends_on": ["src"], "inputs": {"text": "$src.output.text"}},
        {"id": "use", "mode": "rec", "depends_on": ["up"], "prompt": "pay $5 for $up.output.text",
         "inputs": {
             "whole": "$src",
             "whole2": "$src.output",
             "n": "$src.output.n",
             "idx": "$src.output.deep.list.1.k",
             "text": "n=$src.output.n, deep=$src.output.deep.list.0",
             "nested": ["$up.output.text", {"k": "$src.output.n"}],
         }},
    ), reg)
    result = await run(p, reg)
    assert result.success
    out = result.node("use").output
    src = result.node("src").output
    assert out["whole"] == src and out["whole2"] == src
    assert out["n"] == 3  # a whole-string reference keeps its type
    assert out["idx"] == "v1"
    assert out["text"] == 'n=3, deep={"k":"v0"}'
    assert out["nested"] == ["FORKLIFT", {"k": 3}]
    echo = await run(plan(wf(
        {"id": "a", "mode": "fixture.echo", "inputs": {"t": "x"}},
        {"id": "b", "mode": "fixture.echo", "depends_on": ["a"], "prompt": "pay $5 for $a.output.t"},
    ), reg), reg)
    assert echo.node("b").output == {"prompt": "pay $5 for x"}


async def test_a_missing_path_fails_the_node_at_run_time():
    reg, _ = recording_registry()
    result = await run(plan(wf(
        {"id": "a", "mode": "fixture.echo", "inputs": {"t": "x"}},
        {"id": "b", "mode": "rec", "depends_on": ["a"], "inputs": {"v": "$a.output.missing.key"}},
    ), reg), reg)
    b = result.node("b")
    assert b.status == "failed" and "unresolved reference" in b.error and "missing" in b.error


async def test_failing_node_skips_its_dependants_only():
    reg, calls = recording_registry()
    p = plan(wf(
        {"id": "root", "mode": "rec"},
        {"id": "bad", "mode": "boom", "depends_on": ["root"]},
        {"id": "child", "mode": "rec", "depends_on": ["bad"]},
        {"id": "grandchild", "mode": "rec", "depends_on": ["child", "sibling"]},
        {"id": "sibling", "mode": "rec", "depends_on": ["root"]},
        {"id": "loner", "mode": "rec"},
    ), reg)
    result = await run(p, reg)
    status = {n.id: n.status for n in result.nodes}
    assert status == {"root": "succeeded", "bad": "failed", "child": "skipped", "grandchild": "skipped",
                      "sibling": "succeeded", "loner": "succeeded"}
    assert result.node("bad").error == "boom"
    assert result.node("child").error == "upstream node bad failed"
    assert result.node("grandchild").error == "upstream node child failed"
    assert calls == ["root", "bad", "sibling", "loner"]  # skipped nodes never ran
    assert not result.success
    j = result.to_json()
    assert j["counts"] == {"succeeded": 3, "failed": 1, "skipped": 2}
    assert j["order"] == ["root", "bad", "child", "sibling", "grandchild", "loner"]


async def test_timings_and_unexpected_exceptions(caplog):
    reg = ModeRegistry()

    async def slow(ctx, inputs):
        await asyncio.sleep(0.05)
        return {}

    async def buggy(ctx, inputs):
        raise KeyError("oops")

    async def not_a_dict(ctx, inputs):
        return ["x"]

    async def hang(ctx, inputs):
        await asyncio.sleep(10)
        return {}

    for name, fn in [("slow", slow), ("buggy", buggy), ("list", not_a_dict), ("hang", hang)]:
        reg.register(name, fn)
    result = await run(plan(wf(
        {"id": "s", "mode": "slow"}, {"id": "b", "mode": "buggy"},
        {"id": "l", "mode": "list"}, {"id": "h", "mode": "hang"},
    ), reg), reg, node_timeout=0.2)
    s, b, lst, h = result.nodes
    assert s.success and s.duration_ms >= 45 and s.started_at.endswith("Z")
    assert b.status == "failed" and "KeyError" in b.error
    assert "traceback" not in b.error.lower()
    assert any("raised" in r.message for r in caplog.records)  # logged, not swallowed
    assert lst.status == "failed" and "not an object" in lst.error
    assert h.status == "failed" and "timed out" in h.error
    assert result.duration_ms >= s.duration_ms + h.duration_ms - 1


async def test_ops_for_run_one_per_node():
    reg, _ = recording_registry()
    result = await run(plan(wf({"id": "a", "mode": "rec"}, {"id": "b", "mode": "boom"},
                               {"id": "c", "mode": "rec", "depends_on": ["b"]}), reg), reg)
    ops = ops_for_run(result, "trace-1")
    assert [op.metadata["node_id"] for op in ops] == ["a", "b", "c"]
    assert [op.success for op in ops] == [True, False, False]
    assert all(op.source == "workflow" and op.trace_id == "trace-1" for op in ops)
    assert ops[1].endpoint == "workflow:boom" and ops[1].error == "boom"
    assert ops[2].error == "upstream node b failed"


async def test_fixture_and_local_modes():
    reg = builtin_registry()
    result = await run(plan(wf(
        {"id": "up", "mode": "fixture.upper", "prompt": "shout"},
        {"id": "score", "mode": "distillation.score",
         "inputs": {"record": {"source": "scrum_reviews", "verdict": "approve"}}},
        {"id": "psi", "mode": "drift.scorer",
         "inputs": {"expected": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "actual": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}},
        {"id": "sdrift", "mode": "drift.scorer", "depends_on": ["score"],
         "inputs": {"pairs": [{"record": {"source": "outcomes", "success": False}, "category": "accepted"}]}},
        {"id": "bad_drift", "mode": "drift.scorer", "inputs": {"expected": [1]}},
        {"id": "bad_inputs", "mode": "fixture.upper", "inputs": {"txt": "typo"}},
        {"id": "chat", "mode": "llm.chat", "prompt": "hi"},
        {"id": "search", "mode": "matrix.search", "inputs": {"query_text": "x"}},
    ), reg), reg)
    out = {n.id: n for n in result.nodes}
    assert out["up"].output == {"text": "SHOUT"}
    assert out["score"].output["category"] == "accepted"
    assert out["psi"].output["tier"] == "stable" and out["psi"].output["psi"] == 0
    assert out["sdrift"].output["mismatches"] == 1
    assert "both expected and actual" in out["bad_drift"].error
    assert "txt" in out["bad_inputs"].error
    # no services wired: the node fails, the run goes on
    assert "no chatd" in out["chat"].error and "no matrixd" in out["search"].error


# -- a property: the order is a deterministic topological order ------------------------------------


@st.composite
def dags(draw):
    n = draw(st.integers(1, 12))
    nodes = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        nodes.append({"id": f"n{i}", "mode": "rec", "depends_on": [f"n{d}" for d in deps]})
    return draw(st.permutations(nodes))


@given(dags())
def test_order_is_topological_and_stable(nodes):
    reg, _ = recording_registry()
    order = [n.id for n in plan(wf(*nodes), reg).order]
    assert sorted(order) == sorted(n["id"] for n in nodes)
    pos = {nid: i for i, nid in enumerate(order)}
    for n in nodes:
        assert all(pos[d] < pos[n["id"]] for d in n["depends_on"])
    assert order == [n.id for n in plan(wf(*nodes), reg).order]
    # the first node is the first declared node without dependencies
    assert order[0] == next(n["id"] for n in nodes if not n["depends_on"])
