"""Library-level fixtures: named pure functions, each with this project's implementation and,
where one exists, the pure-Python twin under :mod:`parity.reference`.

A library fixture (``"kind": "library"``) names a ``function`` of :data:`FUNCTIONS`, an
``input`` object and what the contract says comes out (``expect``, or ``expect_subset``). The
probe runs the input through the implementation and through the twin, normalises both
(:func:`normalised`) and requires

* implementation == twin, byte for byte, where a twin exists;
* implementation == the fixture's expectation.

Normalisation is explicit per function: ``float32`` numbers are written as the shortest text
that reads back as the same float32 (so ``0.3283`` in a fixture means the float32 nearest
0.3283, and bit-level differences show); ``tolerance`` numbers are compared within a stated
bound (float32 SIMD sums against float64 numpy sums cannot agree bit for bit: when the two
values are within the bound, the twin's is replaced by the implementation's before the byte
comparison, and a larger difference stays in the diff); everything else is compared as is.
A ValueError (or the function's own error type) is the output ``{"error": "<ErrorType>"}``,
so refusing bad input is part of parity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from lakehouse.parity import contains
from parity.reference import embed as ref_embed
from parity.reference import index as ref_index
from parity.reference import playbook as ref_playbook

__all__ = ["FUNCTIONS", "Function", "canonical", "check_fixture", "compare", "normalised"]

#: how far a float64 reference distance may sit from the float32 native one (SPEC section 3:
#: "ids and distances within 1e-5"), relative to max(1, |value|)
SEARCH_TOLERANCE = 1e-5
#: docs/embed.md: "agrees with ours within 1e-6 per component"
EMBED_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Function:
    """One comparable function: ``impl`` is this project's, ``twin`` the pure-Python one."""

    name: str
    impl: Callable[[Mapping[str, Any]], Any]
    twin: Callable[[Mapping[str, Any]], Any] | None = None
    floats: str = "exact"  # "exact" | "float32" | "tolerance"
    tolerance: float = 0.0
    #: what ``impl`` is: "native core" (lakehouse._native behind the facade) or "library"
    impl_kind: str = "library"
    errors: tuple[type[BaseException], ...] = (ValueError,)


# -- the functions ---------------------------------------------------------------------------


def _search_rows(hits: list[tuple[str, float, Any]]) -> list[dict[str, Any]]:
    return [{"id": i, "distance": float(d), "metadata": m} for i, d, m in hits]


def _load(ix: Any, inp: Mapping[str, Any]) -> None:
    """Apply ``items`` ([{id, vector, metadata?}], one add) or ``batches`` (each an add
    ``{ids, vectors, metadata?}`` or ``{delete: [ids]}``) to an index, in order."""
    batches = inp.get("batches")
    if batches is None:
        items = inp.get("items", [])
        batches = [{
            "ids": [it["id"] for it in items],
            "vectors": [it["vector"] for it in items],
            "metadata": [it.get("metadata") for it in items],
        }]
    for batch in batches:
        if "delete" in batch:
            ix.delete(batch["delete"])
        else:
            vectors = np.asarray(batch["vectors"], dtype=np.float64).reshape(len(batch["ids"]), int(inp["dims"]))
            ix.add(batch["ids"], vectors, batch.get("metadata"))


def _index_impl(inp: Mapping[str, Any]) -> Any:
    from lakehouse import VectorIndex

    ix = VectorIndex(int(inp["dims"]), distance=inp.get("distance", "cosine"))
    with np.errstate(over="ignore"):  # 1e39 -> inf on the way to float32, then refused
        _load(ix, inp)
    hits = ix.search(np.asarray(inp["query"], dtype=np.float64), k=int(inp.get("k", 10)),
                     exclude_ids=inp.get("exclude_ids"))
    return _search_rows([(h.id, h.distance, h.metadata) for h in hits])


