"""matrixd (:3218): multi-corpus retrieval and the playbook learning loop, contract section 9.

Routes (docs/matrix.md has every shape, default and decision):
- ``POST /matrix/search``            retrieve + merge + exclude + metadata filter + playbook
  boost / inject (role gate, judge gate) -> ``{results, per_corpus, metadata_filter_dropped,
  playbook}``; 400 for a bad request, 502 when a corpus or embedd fails
- ``POST /matrix/playbooks/record``  ``{query_text, answer_id, answer_corpus, score, tags?,
  role?, playbook_corpus?, model?}`` -> ``{playbook_id, playbook_corpus}``
- ``POST /matrix/playbooks/bulk``    ``{entries: [...], playbook_corpus?}`` -> per-entry results
- ``POST /matrix/relevance``         ``{focus, chunks, threshold?}`` -> scored chunks
- ``POST /matrix/downgrade``         ``{mode, model, forced_mode?, ...}`` -> ``{mode, ...}``
- ``POST /matrix/playbooks/calibration`` ``{playbook_corpus?, model?, query_text?, refresh?}``
  -> the calibrated thresholds and why (``lakehouse calibrate`` prints it)
- ``GET  /matrix/corpora``           vectord's index list
- ``POST /matrix/corpus/build``      SQL on queryd -> embedd -> a vectord index (the embed
  batches on a Ray cluster when ``[matrixd].ray_address`` is set; 503 when it cannot be used);
  ``GET /matrix/corpus/build`` lists jobs, ``GET /matrix/corpus/build/{job_id}`` one job

The logic lives in :mod:`lakehouse.matrix`; this file decodes bodies and wires routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from ..clients.base import UpstreamError
from ..clients.local import LocalEmbedd, LocalVectord
from ..clients.pool import HttpPool
from ..config import Config
from ..matrix import calibration, corpus, downgrade, playbooks, relevance, retrieve
from ..matrix.context import MatrixContext, upstream_failure
from ..matrix.types import (
    BulkRequest,
    CalibrationRequest,
    CorpusBuildRequest,
    DowngradeRequest,
    RecordRequest,
    RelevanceRequest,
    SearchRequest,
)
from ..openapi import answers as A
from ..openapi import api_routes
from ..web import (
    APP_CONFIG,
    ApiError,
    internal_session,
    json_response,
    make_app,
    read_json,
    trace_id,
)

__all__ = ["create_app", "MATRIX", "CORPUS_JOBS", "LOCAL_PEERS"]

MATRIX: web.AppKey[MatrixContext] = web.AppKey("matrix", MatrixContext)
#: set by a shared process (lakehouse.web.run_shared): the embedd / vectord apps running in
#: this process, which matrixd then calls in-process (lakehouse.clients.local)
LOCAL_PEERS: web.AppKey[dict[str, web.Application]] = web.AppKey("local_peers", dict)
CORPUS_JOBS: web.AppKey[corpus.CorpusJobs] = web.AppKey("corpus_jobs", corpus.CorpusJobs)


async def handle_search(request: web.Request) -> web.Response:
    body = await read_json(request, SearchRequest)
    return json_response(await retrieve.search(request.app[MATRIX], body, trace_id(request)))


async def handle_record(request: web.Request) -> web.Response:
    body = await read_json(request, RecordRequest)
    return json_response(await playbooks.record(request.app[MATRIX], body, trace_id(request)))


async def handle_bulk(request: web.Request) -> web.Response:
    body = await read_json(request, BulkRequest)
    return json_response(await playbooks.record_bulk(request.app[MATRIX], body, trace_id(request)))


async def handle_calibration(request: web.Request) -> web.Response:
    body = await read_json(request, CalibrationRequest)
    ctx = request.app[MATRIX]
    if not 0 <= body.playbook_top_k <= ctx.settings.max_k:
        raise ApiError.bad_request(f"playbook_top_k must be within 0..{ctx.settings.max_k}")
    report = await calibration.explain(
        ctx,
        body.playbook_corpus or ctx.settings.playbook_corpus,
        body.model,
        body.query_text,
        refresh=body.refresh,
        top_k=body.playbook_top_k or retrieve.DEFAULT_PLAYBOOK_TOP_K,
        trace_id=trace_id(request),
    )
    return json_response(report)


async def handle_relevance(request: web.Request) -> web.Response:
    body = await read_json(request, RelevanceRequest)
    threshold = relevance.DEFAULT_RELEVANCE_THRESHOLD if body.threshold is None else body.threshold
    if threshold != threshold or threshold in (float("inf"), float("-inf")):
        raise ApiError.bad_request("threshold must be a finite number")
    focus = relevance.Focus(
        body.focus.path, body.focus.defined_symbols, body.focus.imported_symbols, body.focus.content
    )
    chunks = [relevance.Chunk(c.text, c.source, c.doc_id) for c in body.chunks]
    # CPU work proportional to the body (4 MiB at most): off the event loop.
    scored = await asyncio.to_thread(relevance.filter_chunks, focus, chunks, threshold)

    def row(s: relevance.Scored) -> dict:
        out = {"index": s.index, "source": s.chunk.source, "text": s.chunk.text, "score": s.score}
        if s.chunk.doc_id:
            out["doc_id"] = s.chunk.doc_id
        out["signals"] = s.signals
        return out

    return json_response(
        {
            "threshold": threshold,
            "kept": [row(s) for s in scored if s.kept],
            "dropped": [row(s) for s in scored if not s.kept],
        }
    )


async def handle_downgrade(request: web.Request) -> web.Response:
    body = await read_json(request, DowngradeRequest)
    weak = request.app[MATRIX].weak_models if body.weak_models is None else body.weak_models
    try:
        decision = downgrade.decide(
            body.mode,
            body.model,
            forced_mode=body.forced_mode,
            force_full_enrichment=body.force_full_enrichment,
            weak_models=weak,
        )
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from None
    return json_response(decision.to_json())


async def handle_corpora(request: web.Request) -> web.Response:
    ctx = request.app[MATRIX]
    try:
        indexes = await ctx.vectord.list(trace_id=trace_id(request))
    except UpstreamError as exc:
        raise upstream_failure("vectord", exc) from None
    return json_response({"corpora": [i.get("name") for i in indexes], "indexes": indexes})


async def handle_build(request: web.Request) -> web.Response:
    body = await read_json(request, CorpusBuildRequest)
    jobs = request.app[CORPUS_JOBS]
    job = await jobs.start(body, trace_id(request))
    if not body.wait:
        return json_response(job.to_json(), status=202)
    # shielded: a client that goes away does not cancel the build
    if job.task is not None:
        await asyncio.shield(job.task)
    if job.status == "failed":
        raise ApiError(job.error_status, f"corpus build {job.job_id}: {job.error}")
    return json_response(job.to_json())


async def handle_jobs(request: web.Request) -> web.Response:
    return json_response({"jobs": request.app[CORPUS_JOBS].list()})


async def handle_job(request: web.Request) -> web.Response:
    return json_response(request.app[CORPUS_JOBS].get(request.match_info["job_id"]).to_json())


async def _matrix_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    # Per-call limits are set by each client call; none for the session as a whole. The judge
    # URL comes from the caller, so it gets a session without the stack's bearer token.
    session = internal_session(config, timeout=aiohttp.ClientTimeout(total=None))
    # One keep-alive pool per upstream on the search path, so a burst to one daemon never
    # waits for a connection held by calls to another.
    upstreams = {name: _pooled_session(config) for name in ("embedd", "vectord")}
    judge_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
    ctx = MatrixContext.from_config(session, config, judge_session=judge_session, upstreams=upstreams)
    peers = app.get(LOCAL_PEERS) or {}
    if "embedd" in peers:
        ctx.embedd = LocalEmbedd(
            upstreams["embedd"], ctx.embedd.base_url, peers["embedd"], timeout=config.matrixd.embed_timeout
        )
    if "vectord" in peers:
        ctx.vectord = LocalVectord(upstreams["vectord"], ctx.vectord.base_url, peers["vectord"])
        ctx.searches = None  # vectord's own batcher groups in-process searches already
    # the hot calls to embedd and vectord go through a lean keep-alive pool each
    pools = []
    token = config.auth.resolved_token()
    for client in (ctx.embedd, ctx.vectord):
        if client.base_url.startswith("http://"):
            client.pool = HttpPool(client.base_url, headers={"Authorization": f"Bearer {token}"} if token else None)
            pools.append(client.pool)
    app[MATRIX] = ctx
    app[CORPUS_JOBS] = corpus.CorpusJobs(ctx, config.embedd)
    try:
        yield
    finally:
        await app[CORPUS_JOBS].close()
        await session.close()
        for s in upstreams.values():
            await s.close()
        for pool in pools:
            pool.close()
        await judge_session.close()


def _pooled_session(config: Config) -> aiohttp.ClientSession:
    """A session for one upstream daemon: its own connection pool (kept alive below the
    daemons' 75 s idle limit), no cookie jar, no decompression of our own JSON."""
    return internal_session(
        config,
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30.0),
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )


