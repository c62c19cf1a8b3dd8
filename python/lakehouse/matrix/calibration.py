"""The calibrated playbook: thresholds that follow the embedding model in use.

The reference's windows (boost 0.5, inject 0.20) were tuned for nomic-embed-text; under
another model they are simply wrong (under all-MiniLM-L6-v2 most true paraphrases sit at
0.15-0.40, so 0.20 loses a third of them). When a search sets neither
``playbook_max_distance`` nor ``playbook_max_inject_distance``, matrixd derives both here,
from the model's own geometry measured against the playbook it is about to use:

1. **The unrelated floor.** A fixed list of probe texts (``calibration_probes.json``:
   everyday requests and demands of other professions, no light-industrial staffing) is
   embedded with the model in use, once per model, and searched against the playbook
   corpus. ``floor`` = the distance of the closest any probe comes to any recorded demand:
   under this model, nothing unrelated came nearer than that.
2. **Windows under the floor.** inject window = ``INJECT_FRACTION`` x floor, boost window =
   ``BOOST_FRACTION`` x floor (the boost only re-ranks what retrieval found, so it may
   reach further, as in the reference).
3. **A ratio test** (in the native core, ``max_ratio``): a hit acts only when it is clearly
   the query's nearest demand, ``d <= MAX_RATIO x`` the distance of the nearest hit recorded
   for another query text and another answer. An unrelated query sits about equally far
   from every demand (ratio 0.8-1.0 under both models measured); a paraphrase is much
   nearer its own (median 0.39 under MiniLM). With a ratio below 1, only the nearest
   demand's answers can ever act, so one demand's answer is never injected for another's.

Measurements and the choice of the constants: docs/matrix.md ("The calibrated playbook").
A request that sets either threshold gets the reference's fixed behaviour (no ratio test).
When the calibration cannot run (the probes' dimension differs from the playbook's, embedd
fails), the search falls back to the reference's values and says so.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from ..clients.base import UpstreamError
from .ranking import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_INJECT_DISTANCE

__all__ = [
    "BOOST_FRACTION",
    "CACHE_SECONDS",
    "EXTRA_HITS",
    "INJECT_FRACTION",
    "MAX_RATIO",
    "Calibration",
    "Calibrator",
    "Thresholds",
    "derive",
    "probe_texts",
]

#: inject window = this x the unrelated floor (dev set: 0.7 keeps every out-of-domain query
#: of both models out, with margin, and recovers 48 of 50 MiniLM paraphrases)
INJECT_FRACTION = 0.7
#: boost window = this x the unrelated floor
BOOST_FRACTION = 0.85
#: the ratio test's bound (Lowe's ratio test uses 0.8; 0.7 is stricter)
MAX_RATIO = 0.7
#: playbook hits asked for beyond playbook_top_k, so the ratio test sees a competitor
#: even when the nearest demand has several recorded answers
EXTRA_HITS = 8
#: a calibration is reused this long (seconds) unless matrixd records into its playbook
CACHE_SECONDS = 30.0
#: models whose probe vectors are kept, and calibrations kept (requests name the model and
#: the corpus, so both caches are bounded: least recently used first out)
MAX_MODELS = 16
MAX_CALIBRATIONS = 256


def probe_texts() -> list[str]:
    """The probe texts (package data), in file order."""
    raw = resources.files(__package__).joinpath("calibration_probes.json").read_text("utf-8")
    return list(json.loads(raw)["texts"])


@dataclass(frozen=True)
class Thresholds:
    """What one search uses, and where it came from."""

    #: "request" (the request set a threshold: the reference's fixed behaviour),
    #: "calibrated", or "reference" (calibration impossible: the reference's defaults)
    mode: str
    max_distance: float
    max_inject_distance: float
    #: 0 = no ratio test
    max_ratio: float
    reason: str

    def summary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """A calibration of one playbook corpus under one model, with the evidence behind it."""

    corpus: str
    model: str
    thresholds: Thresholds
    #: the unrelated floor (None when the calibration could not run)
    floor: float | None = None
    #: per probe: (distance to its nearest recorded demand, that demand's query text)
    probes: list[tuple[str, float, str]] = field(default_factory=list)
    created: float = 0.0

    def report(self) -> dict[str, Any]:
        """A JSON-able account of the choice (``lakehouse calibrate`` prints it)."""
        nearest = sorted(self.probes, key=lambda p: p[1])
        dists = np.array([p[1] for p in self.probes], dtype=np.float64)
        return {
            "corpus": self.corpus,
            "model": self.model,
            "thresholds": self.thresholds.summary(),
            "floor": self.floor,
            "rule": {
                "inject_fraction": INJECT_FRACTION,
                "boost_fraction": BOOST_FRACTION,
                "max_ratio": MAX_RATIO,
            },
            "probes": len(self.probes),
            "probe_distance_quantiles": (
                {q: round(float(np.quantile(dists, float(q))), 4) for q in ("0", "0.1", "0.5", "0.9")}
                if len(dists)
                else {}
            ),
            "closest_probes": [
                {"probe": p, "distance": round(d, 4), "nearest_recorded_demand": q} for p, d, q in nearest[:5]
            ],
        }


def derive(probe_distances: list[float]) -> tuple[float, Thresholds]:
    """``(floor, thresholds)`` from each probe's distance to its nearest recorded demand.

    ValueError for an empty or non-finite list (the caller falls back to the reference).
    """
    if not probe_distances:
        raise ValueError("no probe distances")
    floor = float(min(probe_distances))
    if not math.isfinite(floor) or floor < 0:
        raise ValueError(f"probe distances are not usable (min {floor!r})")
    inject = INJECT_FRACTION * floor
    boost = BOOST_FRACTION * floor
    reason = (
        f"unrelated floor {floor:.4f} (closest of {len(probe_distances)} probe texts to a recorded "
        f"demand): inject window {INJECT_FRACTION} x floor = {inject:.4f}, boost window "
        f"{BOOST_FRACTION} x floor = {boost:.4f}, ratio test {MAX_RATIO}"
    )
    return floor, Thresholds("calibrated", boost, inject, MAX_RATIO, reason)


def reference_thresholds(reason: str) -> Thresholds:
    return Thresholds("reference", DEFAULT_MAX_DISTANCE, DEFAULT_MAX_INJECT_DISTANCE, 0.0, reason)


class Calibrator:
    """Calibrations per (playbook corpus, model), cached; probe vectors per model.

    ``ctx`` is the daemon's MatrixContext (embedd and vectord clients). Everything runs on
    matrixd's event loop, so the caches need no lock; two searches that miss at once both
    calibrate, and the second result wins (they are equal).
    """

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._probes: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._cache: OrderedDict[tuple[str, str], Calibration] = OrderedDict()

    def invalidate(self, corpus: str) -> None:
        """Forget the calibrations of ``corpus`` (called after matrixd records into it)."""
        for key in [k for k in self._cache if k[0] == corpus]:
            del self._cache[key]

    async def _probe_vectors(self, ctx: Any, model: str, trace_id: str | None) -> np.ndarray:
        cached = self._probes.get(model)
        if cached is None:
            texts = probe_texts()
            _, vectors = await ctx.embed(texts, model, trace_id)
            cached = (texts, np.asarray(vectors, dtype=np.float32))
            self._probes[model] = cached
            while len(self._probes) > MAX_MODELS:
                self._probes.popitem(last=False)
        self._probes.move_to_end(model)
        return cached[1]

    async def calibrate(self, ctx: Any, corpus: str, model: str, trace_id: str | None = None) -> Calibration:
        """The calibration of ``corpus`` under ``model`` ("" = embedd's default), cached."""
        key = (corpus, model)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached.created < self.ttl:
            self._cache.move_to_end(key)
            return cached
        calibration = await self._measure(ctx, corpus, model, trace_id)
        self._cache[key] = calibration
        while len(self._cache) > MAX_CALIBRATIONS:
            self._cache.popitem(last=False)
        return calibration

    async def _measure(self, ctx: Any, corpus: str, model: str, trace_id: str | None) -> Calibration:
        now = time.monotonic()
        try:
            vectors = await self._probe_vectors(ctx, model, trace_id)
            texts = self._probes[model][0]
        except Exception as exc:  # embedd down or refusing: the reference's values, said so
            message = getattr(exc, "message", None) or str(exc)
            return Calibration(corpus, model, reference_thresholds(f"probe texts could not be embedded: {message}"), created=now)
        try:
            answers = await ctx.timed(
                ctx.vectord.search_batch(corpus, vectors, 1, trace_id=trace_id),
                f"calibration search of playbook corpus {corpus!r}",
            )
        except UpstreamError as exc:
            if exc.status == 404:
                return Calibration(corpus, model, reference_thresholds("nothing recorded yet (cold start)"), created=now)
            # a dimension clash (another model recorded this playbook) or vectord trouble
            return Calibration(
                corpus, model, reference_thresholds(f"playbook corpus could not be probed: {exc.message}"), created=now
            )
        probes: list[tuple[str, float, str]] = []
        for text, hits in zip(texts, answers, strict=True):
            if hits:
                metadata = hits[0].get("metadata")
                recorded = metadata.get("query_text", "") if isinstance(metadata, dict) else ""
                probes.append((text, float(hits[0]["distance"]), str(recorded)))
        try:
            floor, thresholds = derive([d for _, d, _ in probes])
        except ValueError as exc:
            return Calibration(corpus, model, reference_thresholds(f"no usable probe distances: {exc}"), created=now)
        return Calibration(corpus, model, thresholds, floor, probes, created=now)


async def explain(
    ctx: Any,
    corpus: str,
    model: str,
    query_text: str = "",
    *,
    refresh: bool = False,
    top_k: int = 3,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The calibration report of ``corpus`` under ``model``; with ``query_text``, also what
    the calibrated playbook would do with that query's hits, one by one, and why."""
    from .context import upstream_failure
    from .playbooks import parse_entry
    from .ranking import apply_playbook

    if refresh:
        ctx.calibrator.invalidate(corpus)
    report = (await ctx.calibrator.calibrate(ctx, corpus, model, trace_id)).report()
    if not query_text.strip():
        return report
    thresholds = report["thresholds"]
    _, vectors = await ctx.embed([query_text], model, trace_id)
    try:
        raw = await ctx.timed(
            ctx.vectord.search(corpus, vectors[0], top_k + EXTRA_HITS, trace_id=trace_id),
            f"search of playbook corpus {corpus!r}",
        )
    except UpstreamError as exc:
        if exc.status != 404:
            raise upstream_failure(f"playbook corpus {corpus!r}", exc) from None
        raw = []
    hits = [(parse_entry(h.get("metadata")), float(h["distance"])) for h in raw]
    hits = [(e, d) for e, d in hits if e is not None]
    if thresholds["max_ratio"] == 0.0:
        hits = hits[:top_k]
    outcome = apply_playbook(
        [], [], [],
        [e.answer_id for e, _ in hits],
        [e.answer_corpus for e, _ in hits],
        [e.score for e, _ in hits],
        [d for _, d in hits],
        None,
        max_distance=thresholds["max_distance"],
        max_inject_distance=thresholds["max_inject_distance"],
        max_ratio=thresholds["max_ratio"],
        hit_queries=[e.query_text for e, _ in hits],
        k=max(1, len(hits)),
    )
    rows = []
    for i, (entry, d) in enumerate(hits):
        rivals = [
            dd for j, (other, dd) in enumerate(hits)
            if j != i and other.query_text != entry.query_text
            and (other.answer_id, other.answer_corpus) != (entry.answer_id, entry.answer_corpus)
        ]
        competitor = min(rivals) if rivals else None
        if d > thresholds["max_distance"]:
            verdict = "ignored: beyond the boost window"
        elif thresholds["max_ratio"] and competitor is not None and d > thresholds["max_ratio"] * competitor:
            verdict = "refused by the ratio test: not clearly the nearest demand"
        elif i in outcome.inject_candidates:
            verdict = "acts: injected when retrieval misses the answer, boosted when it finds it"
        elif d > thresholds["max_inject_distance"]:
            verdict = "boost only: beyond the inject window"
        else:
            verdict = "acts (another hit of the same answer came first)"
        rows.append(
            {
                "recorded_query": entry.query_text,
                "answer": f"{entry.answer_corpus}/{entry.answer_id}",
                "distance": round(d, 4),
                "competitor_distance": None if competitor is None else round(competitor, 4),
                "ratio": None if not competitor else round(d / competitor, 4),
                "verdict": verdict,
            }
        )
    report["query"] = {"query_text": query_text, "hits": rows}
    return report


def _print_report(report: dict[str, Any]) -> None:
    t = report["thresholds"]
    print(f"playbook corpus {report['corpus']!r}, model {report['model'] or '(embedd default)'!r}")
    print(f"mode: {t['mode']}")
    print(f"  boost window (max_distance)         {t['max_distance']:.4f}")
    print(f"  inject window (max_inject_distance) {t['max_inject_distance']:.4f}")
    print(f"  ratio test (max_ratio)              {t['max_ratio']:g}" + ("  (off)" if not t["max_ratio"] else ""))
    print(f"why: {t['reason']}")
    if report["probes"]:
        q = report["probe_distance_quantiles"]
        print(
            f"probe texts: {report['probes']}, distance to the nearest recorded demand: "
            f"min {q['0']}, 10% {q['0.1']}, median {q['0.5']}, 90% {q['0.9']}"
        )
        print("closest probes (what sets the floor):")
        for p in report["closest_probes"]:
            print(f"  {p['distance']:.4f}  {p['probe']!r}  ~ {p['nearest_recorded_demand']!r}")
    query = report.get("query")
    if query:
        print(f"query {query['query_text']!r}:")
        if not query["hits"]:
            print("  no recorded demand (nothing to boost or inject)")
        for h in query["hits"]:
            ratio = "-" if h["ratio"] is None else f"{h['ratio']:.3f}"
            print(f"  {h['distance']:.4f}  ratio {ratio:>5}  {h['answer']:<24} {h['verdict']}")
            print(f"          recorded for {h['recorded_query']!r}")


def main(argv: list[str]) -> int:
    """``lakehouse calibrate``: what the calibrated playbook chose, and why."""
    import argparse
    import asyncio
    import sys

    import aiohttp
    import orjson

    parser = argparse.ArgumentParser(
        prog="lakehouse calibrate",
        description=(
            "Print the playbook thresholds matrixd derives for a playbook corpus under the "
            "embedding model in use (when a search sets neither threshold), the measurements "
            "behind them, and optionally what would happen to one query's playbook hits."
        ),
        epilog=(
            "example: lakehouse calibrate --corpus playbook_alice "
            "--query 'forklift drivers for Milwaukee nights'\n"
            "         lakehouse calibrate --url http://127.0.0.1:3110/v1 --token $TOKEN --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="matrixd's base URL, or a gateway's followed by /v1 (default: the config's matrixd)")
    parser.add_argument("--config", help="lakehouse.toml (for the default URL)")
    parser.add_argument("--token", default="", help="bearer token (a gateway with auth)")
    parser.add_argument("--corpus", default="", help="playbook corpus (default: matrixd's, playbook_memory)")
    parser.add_argument("--model", default="", help="embedding model (default: embedd's)")
    parser.add_argument("--query", default="", help="also explain this query's playbook hits")
    parser.add_argument("--refresh", action="store_true", help="measure again instead of using matrixd's cached calibration")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.url:
        url = args.url.rstrip("/")
    else:
        from ..config import load_config

        config = load_config(args.config)
        url = f"http://{config.matrixd.host}:{config.matrixd.port}"
    body = {"playbook_corpus": args.corpus, "model": args.model, "query_text": args.query, "refresh": args.refresh}
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"

    async def run() -> tuple[int, bytes]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
            session.post(f"{url}/matrix/playbooks/calibration", data=orjson.dumps(body), headers=headers) as r,
        ):
            return r.status, await r.read()

    try:
        status, raw = asyncio.run(run())
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"lakehouse calibrate: matrixd at {url} unreachable: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"lakehouse calibrate: matrixd answered {status}: {raw.decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    report = orjson.loads(raw)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        _print_report(report)
    return 0