def _index_twin(inp: Mapping[str, Any]) -> Any:
    ix = ref_index.BruteForceIndex(int(inp["dims"]), distance=inp.get("distance", "cosine"))
    _load(ix, inp)
    hits = ix.search(np.asarray(inp["query"], dtype=np.float64), k=int(inp.get("k", 10)),
                     exclude_ids=inp.get("exclude_ids"))
    return _search_rows(hits)


def playbook_args(inp: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``apply_playbook``'s positional and keyword arguments from rows: ``results`` as
    ``(id, corpus, distance)``, ``hits`` as ``(id, corpus, score, distance[, role[, query]])``,
    plus any of its keyword arguments."""
    results = inp.get("results", [])
    hits = inp.get("hits", [])
    args = (
        [r[0] for r in results],
        [r[1] for r in results],
        np.array([r[2] for r in results], dtype=np.float32),
        [h[0] for h in hits],
        [h[1] for h in hits],
        np.array([h[2] for h in hits], dtype=np.float64),
        np.array([h[3] for h in hits], dtype=np.float32),
        [h[4] if len(h) > 4 else "" for h in hits],
    )
    kwargs = {
        key: inp[key]
        for key in ("query_role", "exclude_ids", "max_distance", "max_inject_distance", "k", "vetoed_hits",
                    "max_ratio")
        if key in inp
    }
    if any(len(h) > 5 for h in hits):
        kwargs["hit_queries"] = [h[5] if len(h) > 5 else "" for h in hits]
    return args, kwargs


def _playbook_out(inp: Mapping[str, Any], out: Any) -> Any:
    """Rows with their ids and corpora resolved, so a fixture reads like the search answer."""
    results = inp.get("results", [])
    hits = inp.get("hits", [])
    rows = []
    for r in out.rows:
        if r.result_index >= 0:
            rid, corpus = results[r.result_index][0], results[r.result_index][1]
        else:
            rid, corpus = hits[r.hit_index][0], hits[r.hit_index][1]
        rows.append({"id": rid, "corpus": corpus, "distance": float(np.float32(r.distance)),
                     "source": str(r.source)})
    return {
        "rows": rows,
        "inject_candidates": [int(c) for c in out.inject_candidates],
        "counts": {k: int(v) for k, v in out.counts.items()},
    }


def _playbook_impl(inp: Mapping[str, Any]) -> Any:
    from lakehouse.matrix import ranking as playbook

    args, kwargs = playbook_args(inp)
    return _playbook_out(inp, playbook.apply_playbook(*args, **kwargs))


def _playbook_twin(inp: Mapping[str, Any]) -> Any:
    args, kwargs = playbook_args(inp)
    return _playbook_out(inp, ref_playbook.apply_playbook(*args, **kwargs))


def _roles(module: Any) -> Callable[[Mapping[str, Any]], Any]:
    return lambda inp: [module.role_normalize(r) for r in inp["roles"]]


def _gate(module: Any) -> Callable[[Mapping[str, Any]], Any]:
    return lambda inp: [
        {"equal": module.role_equal(a, b), "allows": module.role_gate_allows(a, b)}
        for a, b in inp["pairs"]
    ]


def _embed_impl(inp: Mapping[str, Any]) -> Any:
    from lakehouse.embed import hash_embed

    return [[float(x) for x in row] for row in hash_embed(inp["texts"], inp["dim"])]


def _embed_twin(inp: Mapping[str, Any]) -> Any:
    return ref_embed.embed_many(inp["texts"], inp["dim"])


def _filter_matches(inp: Mapping[str, Any]) -> Any:
    from lakehouse.matrix.filter import FilterError, MetadataFilter

    out = []
    for spec, metadata in inp["cases"]:
        try:
            out.append(MetadataFilter(spec).matches(metadata))
        except FilterError:
            out.append({"error": "FilterError"})
    return out


def _filter_apply(inp: Mapping[str, Any]) -> Any:
    from lakehouse.matrix.filter import MetadataFilter

    items = [{"index": i, "metadata": m} for i, m in enumerate(inp["metadata"])]
    kept, dropped = MetadataFilter(inp["filter"]).apply(items)
    return {"kept": [it["index"] for it in kept], "dropped": dropped}


def _relevance(inp: Mapping[str, Any]) -> Any:
    from lakehouse.matrix import relevance

    focus = relevance.Focus(**inp["focus"])
    chunks = [relevance.Chunk(**c) for c in inp["chunks"]]
    threshold = inp.get("threshold", relevance.DEFAULT_RELEVANCE_THRESHOLD)
    return [
        {"score": s.score, "kept": s.kept, "signals": s.signals}
        for s in relevance.filter_chunks(focus, chunks, threshold)
    ]


def _downgrade(inp: Mapping[str, Any]) -> Any:
    from lakehouse.matrix import downgrade

    return downgrade.decide(
        inp["mode"], inp["model"],
        forced_mode=inp.get("forced_mode", False),
        force_full_enrichment=inp.get("force_full_enrichment"),
        weak_models=inp.get("weak_models"),
        environ=inp.get("environ", {}),
    ).to_json()


def _extract_json(inp: Mapping[str, Any]) -> Any:
    from lakehouse.validation.extract import extract_json_report

    return extract_json_report(inp["text"])


def _validate(inp: Mapping[str, Any]) -> Any:
    from lakehouse.validation.report import ValidationError
    from lakehouse.validation.validators import UnknownKind, validate
    from lakehouse.validation.workers import WorkerRoster

    roster = WorkerRoster.from_rows(inp.get("roster", []))
    try:
        report = validate(inp["kind"], inp["artifact"], roster, inp.get("context"))
    except UnknownKind:
        return {"status": 400}
    except ValidationError as exc:
        return {"status": 422, "wire": exc.to_json().decode("utf-8")}
    body = report.to_json()
    body.pop("elapsed_ms", None)
    return {"status": 200, "report": body}


def _dataset_id(inp: Mapping[str, Any]) -> Any:
    from lakehouse.data.catalog import dataset_id_for

    return dataset_id_for(inp["name"])


def _fingerprint(inp: Mapping[str, Any]) -> Any:
    from lakehouse.data.ingest import dataset_key, schema_fingerprint

    fp = schema_fingerprint([tuple(c) for c in inp["columns"]])
    return {"fingerprint": fp, "key": dataset_key(inp["name"], fp)}


def _cache_key(inp: Mapping[str, Any]) -> Any:
    from lakehouse.embed.cache import cache_key

    return cache_key(inp["model"], inp["text"])


def _route(inp: Mapping[str, Any]) -> Any:
    from lakehouse.chat.registry import route

    out: list[Any] = []
    for model in inp["models"]:
        try:
            out.append(list(route(model)))
        except ValueError:
            out.append({"error": "ValueError"})
    return out


def _psi_tier(inp: Mapping[str, Any]) -> Any:
    from lakehouse.distill.drift import psi_tier

    return [psi_tier(v) for v in inp["values"]]


def _sft_allowed(inp: Mapping[str, Any]) -> Any:
    from lakehouse.distill.scoring import sft_allowed

    return [sft_allowed(category, partial) for category, partial in inp["cases"]]


def _dedup_key(inp: Mapping[str, Any]) -> Any:
    from lakehouse.distill.scoring import CATEGORIES, SCORER_VERSION, SFT_NEVER, dedup_key

    return {
        "dedup_key": dedup_key(inp["sig_hash"]),
        "scorer_version": SCORER_VERSION,
        "categories": sorted(CATEGORIES),
        "sft_never": sorted(SFT_NEVER),
    }


def _provenance(inp: Mapping[str, Any]) -> Any:
    """Materialize ``lines`` (raw JSONL lines) of one source; each evidence row's
    provenance without ``recorded_at``, in file order."""
    import tempfile
    from pathlib import Path

    from lakehouse.distill.common import Layout, iter_jsonl
    from lakehouse.distill.evidence import materialize, source_paths

    with tempfile.TemporaryDirectory() as d:
        path = source_paths(Path(d))[inp["source"]]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in inp["lines"]))
        receipt = materialize(d, sources=[inp["source"]], save_receipt=False)
        layout = Layout.of(d)
        rows = [r for f in layout.day_files(layout.evidence) for _, r, _ in iter_jsonl(f)]
    provs = [{k: v for k, v in r["provenance"].items() if k != "recorded_at"} for r in rows]
    return {"provenance": sorted(provs, key=lambda p: p["line_offset"]),
            "skipped": receipt.skipped}


def _evidence_decode(inp: Mapping[str, Any]) -> Any:
    from lakehouse.distill.evidence import decode_evidence

    out = []
    for row in inp["rows"]:
        try:
            decode_evidence(row)
            out.append("ok")
        except ValueError:
            out.append("rejected")
    return out


def _drift_table(inp: Mapping[str, Any]) -> Any:
    from lakehouse.distill.audit import DEFAULT_DRIFT_WARN_THRESHOLD, build_drift_table

    rows = build_drift_table(inp["prior"], inp["current"], inp.get("threshold", DEFAULT_DRIFT_WARN_THRESHOLD))
    return [
        [r.metric, r.prior, r.current, None if r.pct_change is None else round(r.pct_change, 6), r.flag]
        for r in rows
    ]


class _Native:
    """Resolves ``lakehouse.matrix.ranking`` on first use (so importing this module stays cheap)."""

    def __getattr__(self, name: str) -> Any:
        from lakehouse.matrix import ranking as playbook

        return getattr(playbook, name)


_NATIVE_PLAYBOOK = _Native()

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("index.search", _index_impl, _index_twin, "tolerance", SEARCH_TOLERANCE, "native core"),
        Function("playbook.apply", _playbook_impl, _playbook_twin, "float32", impl_kind="native core"),
        Function("role.normalize", _roles(_NATIVE_PLAYBOOK), _roles(ref_playbook), impl_kind="native core"),
        Function("role.gate", _gate(_NATIVE_PLAYBOOK), _gate(ref_playbook), impl_kind="native core"),
        Function("embed.hash", _embed_impl, _embed_twin, "tolerance", EMBED_TOLERANCE),
        Function("filter.matches", _filter_matches),
        Function("filter.apply", _filter_apply),
        Function("relevance.filter", _relevance),
        Function("downgrade.decide", _downgrade),
        Function("extract_json", _extract_json, errors=(TypeError,)),
        Function("validate", _validate),
        Function("catalog.dataset_id", _dataset_id),
        Function("ingest.fingerprint", _fingerprint),
        Function("embed.cache_key", _cache_key),
        Function("chat.route", _route),
        Function("drift.psi_tier", _psi_tier),
        Function("distillation.sft_allowed", _sft_allowed),
        Function("distillation.dedup_key", _dedup_key),
        Function("evidence.provenance", _provenance),
        Function("evidence.decode", _evidence_decode),
        Function("audit.drift_table", _drift_table),
    ]
}


# -- normalisation and comparison ------------------------------------------------------------


def canonical(value: Any) -> bytes:
    """Key-sorted compact JSON: the bytes that are compared."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def call(fn: Function, which: str, inp: Mapping[str, Any]) -> Any:
    """Run ``impl`` or ``twin``; a refusal becomes ``{"error": "<type>"}``."""
    target = fn.impl if which == "impl" else fn.twin
    assert target is not None
    try:
        return target(inp)
    except fn.errors as exc:
        return {"error": type(exc).__name__}


def _float32(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        # the shortest decimal that reads back as this float32, as a JSON number
        return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))
    if isinstance(value, list):
        return [_float32(v) for v in value]
    if isinstance(value, dict):
        return {k: _float32(v) for k, v in value.items()}
    return value


