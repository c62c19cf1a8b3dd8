"""The DAG workflow runner of observerd (contract section 11, ``internal/workflow``).

A :class:`Workflow` (the Archon YAML shape, as JSON) has a ``name`` and ``nodes``; a
:class:`Node` has an ``id``, an optional ``mode`` (default ``llm.chat``), ``depends_on``,
``inputs`` and ``prompt``. Running one has two phases:

1. :func:`plan` validates everything before any node runs, raising a :class:`WorkflowError`
   subclass (HTTP 400): the name, at least one node, node ids (unique, ``[A-Za-z0-9_-]``),
   every ``depends_on`` resolving, no cycle, every mode known, and every reference pointing
   at a node the referring node depends on (directly or transitively). The execution order is
   Kahn's topological sort with ties broken by declaration order, so it is deterministic.
2. :func:`run` executes the nodes one at a time in that order. A node's references are
   resolved against the outputs of the nodes before it, then its mode runs. A mode that
   raises (or times out) fails the node; every node depending on a failed or skipped node is
   skipped with the error ``upstream node X failed``, while independent nodes still run.
   Each node's result has its start time and duration.

References: ``$id`` is node ``id``'s whole output, ``$id.output`` the same, and
``$id.output.a.b`` walks nested objects (a numeric segment indexes a list). In ``inputs`` a
string that is exactly one reference is replaced by the value itself (any JSON type); inside a
longer string (and in ``prompt``) a reference is replaced by its text (strings as they are,
other values as JSON). ``$word`` where ``word`` is not a node id is plain text, except the
explicit form ``$word.output...``, which must name a node. A path that does not exist in the
output fails the node at run time (an unresolved reference).

Modes are async functions ``mode(ctx, inputs) -> dict`` in a :class:`ModeRegistry`;
:func:`builtin_registry` returns the built-in ones (fixture, distillation, drift, and the
matrixd / chatd modes when given the services they call).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import orjson

from ..clients.base import UpstreamError
from ..distill import drift, scoring
from .observer import ObservedOp, now_rfc3339

__all__ = [
    "Workflow",
    "Node",
    "Plan",
    "NodeResult",
    "RunResult",
    "ModeContext",
    "ModeServices",
    "ModeRegistry",
    "ModeError",
    "WorkflowError",
    "CycleError",
    "MissingDependencyError",
    "UnknownModeError",
    "DuplicateNodeIdError",
    "UnresolvedRefError",
    "plan",
    "run",
    "ops_for_run",
    "builtin_registry",
    "DEFAULT_MODE",
    "MAX_NODES",
]

log = logging.getLogger("lakehouse.memory.workflow")

DEFAULT_MODE = "llm.chat"
MAX_NODES = 1000
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")
_REF_RE = re.compile(r"\$([A-Za-z0-9_][A-Za-z0-9_-]*)((?:\.[A-Za-z0-9_-]+)*)")


# -- the workflow document ----------------------------------------------------------------------


class Node(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    #: "" = llm.chat
    mode: str = ""
    depends_on: list[str] = msgspec.field(default_factory=list)
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    prompt: str = ""
    #: the model of an llm.chat node (an ``inputs.model`` wins)
    model: str = ""


class Workflow(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    nodes: list[Node]
    description: str = ""


# -- errors -------------------------------------------------------------------------------------


class WorkflowError(ValueError):
    """An invalid workflow, found before any node ran."""


class CycleError(WorkflowError):
    pass


class MissingDependencyError(WorkflowError):
    pass


class UnknownModeError(WorkflowError):
    pass


class DuplicateNodeIdError(WorkflowError):
    pass


class UnresolvedRefError(WorkflowError):
    pass


class ModeError(Exception):
    """A mode's failure: the node fails with this message (not logged as a bug)."""


# -- references ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    node: str
    path: tuple[str, ...]
    text: str


def _refs_in_text(text: str, node_ids: set[str]) -> list[tuple[re.Match[str], _Ref]]:
    out = []
    for m in _REF_RE.finditer(text):
        name, rest = m.group(1), m.group(2)
        segments = tuple(rest.split(".")[1:]) if rest else ()
        explicit = bool(segments) and segments[0] == "output"
        if name not in node_ids:
            if explicit:
                raise UnresolvedRefError(f"reference {m.group(0)!r}: no node {name!r}")
            continue  # "$5 an hour": plain text
        if segments and not explicit:
            raise UnresolvedRefError(
                f"reference {m.group(0)!r}: expected ${name} or ${name}.output.<path>"
            )
        out.append((m, _Ref(name, segments[1:], m.group(0))))
    return out


