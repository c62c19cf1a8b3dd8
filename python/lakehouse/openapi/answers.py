"""The shapes of the daemons' answers, for their API descriptions (one section per daemon).

Requests are described by the msgspec types that decode them; answers are built as dicts by
each daemon's library module, so their shapes are written down here. They say which fields an
answer always has and their types (extra fields are allowed, so a field added to an answer is
not a break); the schema fuzzer (tests/services/test_fuzz.py) checks every answer it gets
against them, which is what keeps them true.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..vectors.registry import MergeResult

#: any JSON value (a client's metadata, a trace's content)
Json = Any


# -- storaged -----------------------------------------------------------------------------------


class StoredObject(msgspec.Struct):
    key: str
    size: int
    sha256: str | None


class ObjectDeleted(msgspec.Struct):
    key: str
    deleted: bool


class ListedObject(msgspec.Struct):
    key: str
    size: int


class ObjectList(msgspec.Struct):
    prefix: str
    after: str
    items: list[ListedObject]
    count: int
    truncated: bool
    next_after: str | None


# -- catalogd -----------------------------------------------------------------------------------


class ColumnOut(msgspec.Struct):
    name: str
    type: str


class Manifest(msgspec.Struct):
    dataset_id: str
    name: str
    schema_fingerprint: str
    key: str
    row_count: int | None
    size: int | None
    columns: list[ColumnOut]
    created_at: str
    updated_at: str


class Registered(Manifest):
    #: the same name and fingerprint were registered before (same dataset_id)
    existing: bool


class ManifestDeleted(msgspec.Struct):
    deleted: bool
    manifest: Manifest


class ManifestList(msgspec.Struct):
    manifests: list[Manifest]
    count: int


# -- ingestd ------------------------------------------------------------------------------------


class Ingested(msgspec.Struct):
    dataset_id: str
    name: str
    key: str
    row_count: int
    schema_fingerprint: str
    columns: list[ColumnOut]
    existing: bool
    size: int


# -- queryd -------------------------------------------------------------------------------------


class SqlAnswer(msgspec.Struct):
    columns: list[ColumnOut]
    #: one list of values per row, in column order
    rows: list[list[Json]]
    row_count: int
    elapsed_ms: float


# -- vectord ------------------------------------------------------------------------------------


class IndexParams(msgspec.Struct):
    name: str
    dimension: int
    distance: str
    m: int
    ef_search: int
    ef_construction: int
    count: int
    #: present (false) only for an index created with rotate false
    rotate: bool = True


class IndexInfo(IndexParams, kw_only=True):
    #: the core's counters
    stats: dict[str, Json]
    #: saves: key, dirty, counters, last_save
    persistence: dict[str, Json]


class IndexList(msgspec.Struct):
    indexes: list[IndexParams]


class IndexDropped(msgspec.Struct):
    name: str
    deleted: bool


class Added(msgspec.Struct):
    added: int
    updated: int


class Hit(msgspec.Struct):
    id: str
    distance: float
    metadata: Json = None


class VectorSearch(msgspec.Struct):
    """``{results}``: a list of hits for ``vector``, a list of hit lists for ``vectors``."""

    results: list[Hit | list[Hit]]


class ItemsDeleted(msgspec.Struct):
    deleted: int


class Item(msgspec.Struct):
    id: str
    vector: list[float]
    metadata: Json = None


#: the merge answer is MergeResult.to_json(), every field of the dataclass
Merged = MergeResult


class Saved(msgspec.Struct):
    name: str
    saved: bool
    count: int


# -- embedd -------------------------------------------------------------------------------------


class Embedded(msgspec.Struct):
    model: str
    dimension: int
    vectors: list[list[float]]


class EmbedStats(msgspec.Struct):
    hits: int
    misses: int
    hit_rate: float
    size: int
    capacity: int
    provider: str
    default_model: str


# -- matrixd ------------------------------------------------------------------------------------


class MatrixHit(msgspec.Struct):
    id: str
    corpus: str
    distance: float
    metadata: Json
    #: "corpus", "boosted" or "injected"
    source: str


class MatrixSearch(msgspec.Struct):
    results: list[MatrixHit]
    per_corpus: dict[str, Json]
    metadata_filter_dropped: int
    playbook: dict[str, Json]


class PlaybookRecorded(msgspec.Struct):
    playbook_id: str
    playbook_corpus: str


class BulkEntryResult(msgspec.Struct):
    index: int
    playbook_id: str | None = None
    playbook_corpus: str | None = None
    error: str | None = None


class BulkRecorded(msgspec.Struct):
    results: list[BulkEntryResult]
    recorded: int
    failed: int


class ScoredChunk(msgspec.Struct):
    index: int
    source: str
    text: str
    score: float
    signals: dict[str, Json]
    doc_id: str | None = None


class Relevance(msgspec.Struct):
    threshold: float
    kept: list[ScoredChunk]
    dropped: list[ScoredChunk]


class Downgrade(msgspec.Struct):
    mode: str
    reason: str
    downgraded_from: str | None = None


class Corpora(msgspec.Struct):
    corpora: list[str | None]
    indexes: list[dict[str, Json]]


class CorpusJob(msgspec.Struct):
    job_id: str
    name: str
    #: running | done | partial | failed
    status: str
    rows_read: int
    rows_skipped: int
    rows_embedded: int
    added: int
    updated: int
    batches: int
    failed_batches: list[dict[str, Json]]
    dimension: int | None
    model: str | None
    error: str | None
    elapsed_ms: float


class CorpusJobs(msgspec.Struct):
    jobs: list[CorpusJob]


# -- pathwayd -----------------------------------------------------------------------------------


class Trace(msgspec.Struct):
    uid: str
    content: Json
    created_at_ns: int
    updated_at_ns: int
    retired: bool
    replay_count: int
    predecessor_uid: str | None = None
    tags: list[str] | None = None


class History(msgspec.Struct):
    uid: str
    traces: list[Trace]
    truncated: bool
    missing_uid: str | None = None


class TraceSearch(msgspec.Struct):
    traces: list[Trace]
    total: int


class PathwayStats(msgspec.Struct):
    total: int
    active: int
    retired: int
    events_replayed: int
    events_skipped: int


# -- observerd ----------------------------------------------------------------------------------


class Op(msgspec.Struct):
    endpoint: str
    source: str
    timestamp: str
    success: bool
    duration_ms: float
    input_summary: str
    output_summary: str
    error: str
    scenario: str
    trace_id: str
    metadata: dict[str, Json] | None


class ObserverStats(msgspec.Struct):
    total: int
    successes: int
    failures: int
    by_source: dict[str, int]
    recent_scenario_ops: list[Op]


class ObserverHealth(msgspec.Struct):
    status: str
    service: str
    ring_size: int
    ring_capacity: int


class InboxMessage(msgspec.Struct):
    id: str
    received_at: str
    type: str
    priority: str
    sender: str
    subject: str
    tag: str
    body: str


class Inbox(msgspec.Struct):
    messages: list[InboxMessage]
    count: int


class NodeResult(msgspec.Struct):
    id: str
    mode: str
    status: Literal["succeeded", "failed", "skipped"]
    success: bool
    output: dict[str, Json] | None
    error: str
    started_at: str
    duration_ms: float


class WorkflowRun(msgspec.Struct):
    run_id: str
    workflow: str
    success: bool
    started_at: str
    duration_ms: float
    order: list[str]
    counts: dict[str, int]
    nodes: list[NodeResult]


# -- chatd --------------------------------------------------------------------------------------


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatAnswer(msgspec.Struct):
    model: str
    provider: str
    content: str
    finish_reason: str
    usage: Usage


class ProviderDetail(msgspec.Struct):
    name: str
    kind: str
    base_url: str
    enabled: bool
    authenticated: bool
    routes: Json


class Providers(msgspec.Struct):
    providers: list[str]
    details: list[ProviderDetail]


# -- validatord ---------------------------------------------------------------------------------


class RosterState(msgspec.Struct):
    source: str | None
    count: int
    skipped: int
    loaded_at: float | None
    last_error: str | None


class Finding(msgspec.Struct):
    severity: Literal["Warning", "Info"]
    field: str | None
    message: str


class Report(msgspec.Struct):
    validator: str
    findings: list[Finding]
    elapsed_ms: int


def _reason(*fields: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(fields),
        "properties": {f: {"type": "string"} for f in fields},
    }


#: the 422 body of /validate: the reference's externally tagged ValidationError (one key),
#: ``{"Consistency": {"reason": "..."}}``; ``Schema`` also names the field
VALIDATION_ERROR: dict[str, Any] = {
    "description": "The reference's ValidationError: one key, the category",
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "Schema": _reason("field", "reason"),
        "Completeness": _reason("reason"),
        "Consistency": _reason("reason"),
        "Policy": _reason("reason"),
    },
}


class IterateAccepted(msgspec.Struct):
    artifact: dict[str, Json]
    validation: Report
    iterations: int
    history: list[dict[str, Json]]
    trace_id: str


class IterateFailed(msgspec.Struct):
    """422 when every attempt failed validation; 502 / 504 when chatd could not answer."""

    #: what went wrong, in words (a string here, not the usual error object)
    error: str
    iterations: int
    history: list[dict[str, Json]]
    trace_id: str
