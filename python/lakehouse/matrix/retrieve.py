"""``/matrix/search``: multi-corpus retrieval, merge, filters and the playbook (section 9).

Order of operations (docs/matrix.md explains each choice):

1. Validate: ``corpora`` non-empty (duplicates collapse), a query (``query_vector`` wins
   over ``query_text``, which is embedded with ``model``), k and thresholds in range.
2. Fan out: one vectord search per corpus, in parallel, ``per_corpus_k`` each (default k),
   with ``exclude_ids`` pushed down so excluded items do not take places. Any corpus error
   fails the whole search, no silent partial results: a missing corpus with 404 naming it
   (the reference answers 502; issue 14 chose 404), a timeout or vectord down with 502.
3. Merge: every hit with its corpus, sorted by distance ascending (stable: corpus order,
   then rank), no per-corpus normalisation.
4. ``exclude_ids`` again (by id, any corpus), then the metadata filter (counted in
   ``metadata_filter_dropped``).
5. Playbook (``use_playbook``): the query vector searches the playbook corpus for its top
   hits (a missing playbook corpus is a cold start). When the request sets neither
   threshold, they are calibrated to the model in use (:mod:`.calibration`: windows under
   the unrelated floor, and the ratio test); else the reference's fixed windows apply.
   The native core boosts, gates by role
   and picks inject candidates; each candidate's answer is fetched from its corpus (a
   missing answer is not injected, one failing the metadata filter neither) and, with a
   judge configured, rated; the core then applies the verdicts.
6. Re-sort and truncate to k.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np

from ..clients.base import UpstreamError
from ..web import ApiError
from .calibration import EXTRA_HITS, Thresholds
from .context import MatrixContext, check_corpus_name, upstream_failure
from .filter import FilterError, MetadataFilter
from .judge import make_judge
from .playbooks import PlaybookEntry, parse_entry
from .ranking import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_INJECT_DISTANCE, apply_playbook
from .types import SearchRequest

__all__ = ["DEFAULT_K", "DEFAULT_PLAYBOOK_TOP_K", "search"]

DEFAULT_K = 10
DEFAULT_PLAYBOOK_TOP_K = 3
#: distinct corpora one search may fan out to (each is one vectord request)
MAX_CORPORA = 64


def _positive_or_default(value: int, default: int, name: str, cap: int) -> int:
    if value < 0:
        raise ApiError.bad_request(f"{name} must be >= 0 (0 means the default), got {value}")
    value = value or default
    if value > cap:
        raise ApiError.bad_request(f"{name} must be at most {cap}, got {value}")
    return value


def _threshold(value: float, default: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ApiError.bad_request(f"{name} must be a finite number >= 0, got {value}")
    return value or default


def _query_vector(req: SearchRequest) -> np.ndarray | None:
    if not req.query_vector:
        return None
    vec = np.asarray(req.query_vector, dtype=np.float64)
    if not np.all(np.isfinite(vec)):
        raise ApiError.bad_request("query_vector must hold finite numbers")
    if vec.size and float(np.max(np.abs(vec))) > float(np.finfo(np.float32).max):
        raise ApiError.bad_request("query_vector holds numbers too large for float32")
    return vec.astype(np.float32)


def _corpora(req: SearchRequest) -> list[str]:
    if not req.corpora:
        raise ApiError.bad_request("corpora must name at least one corpus")
    seen: list[str] = []
    for i, name in enumerate(req.corpora):
        if not name:
            raise ApiError.bad_request("corpora must not contain an empty name")
        try:
            check_corpus_name(name, f"corpora[{i}]")
        except ValueError as exc:
            raise ApiError.bad_request(str(exc)) from None
        if name not in seen:
            seen.append(name)
    if len(seen) > MAX_CORPORA:
        raise ApiError.bad_request(f"corpora: at most {MAX_CORPORA} distinct corpora, got {len(seen)}")
    return seen


async def _search_corpus(
    ctx: MatrixContext,
    corpus: str,
    vector: np.ndarray,
    k: int,
    exclude_ids: list[str],
    trace_id: str | None,
) -> list[dict[str, Any]]:
    return await ctx.timed(ctx.search(corpus, vector, k, exclude_ids, trace_id), f"search of corpus {corpus!r}")


def _corpus_error(corpus: str, exc: UpstreamError, client_vector: bool) -> ApiError:
    if exc.status == 404:
        # 404, not the reference's 502: the caller named a corpus that does not exist
        return ApiError.not_found(f"corpus {corpus!r} not found (GET /matrix/corpora lists them)")
    if exc.status == 400 and client_vector:
        # the caller's query_vector does not fit this corpus (dimension): the caller's error
        return ApiError.bad_request(f"corpus {corpus!r}: {exc.message}")
    return upstream_failure(f"corpus {corpus!r}", exc)


async def _playbook_hits(
    ctx: MatrixContext, corpus: str, vector: np.ndarray, top_k: int, trace_id: str | None
) -> tuple[list[tuple[PlaybookEntry, float]], bool]:
    """``([(entry, hit distance)], cold_start)``."""
    try:
        hits = await ctx.timed(
            ctx.search(corpus, vector, top_k, None, trace_id), f"search of playbook corpus {corpus!r}"
        )
    except UpstreamError as exc:
        if exc.status == 404:
            return [], True  # nothing recorded yet: a cold start, not an error
        raise upstream_failure(f"playbook corpus {corpus!r}", exc) from None
    out = []
    for hit in hits:
        entry = parse_entry(hit.get("metadata"))
        if entry is not None:
            out.append((entry, float(hit["distance"])))
    return out, False


async def _fetch_answer(
    ctx: MatrixContext, entry: PlaybookEntry, trace_id: str | None
) -> tuple[bool, Any]:
    """``(exists, metadata)`` of a playbook answer in its corpus."""
    try:
        item = await ctx.timed(
            ctx.vectord.get_item(entry.answer_corpus, entry.answer_id, trace_id=trace_id),
            f"lookup of {entry.answer_id!r} in {entry.answer_corpus!r}",
        )
    except UpstreamError as exc:
        if exc.status == 404:
            return False, None
        raise upstream_failure(f"corpus {entry.answer_corpus!r}", exc) from None
    return True, item.get("metadata")


async def search(ctx: MatrixContext, req: SearchRequest, trace_id: str | None) -> dict[str, Any]:
    """Run one search; the response of SPEC section 4 (see the module docstring)."""
    corpora = _corpora(req)
    max_k = ctx.settings.max_k
    k = _positive_or_default(req.k, DEFAULT_K, "k", max_k)
    per_corpus_k = _positive_or_default(req.per_corpus_k, k, "per_corpus_k", max_k)
    top_k = _positive_or_default(req.playbook_top_k, DEFAULT_PLAYBOOK_TOP_K, "playbook_top_k", max_k)
    max_distance = _threshold(req.playbook_max_distance, DEFAULT_MAX_DISTANCE, "playbook_max_distance")
    max_inject = _threshold(
        req.playbook_max_inject_distance, DEFAULT_MAX_INJECT_DISTANCE, "playbook_max_inject_distance"
    )
    # A request that sets a threshold gets the reference's fixed behaviour (wire parity);
    # one that sets neither gets thresholds calibrated to the model (after the hits, below).
    calibrate = req.playbook_max_distance == 0 and req.playbook_max_inject_distance == 0
    thresholds = Thresholds(
        "request" if not calibrate else "reference",
        max_distance,
        max_inject,
        0.0,
        "set by the request" if not calibrate else "nothing recorded yet (cold start)",
    )
    if req.judge_min_rating > 5:
        raise ApiError.bad_request(f"judge_min_rating must be at most 5, got {req.judge_min_rating}")
    for name, url in (("judge_url", req.judge_url),):
        if url and not url.startswith(("http://", "https://")):
            raise ApiError.bad_request(f"{name} must be an http:// or https:// URL")
    try:
        mfilter = MetadataFilter(req.metadata_filter)
    except FilterError as exc:
        raise ApiError.bad_request(str(exc)) from None
    playbook_corpus = req.playbook_corpus or ctx.settings.playbook_corpus
    if req.use_playbook:
        try:
            check_corpus_name(playbook_corpus, "playbook_corpus")
        except ValueError as exc:
            raise ApiError.bad_request(str(exc)) from None

    vector = _query_vector(req)
    client_vector = vector is not None
    if vector is None:
        if not req.query_text.strip():
            raise ApiError.bad_request("give query_text or query_vector")
        _, vectors = await ctx.embed([req.query_text], req.model, trace_id)
        vector = vectors[0]

    # 2. fan out; every corpus is awaited so the first error reported is deterministic
    answers = await asyncio.gather(
        *(_search_corpus(ctx, c, vector, per_corpus_k, req.exclude_ids, trace_id) for c in corpora),
        return_exceptions=True,
    )
    for corpus, answer in zip(corpora, answers, strict=True):
        if isinstance(answer, UpstreamError):
            raise _corpus_error(corpus, answer, client_vector)
        if isinstance(answer, BaseException):
            raise answer

    # 3. merge
    merged: list[dict[str, Any]] = []
    per_corpus: dict[str, int] = {}
    for corpus, hits in zip(corpora, answers, strict=True):
        per_corpus[corpus] = len(hits)
        for hit in hits:
            merged.append(
                {
                    "id": hit["id"],
                    "corpus": corpus,
                    "distance": np.float32(hit["distance"]),
                    "metadata": hit.get("metadata"),
                }
            )
    merged.sort(key=lambda r: r["distance"])

    # 4. exclude, then the metadata filter
    excluded = set(req.exclude_ids)
    if excluded:
        merged = [r for r in merged if r["id"] not in excluded]
    merged, dropped = mfilter.apply(merged)

    # 5. the playbook
    summary: dict[str, Any] = {
        "enabled": req.use_playbook,
        "corpus": playbook_corpus if req.use_playbook else None,
        "cold_start": False,
        "hits": 0,
        "boosted": 0,
        "injected": 0,
        "rejected_role": 0,
        "rejected_ratio": 0,
        "rejected_judge": 0,
        "rejected_missing": 0,
        "rejected_filter": 0,
    }
    hits: list[tuple[PlaybookEntry, float]] = []
    if req.use_playbook:
        # calibrated: a few more hits, so the ratio test sees the nearest competing demand
        lookup_k = min(top_k + EXTRA_HITS, max_k) if calibrate else top_k
        hits, summary["cold_start"] = await _playbook_hits(ctx, playbook_corpus, vector, lookup_k, trace_id)
        if calibrate and not summary["cold_start"]:
            thresholds = (await ctx.calibrator.calibrate(ctx, playbook_corpus, req.model, trace_id)).thresholds
            max_distance, max_inject = thresholds.max_distance, thresholds.max_inject_distance
        if thresholds.max_ratio == 0.0:
            hits = hits[:top_k]  # without the ratio test, exactly the reference's top-K acts
        summary["thresholds"] = thresholds.summary()

    args = (
        [r["id"] for r in merged],
        [r["corpus"] for r in merged],
        np.array([r["distance"] for r in merged], dtype=np.float32),
        [e.answer_id for e, _ in hits],
        [e.answer_corpus for e, _ in hits],
        np.array([e.score for e, _ in hits], dtype=np.float64),
        np.array([d for _, d in hits], dtype=np.float32),
        [e.role for e, _ in hits],
    )
    kwargs: dict[str, Any] = {
        "query_role": req.query_role,
        "exclude_ids": req.exclude_ids,
        "max_distance": max_distance,
        "max_inject_distance": max_inject,
        "k": k,
        "hit_queries": [e.query_text for e, _ in hits],
        "max_ratio": thresholds.max_ratio,
    }
    try:
        outcome = apply_playbook(*args, **kwargs)
        answers_meta: dict[int, Any] = {}
        if outcome.inject_candidates:
            vetoed = await _vet_candidates(ctx, req, hits, outcome.inject_candidates, mfilter, summary, answers_meta, trace_id)
            if vetoed:
                outcome = apply_playbook(*args, **kwargs, vetoed_hits=vetoed)
    except ValueError as exc:  # bad strings in ids/roles (e.g. lone surrogates)
        raise ApiError.bad_request(str(exc)) from None

    results = []
    for row in outcome.rows:
        if row.result_index >= 0:
            base = merged[row.result_index]
            rid, corpus, metadata = base["id"], base["corpus"], base["metadata"]
        else:
            entry = hits[row.hit_index][0]
            rid, corpus, metadata = entry.answer_id, entry.answer_corpus, answers_meta.get(row.hit_index)
        results.append(
            {
                "id": rid,
                "corpus": corpus,
                # float32, printed as the reference prints its float32 distances
                "distance": np.float32(row.distance),
                "metadata": metadata,
                "source": row.source,
            }
        )

    counts = outcome.counts
    summary["hits"] = counts["hits"]
    summary["boosted"] = counts["boosted"]
    summary["injected"] = counts["injected"]
    summary["rejected_role"] = counts["rejected_role"]
    summary["rejected_ratio"] = counts["rejected_ratio"]
    return {
        "results": results,
        "per_corpus": per_corpus,
        "metadata_filter_dropped": dropped,
        "playbook": summary,
    }


async def _vet_candidates(
    ctx: MatrixContext,
    req: SearchRequest,
    hits: list[tuple[PlaybookEntry, float]],
    candidates: list[int],
    mfilter: MetadataFilter,
    summary: dict[str, Any],
    answers_meta: dict[int, Any],
    trace_id: str | None,
) -> list[int]:
    """Hit indexes whose injection is refused: the answer is gone, fails the metadata filter,
    or the judge does not approve it. Fills ``answers_meta`` for the others."""
    fetched = await asyncio.gather(*(_fetch_answer(ctx, hits[h][0], trace_id) for h in candidates))
    vetoed: list[int] = []
    to_judge: list[int] = []
    for h, (exists, metadata) in zip(candidates, fetched, strict=True):
        if not exists:
            summary["rejected_missing"] += 1
            vetoed.append(h)
        elif mfilter and not mfilter.matches(metadata):
            summary["rejected_filter"] += 1
            vetoed.append(h)
        else:
            answers_meta[h] = metadata
            to_judge.append(h)
    judge = make_judge(
        ctx.judge_session, req.judge_url, req.judge_model, req.judge_min_rating, ctx.settings.judge_timeout
    )
    if judge is not None and to_judge:
        verdicts = await asyncio.gather(
            *(
                judge.rate(
                    req.query_text,
                    hits[h][0].query_text,
                    {"id": hits[h][0].answer_id, "corpus": hits[h][0].answer_corpus, "metadata": answers_meta[h]},
                )
                for h in to_judge
            )
        )
        for h, verdict in zip(to_judge, verdicts, strict=True):
            if not verdict.approved:
                summary["rejected_judge"] += 1
                vetoed.append(h)
    return vetoed