#: search distances this close count as a tie (float32 noise is ~1e-7; see parity.generated)
TIE_TOLERANCE = 1e-5


def _ties_by_id(rows: Any) -> Any:
    """Search rows whose distances tie (within TIE_TOLERANCE, chained) put in id order.

    Ties are unordered by contract; the native core breaks them by storage slot and the twin
    by insertion order, and float32 against float64 can split or join a mathematical tie.
    """
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "distance" in r for r in rows):
        return rows
    out: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []
    for row in rows:
        if group and abs(row["distance"] - group[-1]["distance"]) > TIE_TOLERANCE * max(1.0, abs(row["distance"])):
            out.extend(sorted(group, key=lambda r: r["id"]))
            group = []
        group.append(row)
    out.extend(sorted(group, key=lambda r: r["id"]))
    return out


def reconcile(base: Any, other: Any, tolerance: float) -> Any:
    """``other`` with each number that lies within ``tolerance`` of ``base``'s number at the
    same place replaced by ``base``'s (relative to max(1, |base|)); all else unchanged."""
    if isinstance(base, dict) and isinstance(other, dict):
        return {k: reconcile(base[k], v, tolerance) if k in base else v for k, v in other.items()}
    if isinstance(base, list) and isinstance(other, list) and len(base) == len(other):
        return [reconcile(a, b, tolerance) for a, b in zip(base, other, strict=True)]
    numeric = (int, float)
    if (
        isinstance(base, numeric) and isinstance(other, numeric)
        and not isinstance(base, bool) and not isinstance(other, bool)
        and math.isfinite(base) and math.isfinite(other)
        and abs(base - other) <= tolerance * max(1.0, abs(base))
    ):
        return base
    return other