def _refs_in(value: Any, node_ids: set[str]) -> list[_Ref]:
    """Every reference in the strings of ``value`` (validating their form)."""
    if isinstance(value, str):
        return [ref for _, ref in _refs_in_text(value, node_ids)]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [ref for v in items for ref in _refs_in(v, node_ids)]


def _walk_strings(value: Any, fn: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_strings(v, fn) for v in value]
    return value


def _lookup(ref: _Ref, outputs: Mapping[str, dict[str, Any]]) -> Any:
    value: Any = outputs[ref.node]
    for i, seg in enumerate(ref.path):
        if isinstance(value, dict) and seg in value:
            value = value[seg]
        elif isinstance(value, list) and seg.isdigit() and int(seg) < len(value):
            value = value[int(seg)]
        else:
            where = ".".join(("output", *ref.path[: i + 1]))
            raise ModeError(f"unresolved reference {ref.text!r}: ${ref.node}.{where} not found")
    return value


def _as_text(value: Any) -> str:
    # msgspec, not orjson: an output may hold integers wider than 64 bits
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _resolve_string(text: str, node_ids: set[str], outputs: Mapping[str, dict[str, Any]]) -> Any:
    refs = _refs_in_text(text, node_ids)
    if not refs:
        return text
    if len(refs) == 1 and refs[0][0].group(0) == text:
        return _lookup(refs[0][1], outputs)
    parts, pos = [], 0
    for m, ref in refs:
        parts += [text[pos : m.start()], _as_text(_lookup(ref, outputs))]
        pos = m.end()
    parts.append(text[pos:])
    return "".join(parts)


# -- planning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A validated workflow and its execution order."""

    workflow: Workflow
    order: list[Node]
    node_ids: frozenset[str]

    @property
    def name(self) -> str:
        return self.workflow.name


def _mode_of(node: Node) -> str:
    return node.mode or DEFAULT_MODE


