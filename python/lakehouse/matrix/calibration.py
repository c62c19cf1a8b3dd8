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
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from ..clients.base import UpstreamError
from ..playbook import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_INJECT_DISTANCE

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
        self._probes: dict[str, tuple[list[str], np.ndarray]] = {}
        self._cache: dict[tuple[str, str], Calibration] = {}

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
        return cached[1]

    async def calibrate(self, ctx: Any, corpus: str, model: str, trace_id: str | None = None) -> Calibration:
        """The calibration of ``corpus`` under ``model`` ("" = embedd's default), cached."""
        key = (corpus, model)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached.created < self.ttl:
            return cached
        calibration = await self._measure(ctx, corpus, model, trace_id)
        self._cache[key] = calibration
        return calibration

    async def _measure(self, ctx: Any, corpus: str, model: str, trace_id: str | None) -> Calibration:
        now = time.monotonic()
        try:
            vectors = await self._probe_vectors(ctx, model, trace_id)
        except Exception as exc:  # embedd down or refusing: the reference's values, said so
            message = getattr(exc, "message", None) or str(exc)
            return Calibration(corpus, model, reference_thresholds(f"probe texts could not be embedded: {message}"), created=now)
        try:
            answers = await ctx.timed(
                ctx.vectord.search_batch(corpus, vectors, 1, trace_id=trace_id),
                f"calibration search of playbook corpus {corpus!r}",
            )
        except UpstreamError as exc:
            # a dimension clash (another model recorded this playbook) or vectord trouble
            return Calibration(
                corpus, model, reference_thresholds(f"playbook corpus could not be probed: {exc.message}"), created=now
            )
        texts = self._probes[model][0]
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
