"""The MCP server: the stack's main operations as tools and resources (docs/mcp.md).

:func:`build_server` returns an :class:`mcp.server.mcpserver.MCPServer` (the official SDK)
whose every tool is one call, or two, through the gateway with the existing clients of
:mod:`lakehouse.clients` pointed at ``<gateway>/v1``. Nothing a daemon decides is decided
here: mcpd shapes arguments into the daemon's request, runs the call, and turns the answer
or the failure into something a model can read (:mod:`lakehouse.mcp.answers`).

Every tool call:

1. gets a fresh trace id, sent as ``X-Lakehouse-Trace-Id`` (the gateway and the daemons log
   it) and returned in the result's ``_meta`` as ``lakehouse/trace_id``;
2. answers compact JSON text, cut with a paging note past ``[mcpd].max_answer_chars``;
3. fails as a tool error (``isError``) naming the daemon, with its message for a 4xx;
4. is witnessed in observerd as an op (``source: "mcp"``, ``endpoint: "mcp:<tool>"``, the
   trace id, success, duration), fail-open: a witness that cannot be recorded is logged and
   never changes the answer.

Tool inputs are strict: an argument the schema does not name is an error, as an unknown JSON
field is for the daemons (a renamed argument must fail loudly, not be ignored).

No ``from __future__ import annotations`` here: the SDK reads the tools' annotations, and
some of them are built from the configuration (the model tiers) inside :func:`build_server`.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from ..clients.base import ServiceClient, UpstreamError
from ..clients.catalogd import CatalogdClient
from ..clients.chatd import ChatdClient
from ..clients.matrixd import MatrixdClient
from ..clients.observerd import ObserverdClient
from ..clients.pathwayd import PathwaydClient
from ..clients.queryd import QuerydClient
from ..clients.vectord import VectordClient
from ..config import Config, ModelsConfig
from ..web import internal_session, mint_trace_id
from .answers import failure_message, render

__all__ = ["Upstream", "build_server", "TOOL_NAMES", "resolve_model", "TRACE_META_KEY"]

log = logging.getLogger("lakehouse.mcpd")

#: the key of a tool result's ``_meta`` that carries the call's trace id
TRACE_META_KEY = "lakehouse/trace_id"

TOOL_NAMES = (
    "matrix_search",
    "playbook_record",
    "sql",
    "list_datasets",
    "list_indexes",
    "vector_search",
    "embed",
    "validate",
    "iterate",
    "memory_add",
    "memory_search",
    "memory_history",
    "inbox_record",
    "observe",
    "chat",
)

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_LLM = ToolAnnotations(read_only_hint=True, open_world_hint=True)


def resolve_model(models: ModelsConfig, name: str) -> str:
    """A model tier name (``local_fast``, ``cloud_judge``, ...) -> its model; other names as is.

    ``""`` is the ``local_fast`` tier, as for validatord's default.
    """
    name = name.strip()
    if not name:
        return models.local_fast
    tier = getattr(models, name, None) if not name.startswith("_") else None
    return tier if isinstance(tier, str) else name


def _tier_names(models: ModelsConfig) -> list[str]:
    return [k for k, v in vars(models).items() if isinstance(v, str)]


class Upstream:
    """The gateway as the tools reach it: one aiohttp session, one client per daemon.

    The session is opened on first use (inside the server's event loop) and closed by
    :meth:`close`. It carries the stack's bearer token when one is configured.
    """

    def __init__(self, config: Config, gateway_url: str | None = None) -> None:
        self.config = config
        self.gateway_url = (gateway_url or config.upstream("mcpd", "gateway")).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, Any] = {}

    def _open(self) -> None:
        section = self.config.mcpd
        session = internal_session(self.config, timeout=aiohttp.ClientTimeout(total=None))
        base = f"{self.gateway_url}/v1"
        t = section.call_timeout
        self._clients = {
            "matrixd": MatrixdClient(session, base, timeout=t),
            "queryd": QuerydClient(session, base, timeout=t),
            "catalogd": CatalogdClient(session, base, timeout=t),
            "vectord": VectordClient(session, base, timeout=t),
            "embedd": ServiceClient(session, base, "embedd", t),
            "validatord": ServiceClient(session, base, "validatord", t),
            "pathwayd": PathwaydClient(session, base, timeout=t),
            "observerd": ObserverdClient(session, base, timeout=t),
            "chatd": ChatdClient(session, base, timeout=t),
            "witness": ObserverdClient(session, base, timeout=section.witness_timeout),
        }
        self._session = session

    def client(self, daemon: str) -> Any:
        if self._session is None or self._session.closed:
            self._open()
        return self._clients[daemon]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class _Call:
    """One tool call in flight: its trace id and what the witness records."""

    tool: str
    arguments: dict[str, Any]
    trace_id: str = field(default_factory=mint_trace_id)
    started: float = field(default_factory=time.monotonic)


def _summary(value: Any, limit: int = 500) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ChatMessage(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


def _strict(tool: Tool) -> Tool:
    """``tool`` with its arguments model closed: an argument not in the schema is an error."""
    base = tool.fn_metadata.arg_model
    closed = type(
        base.__name__,
        (base,),
        {"model_config": ConfigDict(extra="forbid", arbitrary_types_allowed=True)},
    )
    tool.fn_metadata.arg_model = closed
    tool.parameters = {**tool.parameters, "additionalProperties": False}
    return tool


def build_server(config: Config, upstream: Upstream, *, transport: str = "http") -> MCPServer:
    """The MCP server for ``config``; every tool calls through ``upstream``."""
    section = config.mcpd
    limit = section.max_answer_chars
    tiers = ", ".join(_tier_names(config.models))

    async def witness(call: _Call, ok: bool, output: str, error: str) -> None:
        if not section.witness:
            return
        op = {
            "endpoint": f"mcp:{call.tool}",
            "source": "mcp",
            "success": ok,
            "duration_ms": round((time.monotonic() - call.started) * 1000, 3),
            "input_summary": _summary(call.arguments),
            "output_summary": output[:500],
            "error": error[:2000],
            "trace_id": call.trace_id,
            "metadata": {"tool": call.tool, "transport": transport},
        }
        try:
            # the op carries its trace id in the body: observerd records the body as given
            await upstream.client("witness").post("/observer/event", op, trace_id=call.trace_id)
        except Exception as exc:  # fail-open (ADR-005 5.1): the answer stands
            log.warning("could not witness %s (trace %s) in observerd: %s", call.tool, call.trace_id, exc)

    def result(call: _Call, text: str, is_error: bool) -> CallToolResult:
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            is_error=is_error,
            _meta={TRACE_META_KEY: call.trace_id},
        )

    async def run(
        tool: str,
        arguments: dict[str, Any],
        work: Callable[[str], Awaitable[Any]],
        how_to_page: str = "narrow the request",
    ) -> CallToolResult:
        call = _Call(tool, arguments)
        try:
            answer = await work(call.trace_id)
        except UpstreamError as exc:
            message = failure_message(exc, upstream.gateway_url)
            await witness(call, False, "", message)
            return result(call, message, True)
        except ValueError as exc:  # refused before any call (a client's own check)
            message = f"{tool}: {exc}"
            await witness(call, False, "", message)
            return result(call, message, True)
        except Exception as exc:
            log.exception("tool %s failed unexpectedly (trace %s)", tool, call.trace_id)
            message = f"{tool}: mcpd failed unexpectedly ({type(exc).__name__}); trace {call.trace_id} is in mcpd's log"
            await witness(call, False, "", message)
            return result(call, message, True)
        text, cut = render(answer, limit, how_to_page)
        await witness(call, True, f"{len(text)} chars" + (", truncated" if cut else ""), "")
        return result(call, text, False)

    def args(**values: Any) -> dict[str, Any]:
        """The arguments a call was given, without the ones left at None (for the witness)."""
        return {k: v for k, v in values.items() if v is not None}

    # -- matrixd ----------------------------------------------------------------------------

    async def matrix_search(
        query_text: Annotated[str, Field(description="the demand, in words: 'forklift operator, Milwaukee, nights'")],
        corpora: Annotated[list[str], Field(description="vector corpora to search (list_indexes shows them)")],
        k: Annotated[int, Field(ge=1, description="results wanted")] = 10,
        use_playbook: Annotated[bool, Field(description="boost or inject answers approved before for similar queries")] = False,
        query_role: Annotated[str, Field(description="the role asked for; playbook answers of another role are not used")] = "",
        metadata_filter: Annotated[dict[str, Any] | None, Field(description="exact-match filter on result metadata, e.g. {'state': 'WI'}")] = None,
        exclude_ids: Annotated[list[str] | None, Field(description="ids never to return (already placed workers)")] = None,
        playbook_corpus: Annotated[str, Field(description="playbook corpus; '' = matrixd's default")] = "",
    ) -> CallToolResult:
        body: dict[str, Any] = {"query_text": query_text, "corpora": corpora, "k": k}
        if use_playbook:
            body["use_playbook"] = True
        if query_role:
            body["query_role"] = query_role
        if metadata_filter is not None:
            body["metadata_filter"] = metadata_filter
        if exclude_ids:
            body["exclude_ids"] = exclude_ids
        if playbook_corpus:
            body["playbook_corpus"] = playbook_corpus
        return await run(
            "matrix_search",
            body,
            lambda tid: upstream.client("matrixd").search(body, trace_id=tid),
            "ask for a smaller k, or exclude the ids already seen with exclude_ids",
        )

    async def playbook_record(
        query_text: Annotated[str, Field(description="the query the answer was approved for")],
        answer_id: Annotated[str, Field(description="the approved answer's id, e.g. a worker id")],
        answer_corpus: Annotated[str, Field(description="the corpus the answer lives in")],
        score: Annotated[float, Field(ge=0, le=1, description="how good the answer was, 0..1 (1 = approved)")] = 1.0,
        role: Annotated[str, Field(description="the role of the query, for the role gate")] = "",
        tags: Annotated[list[str] | None, Field(description="free labels kept with the entry")] = None,
        playbook_corpus: Annotated[str, Field(description="playbook corpus; '' = matrixd's default")] = "",
    ) -> CallToolResult:
        arguments = args(query_text=query_text, answer_id=answer_id, answer_corpus=answer_corpus,
                         score=score, role=role, tags=tags, playbook_corpus=playbook_corpus)
        return await run(
            "playbook_record",
            arguments,
            lambda tid: upstream.client("matrixd").record(
                query_text, answer_id, answer_corpus, score,
                role=role or None, tags=tags, playbook_corpus=playbook_corpus or None, trace_id=tid,
            ),
        )

    # -- queryd, catalogd, vectord, embedd ----------------------------------------------------

    async def sql(
        sql: Annotated[str, Field(description="one read-only SELECT over the datasets (list_datasets names them)")],
        offset: Annotated[int, Field(ge=0, description="first row to return, for paging")] = 0,
    ) -> CallToolResult:
        page = section.sql_max_rows

        async def work(tid: str) -> dict[str, Any]:
            answer = await upstream.client("queryd").sql(sql, trace_id=tid)
            rows = answer.get("rows", [])
            out = {**answer, "rows": rows[offset : offset + page], "offset": offset}
            out["returned"] = len(out["rows"])
            if offset + page < len(rows):
                out["next_offset"] = offset + page
                out["note"] = (
                    f"{len(rows)} rows in all, {page} per call: call again with "
                    f"offset={offset + page} (add ORDER BY for a stable order)"
                )
            return out

        return await run("sql", {"sql": sql, "offset": offset}, work,
                         "call again with a larger offset, or select fewer columns")

    async def list_datasets() -> CallToolResult:
        async def work(tid: str) -> dict[str, Any]:
            manifests = await upstream.client("catalogd").list(trace_id=tid)
            return {"datasets": manifests, "count": len(manifests)}

        return await run("list_datasets", {}, work, "read one dataset with sql instead")

    async def list_indexes() -> CallToolResult:
        async def work(tid: str) -> dict[str, Any]:
            indexes = await upstream.client("vectord").list(trace_id=tid)
            return {"indexes": indexes, "count": len(indexes)}

        return await run("list_indexes", {}, work)

    async def vector_search(
        index: Annotated[str, Field(description="the vector index (list_indexes names them)")],
        text: Annotated[str | None, Field(description="text to embed and search for (give text or vector)")] = None,
        vector: Annotated[list[float] | None, Field(description="a query vector of the index's dimension (give text or vector)")] = None,
        k: Annotated[int, Field(ge=1, description="results wanted")] = 10,
        exclude_ids: Annotated[list[str] | None, Field(description="ids never to return")] = None,
        model: Annotated[str, Field(description="embedding model for text; '' = embedd's default")] = "",
    ) -> CallToolResult:
        arguments = args(index=index, text=text, vector=None if vector is None else f"<{len(vector)} numbers>",
                         k=k, exclude_ids=exclude_ids, model=model or None)

        async def work(tid: str) -> dict[str, Any]:
            if (text is None) == (vector is None):
                raise ValueError("give exactly one of text and vector")
            query = vector
            if text is not None:
                body: dict[str, Any] = {"texts": [text]}
                if model:
                    body["model"] = model
                query = (await upstream.client("embedd").post("/embed", body, trace_id=tid))["vectors"][0]
            hits = await upstream.client("vectord").search(index, query, k, exclude_ids=exclude_ids, trace_id=tid)
            return {"index": index, "results": hits}

        return await run("vector_search", arguments, work, "ask for a smaller k")

    async def embed(
        texts: Annotated[list[str], Field(min_length=1, description="texts to embed, one vector each")],
        model: Annotated[str, Field(description="embedding model; '' = embedd's default")] = "",
    ) -> CallToolResult:
        body: dict[str, Any] = {"texts": texts}
        if model:
            body["model"] = model
        return await run(
            "embed",
            body,
            lambda tid: upstream.client("embedd").post("/embed", body, trace_id=tid),
            "embed fewer texts per call",
        )

    # -- validatord -------------------------------------------------------------------------

    async def validate(
        kind: Annotated[Literal["fill", "email", "playbook"], Field(description="which validator")],
        artifact: Annotated[dict[str, Any], Field(description="the artifact: {fills: [...]}, {to, body, ...} or {operation, endorsed_names, fingerprint, ...}")],
        context: Annotated[dict[str, Any] | None, Field(description="target_count, city, state, role, client_id, candidate_id")] = None,
    ) -> CallToolResult:
        body: dict[str, Any] = {"kind": kind, "artifact": artifact}
        if context is not None:
            body["context"] = context
        return await run("validate", body, lambda tid: upstream.client("validatord").post("/validate", body, trace_id=tid))

    async def iterate(
        kind: Annotated[Literal["fill", "email", "playbook"], Field(description="the artifact to generate and validate")],
        prompt: Annotated[str, Field(description="what to generate")],
        model: Annotated[str, Field(description=f"a model, or a tier: {tiers}; '' = local_fast")] = "",
        system: Annotated[str, Field(description="system prompt")] = "",
        context: Annotated[dict[str, Any] | None, Field(description="validation context, as for validate")] = None,
        max_iterations: Annotated[int, Field(ge=0, description="attempts at most; 0 = validatord's default (3)")] = 0,
        temperature: Annotated[float | None, Field(ge=0, description="sampling temperature")] = None,
        max_tokens: Annotated[int, Field(ge=0, description="0 = validatord's default")] = 0,
    ) -> CallToolResult:
        body: dict[str, Any] = {"kind": kind, "prompt": prompt, "model": resolve_model(config.models, model)}
        for key, value in (("system", system), ("context", context), ("max_iterations", max_iterations),
                           ("temperature", temperature), ("max_tokens", max_tokens)):
            if value:
                body[key] = value
        if temperature == 0:
            body["temperature"] = 0.0

        async def work(tid: str) -> Any:
            return await upstream.client("validatord").post("/iterate", {**body, "trace_id": tid}, trace_id=tid)

        return await run("iterate", body, work, "the history is cut; the artifact is complete")

    # -- pathwayd ---------------------------------------------------------------------------

    async def memory_add(
        content: Annotated[Any, Field(description="any JSON value to remember")],
        tags: Annotated[list[str] | None, Field(description="labels to find it by")] = None,
        uid: Annotated[str, Field(description="a stable id: adding the same uid again only counts a replay")] = "",
    ) -> CallToolResult:
        arguments = args(content=content, tags=tags, uid=uid or None)
        client = upstream.client("pathwayd")
        if uid:
            return await run("memory_add", arguments,
                             lambda tid: client.add_idempotent(uid, content, tags, trace_id=tid))
        return await run("memory_add", arguments, lambda tid: client.add(content, tags, trace_id=tid))

    async def memory_search(
        query: Annotated[str, Field(description="words that must all appear (case-insensitive); '' = any")] = "",
        tags: Annotated[list[str] | None, Field(description="tags that must all be present")] = None,
        limit: Annotated[int, Field(ge=1, description="traces wanted, newest first")] = 20,
    ) -> CallToolResult:
        arguments = args(query=query or None, tags=tags, limit=limit)
        return await run(
            "memory_search",
            arguments,
            lambda tid: upstream.client("pathwayd").search(query or None, tags, limit, trace_id=tid),
            "ask for a smaller limit or narrow the query",
        )

    async def memory_history(
        uid: Annotated[str, Field(description="a trace uid; its revisions are walked back to the first")],
    ) -> CallToolResult:
        return await run("memory_history", {"uid": uid},
                         lambda tid: upstream.client("pathwayd").history(uid, trace_id=tid),
                         "read older revisions with memory_history on the last uid shown")

    # -- observerd --------------------------------------------------------------------------

    async def inbox_record(
        type: Annotated[Literal["email", "sms"], Field(description="the channel the message came by")],  # noqa: A002
        body: Annotated[str, Field(description="the message text (at most 8 KiB)")],
        sender: Annotated[str, Field(description="who sent it")] = "",
        subject: Annotated[str, Field(description="subject line")] = "",
        priority: Annotated[Literal["", "urgent", "high", "medium", "low"], Field(description="'' = medium")] = "",
        tag: Annotated[str, Field(description="a free label")] = "",
    ) -> CallToolResult:
        arguments = args(type=type, body=body, sender=sender, subject=subject, priority=priority, tag=tag)
        return await run(
            "inbox_record",
            arguments,
            lambda tid: upstream.client("observerd").inbox(
                type, body, sender=sender, subject=subject, priority=priority, tag=tag, trace_id=tid
            ),
        )

    async def observe(
        endpoint: Annotated[str, Field(min_length=1, description="what was done, e.g. 'fill:contract-118'")],
        success: Annotated[bool, Field(description="whether it worked")],
        input_summary: Annotated[str, Field(description="short description of the input")] = "",
        output_summary: Annotated[str, Field(description="short description of the outcome")] = "",
        error: Annotated[str, Field(description="what went wrong, if anything")] = "",
        duration_ms: Annotated[float, Field(ge=0, description="how long it took")] = 0.0,
        scenario: Annotated[str, Field(description="the scenario it belongs to (source 'scenario')")] = "",
        source: Annotated[str, Field(description="mcp, scenario, overseer_correction, ...; '' = mcp")] = "",
    ) -> CallToolResult:
        event = args(endpoint=endpoint, success=success, input_summary=input_summary,
                     output_summary=output_summary, error=error, duration_ms=duration_ms,
                     scenario=scenario, source=source or "mcp")
        return await run(
            "observe",
            event,
            lambda tid: upstream.client("observerd").post(
                "/observer/event", {**event, "trace_id": tid}, trace_id=tid
            ),
        )

    # -- chatd ------------------------------------------------------------------------------

    async def chat(
        messages: Annotated[list[ChatMessage], Field(min_length=1, description="the conversation, oldest first")],
        model: Annotated[str, Field(description=f"a model (ollama/..., openrouter/..., ...) or a tier: {tiers}; '' = local_fast")] = "",
        max_tokens: Annotated[int | None, Field(ge=1, description="answer length cap")] = None,
        temperature: Annotated[float | None, Field(ge=0, description="sampling temperature")] = None,
        format: Annotated[str | None, Field(description="'json' for a JSON answer")] = None,  # noqa: A002
    ) -> CallToolResult:
        resolved = resolve_model(config.models, model)
        wire = [m.model_dump() for m in messages]
        arguments = args(model=resolved, messages=f"<{len(wire)} messages>", max_tokens=max_tokens,
                         temperature=temperature, format=format)
        return await run(
            "chat",
            arguments,
            lambda tid: upstream.client("chatd").chat(
                resolved, wire, max_tokens=max_tokens, temperature=temperature, format=format, trace_id=tid
            ),
            "ask for a shorter answer with max_tokens",
        )

    descriptions = {
        matrix_search: ("Find the best matches for a demand across vector corpora, optionally "
                        "boosted by the playbook of approved answers.", _READ),
        playbook_record: ("Record an approved answer for a query in the playbook, so similar "
                          "queries find it later.", _WRITE),
        sql: ("Run one read-only SQL query over the cataloged datasets; rows come in pages.", _READ),
        list_datasets: ("List the cataloged datasets (the tables sql can read).", _READ),
        list_indexes: ("List the vector indexes with their dimension and size.", _READ),
        vector_search: ("Nearest items of one vector index, for a text or a vector.", _READ),
        embed: ("Turn texts into embedding vectors.", _READ),
        validate: ("Check a fill, email or playbook artifact against the roster and the rules.", _READ),
        iterate: ("Generate an artifact with a model, validate it, and retry with the errors until "
                  "it passes.", _LLM),
        memory_add: ("Remember a JSON value as a versioned memory trace.", _WRITE),
        memory_search: ("Find active memory traces by words and tags, newest first.", _READ),
        memory_history: ("Show a memory trace and every earlier revision of it.", _READ),
        inbox_record: ("Record an incoming email or SMS in the observer's inbox.", _WRITE),
        observe: ("Record an operation you performed in the observer's witness log.", _WRITE),
        chat: ("Ask a language model; model tiers like local_fast are accepted.", _LLM),
    }
    tools = []
    for fn, (description, annotations) in descriptions.items():
        tools.append(_strict(Tool.from_function(
            fn, name=fn.__name__, description=description, annotations=annotations, structured_output=False
        )))
    assert tuple(t.name for t in tools) == TOOL_NAMES

    server: MCPServer = MCPServer(
        name="lakehouse",
        title="Lakehouse",
        instructions=(
            "Retrieval substrate for staffing: find workers for a demand (matrix_search), "
            "read data (sql, list_datasets), record approved answers (playbook_record), "
            "validate artifacts (validate, iterate), and keep memories (memory_*)."
        ),
        tools=tools,
        log_level="WARNING",
    )
    _add_resources(server, config, upstream)
    return server


def _add_resources(server: MCPServer, config: Config, upstream: Upstream) -> None:
    """The read-only views: the dataset catalog, the index list, playbook entries."""

    async def read(daemon: str, what: Callable[[Any], Awaitable[Any]]) -> str:
        try:
            answer = await what(upstream.client(daemon))
        except UpstreamError as exc:
            if exc.status == 404:
                raise ResourceNotFoundError(failure_message(exc, upstream.gateway_url)) from None
            raise ResourceError(failure_message(exc, upstream.gateway_url)) from None
        return orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()

    @server.resource("lakehouse://datasets", name="datasets", mime_type="application/json",
                     description="The dataset catalog: every cataloged dataset's manifest.")
    async def datasets() -> str:
        return await read("catalogd", lambda c: c.list())

    @server.resource("lakehouse://indexes", name="indexes", mime_type="application/json",
                     description="The vector indexes with their parameters and sizes.")
    async def indexes() -> str:
        return await read("vectord", lambda c: c.list())

    @server.resource("lakehouse://playbook/{corpus}", name="playbook", mime_type="application/json",
                     description="The entries of one playbook corpus (query -> approved answer), by id.")
    async def playbook(corpus: str) -> str:
        cap = config.mcpd.playbook_max_entries

        async def entries(vectord: VectordClient) -> dict[str, Any]:
            info = await vectord.info(corpus)
            count = int(info.get("count", 0))
            out: dict[str, Any] = {"corpus": corpus, "count": count, "entries": []}
            if count:
                # vectord has no listing route: a search at k = count returns every live item
                # (the query vector does not matter; entries are then ordered by id)
                probe = [0.0] * int(info["dimension"])
                probe[0] = 1.0
                hits = await vectord.search(corpus, probe, min(count, cap))
                rows = [{"playbook_id": h["id"], **(h.get("metadata") or {})} for h in hits]
                out["entries"] = sorted(rows, key=lambda r: r["playbook_id"])
            out["returned"] = len(out["entries"])
            if count > cap:
                out["note"] = f"{count} entries, {cap} shown ([mcpd].playbook_max_entries)"
            return out

        return await read("vectord", entries)

    @server.resource("lakehouse://observer/stats", name="observer_stats", mime_type="application/json",
                     description="What observerd has witnessed: totals, by source, recent scenario ops.")
    async def observer_stats() -> str:
        return await read("observerd", lambda c: c.stats())