def _integral(value: Any) -> Any:
    """Integral floats as ints: ``0.0`` and ``0`` are one JSON number."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def normalised(fn: Function, value: Any) -> Any:
    """One side's output in the function's comparable form (before any reconciliation)."""
    if fn.floats == "float32":
        value = _float32(value)
    if fn.name == "index.search":
        value = _ties_by_id(value)
    return _integral(value)


def compare(fn: Function, base: Any, other: Any) -> tuple[bytes, bytes]:
    """The bytes to compare for two outputs of ``fn`` (``other`` reconciled onto ``base``)."""
    a, b = normalised(fn, base), normalised(fn, other)
    if fn.floats == "tolerance":
        b = reconcile(a, b, fn.tolerance)
    return canonical(a), canonical(b)


def check_fixture(fx: Mapping[str, Any]) -> list[str]:
    """Problems with one library fixture: [] when the implementation equals the twin (where
    one exists) and the contract's expectation. Each problem carries its diff."""
    import difflib

    fn = FUNCTIONS.get(fx.get("function", ""))
    if fn is None:
        return [f"unknown function {fx.get('function')!r} (known: {', '.join(FUNCTIONS)})"]
    inp = fx.get("input", {})
    impl = call(fn, "impl", inp)
    problems = []

    def diff(a: bytes, b: bytes, name_a: str, name_b: str) -> str:
        fmt = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
        la = orjson.dumps(orjson.loads(a), option=fmt).decode().splitlines()
        lb = orjson.dumps(orjson.loads(b), option=fmt).decode().splitlines()
        return "\n".join(difflib.unified_diff(la, lb, name_a, name_b, lineterm=""))

    if fn.twin is not None:
        a, b = compare(fn, impl, call(fn, "twin", inp))
        if a != b:
            problems.append(f"{fn.impl_kind} != reference twin:\n" + diff(a, b, fn.impl_kind, "reference"))
    if "expect" in fx:
        a, b = compare(fn, impl, fx["expect"])
        if a != b:
            problems.append("differs from the contract's expectation:\n" + diff(b, a, "expected", fn.impl_kind))
    if "expect_subset" in fx:
        have = normalised(fn, impl)
        want = normalised(fn, fx["expect_subset"])
        if fn.floats == "tolerance":
            want = reconcile(have, want, fn.tolerance)
        if not contains(want, have):
            problems.append(
                "does not contain the contract's expectation:\n"
                + diff(canonical(want), canonical(have), "expected (subset)", fn.impl_kind)
            )
    if "expect" not in fx and "expect_subset" not in fx and fn.twin is None:
        problems.append("a fixture of a function without a twin needs expect or expect_subset")
    return problems