def create_app(config: Config) -> web.Application:
    """The matrixd application for ``config`` (its ``[matrixd]`` and ``[models]`` sections)."""
    app = make_app("matrixd", config)
    app.cleanup_ctx.append(_matrix_ctx)
    r = api_routes(app)
    r.post("/matrix/search", handle_search, summary="Retrieve over corpora, merge, filter, apply the playbook", body=SearchRequest, ok=A.MatrixSearch, errors=(404, 502, 504))
    r.get("/matrix/corpora", handle_corpora, summary="vectord's indexes", ok=A.Corpora, errors=(502, 504))
    r.post("/matrix/relevance", handle_relevance, summary="Score chunks against a focus file", body=RelevanceRequest, ok=A.Relevance)
    r.post("/matrix/downgrade", handle_downgrade, summary="The enrichment mode for a model", body=DowngradeRequest, ok=A.Downgrade)
    r.post("/matrix/playbooks/record", handle_record, summary="Record one playbook entry", body=RecordRequest, ok=A.PlaybookRecorded, errors=(404, 502, 504))
    r.post("/matrix/playbooks/bulk", handle_bulk, summary="Record many playbook entries (a bad entry fails alone)", body=BulkRequest, ok=A.BulkRecorded, errors=(404, 502, 504))
    r.post("/matrix/playbooks/calibration", handle_calibration, summary="The playbook thresholds the calibration chose, and why", body=CalibrationRequest, ok=dict[str, Any], errors=(502, 504))
    r.post("/matrix/corpus/build", handle_build, summary="SQL on queryd -> embedd -> a vectord index", body=CorpusBuildRequest, ok=A.CorpusJob, responses={202: A.CorpusJob}, errors=(404, 409, 502, 503, 504))
    r.get("/matrix/corpus/build", handle_jobs, summary="Every corpus build job", ok=A.CorpusJobs)
    r.get("/matrix/corpus/build/{job_id}", handle_job, summary="One corpus build job", ok=A.CorpusJob, errors=(404,))
    return app