def plan(workflow: Workflow, registry: ModeRegistry) -> Plan:
    """Validate ``workflow`` against ``registry`` and order its nodes (Kahn, declaration ties).

    Raises a :class:`WorkflowError` subclass naming the first problem found.
    """
    if not workflow.name.strip():
        raise WorkflowError("name: required (non-empty)")
    if not workflow.nodes:
        raise WorkflowError("nodes: a workflow needs at least one node")
    if len(workflow.nodes) > MAX_NODES:
        raise WorkflowError(f"nodes: at most {MAX_NODES}")
    index: dict[str, int] = {}
    for i, node in enumerate(workflow.nodes):
        if not _ID_RE.match(node.id):
            raise WorkflowError(
                f"nodes[{i}].id: {node.id!r} must be 1-128 characters of letters, digits, _ and -"
            )
        if node.id in index:
            raise DuplicateNodeIdError(f"duplicate node id {node.id!r}")
        index[node.id] = i
    for node in workflow.nodes:
        for dep in node.depends_on:
            if dep not in index:
                raise MissingDependencyError(f"node {node.id!r} depends on unknown node {dep!r}")
        mode = _mode_of(node)
        if mode not in registry:
            raise UnknownModeError(
                f"node {node.id!r}: unknown mode {mode!r} (known: {', '.join(registry.names())})"
            )

    # Kahn's algorithm; the ready set is a heap of declaration indexes.
    deps = [sorted({index[d] for d in node.depends_on}) for node in workflow.nodes]
    dependants: list[list[int]] = [[] for _ in workflow.nodes]
    indegree = [len(d) for d in deps]
    for i, ds in enumerate(deps):
        for d in ds:
            dependants[d].append(i)
    ready = [i for i, n in enumerate(indegree) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependants[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(workflow.nodes):
        stuck = [workflow.nodes[i].id for i, n in enumerate(indegree) if n > 0]
        raise CycleError(f"dependency cycle among nodes: {', '.join(stuck)}")

    # References: each must name an ancestor (so its output exists when the node runs).
    ids = set(index)
    ancestors: dict[str, set[str]] = {}
    for i in order:
        node = workflow.nodes[i]
        anc: set[str] = set()
        for d in node.depends_on:
            anc |= {d} | ancestors[d]
        ancestors[node.id] = anc
        for ref in _refs_in(node.inputs, ids) + _refs_in(node.prompt, ids):
            if ref.node not in anc:
                raise UnresolvedRefError(
                    f"node {node.id!r} refers to {ref.text!r} but does not depend on "
                    f"{ref.node!r} (add it to depends_on)"
                )
    return Plan(workflow, [workflow.nodes[i] for i in order], frozenset(ids))


# -- modes --------------------------------------------------------------------------------------


@dataclass
class ModeServices:
    """What modes may call: set by the daemon, ``None`` where a service is not wired."""

    #: lakehouse.clients.matrixd.MatrixdClient
    matrixd: Any = None
    #: lakehouse.clients.chatd.ChatdClient
    chatd: Any = None
    default_model: str = ""
    weak_models: list[str] = field(default_factory=list)
    #: the data directory the ``distill.*`` modes work on ("" = those modes fail their node)
    data_dir: str = ""


@dataclass
class ModeContext:
    """What a mode sees besides its inputs."""

    workflow: str
    node_id: str
    run_id: str
    #: the node's prompt with references resolved ("" when none)
    prompt: str
    #: the node's ``model`` field ("" when none)
    model: str
    services: ModeServices
    trace_id: str | None = None


ModeFn = Callable[[ModeContext, dict[str, Any]], Awaitable[dict[str, Any]]]


class ModeRegistry:
    """Mode name -> async function. ``register`` replaces an existing name."""

    def __init__(self, modes: Mapping[str, ModeFn] | None = None) -> None:
        self._modes: dict[str, ModeFn] = dict(modes or {})

    def register(self, name: str, fn: ModeFn) -> None:
        self._modes[name] = fn

    def get(self, name: str) -> ModeFn:
        return self._modes[name]

    def names(self) -> list[str]:
        return sorted(self._modes)

    def __contains__(self, name: object) -> bool:
        return name in self._modes


T = TypeVar("T")


def _typed(inputs: dict[str, Any], type_: type[T], mode: str) -> T:
    # The reference marshals inputs through typed structs via a JSON round-trip.
    try:
        return msgspec.convert(inputs, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise ModeError(f"{mode} inputs: {exc}") from exc


class _UpperInputs(msgspec.Struct, forbid_unknown_fields=True):
    text: str = ""


async def mode_fixture_echo(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Echo the inputs back (plus ``prompt`` when the node has one)."""
    out = dict(inputs)
    if ctx.prompt:
        out.setdefault("prompt", ctx.prompt)
    return out


async def mode_fixture_upper(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{text}`` (or the prompt) upper-cased; fails without any text."""
    text = _typed(inputs, _UpperInputs, "fixture.upper").text or ctx.prompt
    if not text:
        raise ModeError("fixture.upper: no text (set inputs.text or prompt)")
    return {"text": text.upper()}


class _ScoreInputs(msgspec.Struct, forbid_unknown_fields=True):
    record: dict[str, Any]


async def mode_distillation_score(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{record}`` -> the distillation score of the record."""
    req = _typed(inputs, _ScoreInputs, "distillation.score")
    return scoring.score_record(req.record).to_json()


class _DriftInputs(msgspec.Struct, forbid_unknown_fields=True):
    expected: list[float] | None = None
    actual: list[float] | None = None
    buckets: int | None = None
    pairs: list[dict[str, Any]] | None = None


async def mode_drift_scorer(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """PSI of ``{expected, actual, buckets?}``, or scorer drift of ``{pairs}``."""
    req = _typed(inputs, _DriftInputs, "drift.scorer")
    psi_form = req.expected is not None or req.actual is not None
    if psi_form == (req.pairs is not None):
        raise ModeError("drift.scorer: give either {expected, actual} or {pairs}")
    try:
        if req.pairs is not None:
            return drift.compute_scorer_drift(req.pairs)
        if req.expected is None or req.actual is None:
            raise ModeError("drift.scorer: PSI needs both expected and actual")
        return drift.compute_distribution_drift(req.expected, req.actual, req.buckets)
    except ValueError as exc:
        raise ModeError(f"drift.scorer: {exc}") from exc


def _matrixd(ctx: ModeContext, mode: str) -> Any:
    if ctx.services.matrixd is None:
        raise ModeError(f"{mode}: no matrixd configured")
    return ctx.services.matrixd


async def mode_matrix_search(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """POST the inputs to matrixd ``/matrix/search`` (matrixd validates them)."""
    return await _matrixd(ctx, "matrix.search").search(inputs, trace_id=ctx.trace_id)


class _Focus(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    defined_symbols: list[str] = msgspec.field(default_factory=list)
    imported_symbols: list[str] = msgspec.field(default_factory=list)


class _Chunk(msgspec.Struct, forbid_unknown_fields=True):
    source: str
    text: str


class _RelevanceInputs(msgspec.Struct, forbid_unknown_fields=True):
    focus: _Focus
    chunks: list[_Chunk]
    threshold: float | None = None


async def mode_matrix_relevance(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """``{focus, chunks, threshold?}`` through matrixd ``/matrix/relevance``."""
    req = _typed(inputs, _RelevanceInputs, "matrix.relevance")
    return await _matrixd(ctx, "matrix.relevance").relevance(
        msgspec.to_builtins(req.focus),
        msgspec.to_builtins(req.chunks),
        threshold=req.threshold,
        trace_id=ctx.trace_id,
    )


class _DowngradeInputs(msgspec.Struct, forbid_unknown_fields=True):
    mode: str
    model: str
    forced_mode: bool = False
    force_full_enrichment: bool | None = None
    weak_models: list[str] | None = None


async def mode_matrix_downgrade(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """matrixd ``/matrix/downgrade``; the weak-model list defaults to ``[models].weak_models``."""
    req = _typed(inputs, _DowngradeInputs, "matrix.downgrade")
    weak = req.weak_models if req.weak_models is not None else ctx.services.weak_models
    return await _matrixd(ctx, "matrix.downgrade").downgrade(
        req.mode,
        req.model,
        forced_mode=req.forced_mode,
        force_full_enrichment=req.force_full_enrichment,
        weak_models=weak,
        trace_id=ctx.trace_id,
    )


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    content: str


class _ChatInputs(msgspec.Struct, forbid_unknown_fields=True):
    prompt: str = ""
    model: str = ""
    system: str = ""
    messages: list[_Message] = msgspec.field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    #: "json" or a JSON schema (passed through to chatd)
    format: str | dict[str, Any] | None = None


async def mode_llm_chat(ctx: ModeContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """One chatd ``/chat`` call: ``prompt`` (the node's or ``inputs.prompt``) as the user turn.

    Output: chatd's answer (``model, provider, content, finish_reason, usage``); with a
    ``format`` (``"json"`` or a schema) also ``json``, the content parsed (null when it is
    not JSON), so later nodes can refer to ``$node.output.json.<key>``.
    """
    if ctx.services.chatd is None:
        raise ModeError("llm.chat: no chatd configured")
    req = _typed(inputs, _ChatInputs, "llm.chat")
    messages = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    messages += [msgspec.to_builtins(m) for m in req.messages]
    prompt = req.prompt or ctx.prompt
    if prompt:
        messages.append({"role": "user", "content": prompt})
    if not messages:
        raise ModeError("llm.chat: no prompt and no messages")
    answer = await ctx.services.chatd.chat(
        req.model or ctx.model or ctx.services.default_model,
        messages,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        format=req.format,
        trace_id=ctx.trace_id,
    )
    out = dict(answer)
    if req.format is not None:
        try:
            out["json"] = orjson.loads(str(answer.get("content", "")))
        except orjson.JSONDecodeError:
            out["json"] = None
    return out


def builtin_registry() -> ModeRegistry:
    """The eight built-in modes. The matrixd and chatd modes read their clients from
    :class:`ModeServices` and fail their node (not the plan) when it lacks them."""
    return ModeRegistry(
        {
            "fixture.echo": mode_fixture_echo,
            "fixture.upper": mode_fixture_upper,
            "distillation.score": mode_distillation_score,
            "drift.scorer": mode_drift_scorer,
            "matrix.search": mode_matrix_search,
            "matrix.relevance": mode_matrix_relevance,
            "matrix.downgrade": mode_matrix_downgrade,
            "llm.chat": mode_llm_chat,
        }
    )


# -- running ------------------------------------------------------------------------------------


@dataclass
class NodeResult:
    id: str
    mode: str
    #: succeeded | failed | skipped
    status: str
    started_at: str
    duration_ms: float = 0.0
    output: dict[str, Any] | None = None
    error: str = ""

    @property
    def success(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode,
            "status": self.status,
            "success": self.success,
            "output": self.output,
            "error": self.error,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RunResult:
    run_id: str
    workflow: str
    started_at: str
    duration_ms: float
    nodes: list[NodeResult]

    @property
    def success(self) -> bool:
        return all(n.success for n in self.nodes)

    def node(self, node_id: str) -> NodeResult:
        return next(n for n in self.nodes if n.id == node_id)

    def to_json(self) -> dict[str, Any]:
        counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        for n in self.nodes:
            counts[n.status] += 1
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "success": self.success,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "order": [n.id for n in self.nodes],
            "counts": counts,
            "nodes": [n.to_json() for n in self.nodes],
        }


async def run(
    p: Plan,
    registry: ModeRegistry,
    services: ModeServices | None = None,
    *,
    trace_id: str | None = None,
    node_timeout: float | None = None,
) -> RunResult:
    """Run a planned workflow; node failures are results, never exceptions."""
    services = services or ModeServices()
    run_id = uuid.uuid4().hex
    started, t0 = now_rfc3339(), time.perf_counter()
    outputs: dict[str, dict[str, Any]] = {}
    status: dict[str, str] = {}
    results: list[NodeResult] = []
    ids = set(p.node_ids)
    for node in p.order:
        mode = _mode_of(node)
        res = NodeResult(node.id, mode, "failed", now_rfc3339())
        results.append(res)
        upstream = next((d for d in node.depends_on if status[d] != "succeeded"), None)
        if upstream is not None:
            res.status, res.error = "skipped", f"upstream node {upstream} failed"
            status[node.id] = res.status
            continue
        n0 = time.perf_counter()
        try:
            inputs = _walk_strings(node.inputs, lambda s: _resolve_string(s, ids, outputs))
            prompt = _resolve_string(node.prompt, ids, outputs)
            ctx = ModeContext(
                workflow=p.name,
                node_id=node.id,
                run_id=run_id,
                prompt=_as_text(prompt),
                model=node.model,
                services=services,
                trace_id=trace_id,
            )
            coro = registry.get(mode)(ctx, inputs)
            out = await (asyncio.wait_for(coro, node_timeout) if node_timeout else coro)
            if not isinstance(out, dict):
                raise ModeError(f"{mode}: returned {type(out).__name__}, not an object")
            res.output, res.status = out, "succeeded"
            outputs[node.id] = out
        except ModeError as exc:
            res.error = str(exc)
        except UpstreamError as exc:
            res.error = f"{mode}: {exc}"
        except TimeoutError:
            res.error = f"{mode}: timed out after {node_timeout}s"
        except Exception as exc:
            # ADR-005 5.2: surfaced on the node and logged with its traceback, not hidden.
            log.exception("workflow %s: node %s (%s) raised", p.name, node.id, mode)
            res.error = f"{mode}: {type(exc).__name__}: {exc}"
        res.duration_ms = (time.perf_counter() - n0) * 1000.0
        status[node.id] = res.status
    return RunResult(run_id, p.name, started, (time.perf_counter() - t0) * 1000.0, results)


def ops_for_run(result: RunResult, trace_id: str = "") -> list[ObservedOp]:
    """One observed op per node (ADR-005 5.3: recorded after the run), source ``workflow``."""
    return [
        ObservedOp(
            endpoint=f"workflow:{n.mode}",
            source="workflow",
            timestamp=n.started_at,
            success=n.success,
            duration_ms=n.duration_ms,
            input_summary=f"{result.workflow}/{n.id}",
            output_summary=n.status,
            error=n.error,
            trace_id=trace_id,
            metadata={
                "run_id": result.run_id,
                "workflow": result.workflow,
                "node_id": n.id,
                "mode": n.mode,
                "status": n.status,
            },
        )
        for n in result.nodes
    ]
