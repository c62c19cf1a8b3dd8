"""Request bodies of matrixd's routes (contract section 9; unknown fields are a 400).

Field names follow the reference's JSON tags where they are known ([V]) and its Go field
names in snake case where only those are ([I]); docs/matrix.md lists which is which.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "BulkRequest",
    "CalibrationRequest",
    "ChunkIn",
    "CorpusBuildRequest",
    "DowngradeRequest",
    "FocusIn",
    "RecordRequest",
    "RelevanceRequest",
    "SearchRequest",
]


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    query_text: str = ""
    #: wins over query_text when both are given; [] counts as absent (Go's omitempty)
    query_vector: list[float] | None = None
    corpora: list[str] = msgspec.field(default_factory=list)
    #: 0 = 10
    k: int = 0
    #: 0 = k
    per_corpus_k: int = 0
    #: embedding model for query_text ("" = embedd's default)
    model: str = ""
    use_playbook: bool = False
    #: "" = [matrixd].playbook_corpus
    playbook_corpus: str = ""
    #: 0 = 3
    playbook_top_k: int = 0
    #: 0 = 0.5
    playbook_max_distance: float = 0.0
    #: 0 = 0.20
    playbook_max_inject_distance: float = 0.0
    query_role: str = ""
    metadata_filter: dict[str, Any] | None = None
    exclude_ids: list[str] = msgspec.field(default_factory=list)
    judge_url: str = ""
    judge_model: str = ""
    #: 0 = 3
    judge_min_rating: int = 0


class RecordRequest(msgspec.Struct, forbid_unknown_fields=True):
    query_text: str
    answer_id: str
    answer_corpus: str
    score: float
    tags: list[str] = msgspec.field(default_factory=list)
    role: str = ""
    #: "" = [matrixd].playbook_corpus (bulk: the batch's corpus)
    playbook_corpus: str = ""
    #: embedding model for query_text ("" = embedd's default)
    model: str = ""


class BulkRequest(msgspec.Struct, forbid_unknown_fields=True):
    #: each entry is a RecordRequest; a bad entry fails alone
    entries: list[Any]
    #: the batch's corpus; an entry's own playbook_corpus wins. ``corpus`` is an alias.
    playbook_corpus: str = ""
    corpus: str = ""


class CalibrationRequest(msgspec.Struct, forbid_unknown_fields=True):
    #: "" = [matrixd].playbook_corpus
    playbook_corpus: str = ""
    #: "" = embedd's default model
    model: str = ""
    #: also explain what the calibrated playbook does with this query's hits
    query_text: str = ""
    #: measure again instead of using the cached calibration
    refresh: bool = False
    #: 0 = 3
    playbook_top_k: int = 0


class FocusIn(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    defined_symbols: list[str] = msgspec.field(default_factory=list)
    imported_symbols: list[str] = msgspec.field(default_factory=list)
    #: the focus file's source, when symbols should be extracted from it
    content: str = ""


class ChunkIn(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    source: str = ""
    doc_id: str = ""


class RelevanceRequest(msgspec.Struct, forbid_unknown_fields=True):
    focus: FocusIn
    chunks: list[ChunkIn]
    #: None = 0.3
    threshold: float | None = None


class DowngradeRequest(msgspec.Struct, forbid_unknown_fields=True):
    mode: str
    model: str = ""
    forced_mode: bool = False
    #: None = read LH_FORCE_FULL_ENRICHMENT from matrixd's environment
    force_full_enrichment: bool | None = None
    #: None = [models].weak_models
    weak_models: list[str] | None = None


class CorpusBuildRequest(msgspec.Struct, forbid_unknown_fields=True):
    #: the vectord index to fill
    name: str
    #: a read-only query run on queryd
    sql: str
    id_column: str
    #: "{role} in {city}: {skills}" (column names in braces; {{ and }} for literal braces)
    text_template: str = ""
    #: or: these columns, as "column: value" lines
    text_columns: list[str] = msgspec.field(default_factory=list)
    #: None = every column of the row
    metadata_columns: list[str] | None = None
    #: 0 = [matrixd].corpus_batch_size
    batch_size: int = 0
    model: str = ""
    distance: str = "cosine"
    #: drop an existing index of that name first
    replace: bool = False
    #: False: answer 202 with the job at once and poll GET /matrix/corpus/build/{job_id}
    wait: bool = True
