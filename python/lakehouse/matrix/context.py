"""What every matrix operation needs: the upstream clients and the [matrixd] settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import numpy as np

from ..clients.base import UpstreamError
from ..clients.coalesce import Coalescer
from ..clients.embedd import EmbeddClient
from ..clients.queryd import QuerydClient
from ..clients.vectord import VectordClient
from ..config import Config, MatrixdConfig
from ..vectors.registry import NAME_PATTERN
from ..web import ApiError
from .calibration import Calibrator

__all__ = ["MatrixContext", "check_corpus_name", "upstream_failure"]

T = TypeVar("T")

#: most searches one coalesced vectord request carries (vectord's own trips take 32)
MAX_COALESCED = 32


def check_corpus_name(name: str, field: str) -> str:
    """``name`` when vectord would accept it as an index name, else ValueError naming
    ``field``: the caller's mistake is a 400 here, not vectord's 400 relayed as a 502."""
    if not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 80 else name[:80] + f"... ({len(name)} characters)"
        raise ValueError(
            f"{field}: invalid corpus name {shown!r}: use 1-128 characters of A-Z a-z 0-9 _ . -, "
            "not starting with '.' or '-'"
        )
    return name


def upstream_failure(what: str, exc: Exception) -> ApiError:
    """A 502 naming the step that failed (the contract's fail-loud rule)."""
    return ApiError(502, f"{what}: {exc}")


@dataclass
class MatrixContext:
    session: aiohttp.ClientSession
    embedd: EmbeddClient
    vectord: VectordClient
    queryd: QuerydClient
    settings: MatrixdConfig
    weak_models: list[str]
    #: for the caller-supplied judge URL: never carries the stack's bearer token
    judge_session: aiohttp.ClientSession
    #: corpus name -> dimension, for playbook corpora this process created or checked
    known_dims: dict[str, int] = field(default_factory=dict)
    #: calibrated playbook thresholds per (playbook corpus, model)
    calibrator: Calibrator = field(default_factory=Calibrator)
    #: vectord searches alike sent together under load (see :meth:`search`); None: each alone
    searches: Coalescer[tuple[np.ndarray, str | None], list[dict[str, Any]]] | None = None

    @classmethod
    def from_config(
        cls,
        session: aiohttp.ClientSession,
        config: Config,
        judge_session: aiohttp.ClientSession,
        upstreams: dict[str, aiohttp.ClientSession] | None = None,
    ) -> MatrixContext:
        """``upstreams``: a session (its own keep-alive pool) per daemon; ``session`` for
        the others."""
        s = config.matrixd
        per = upstreams or {}
        ctx = cls(
            session=session,
            embedd=EmbeddClient(per.get("embedd", session), config.upstream("matrixd", "embedd"), timeout=s.embed_timeout),
            vectord=VectordClient(per.get("vectord", session), config.upstream("matrixd", "vectord")),
            queryd=QuerydClient(per.get("queryd", session), config.upstream("matrixd", "queryd")),
            settings=s,
            weak_models=list(config.models.weak_models),
            judge_session=judge_session,
        )
        if s.coalesce_searches:
            ctx.searches = Coalescer(ctx._search_many, max_batch=MAX_COALESCED)
        return ctx

    async def search(
        self, corpus: str, vector: np.ndarray, k: int, exclude_ids: list[str] | None, trace_id: str | None
    ) -> list[dict[str, Any]]:
        """One vectord search of ``corpus``: ``[{id, distance, metadata?}]``, nearest first;
        UpstreamError as the vectord client raises it. The caller bounds its own wait
        (:meth:`timed`); a shared call is bounded by [matrixd].search_timeout as well, so a
        vectord that hangs never holds the searches queued behind it longer than that.

        Searches alike (corpus, k, exclude_ids, dimension) that arrive while one is in flight
        go to vectord together as one batch search (:class:`Coalescer`): one round trip and
        one pass of the core's exact scan per tile of them instead of one each. Each answer is
        the one a search of its own would give (the core answers a batch exactly as single
        searches). A vectord in this process (the shared topology) batches its searches
        itself, so they go to it directly.
        """
        exclude = list(exclude_ids) if exclude_ids else None
        if self.searches is None:
            return await self.vectord.search(corpus, vector, k, exclude_ids=exclude, trace_id=trace_id)
        key = (corpus, k, tuple(exclude or ()), int(vector.shape[0]))
        return await self.searches.submit(key, (vector, trace_id))

    async def _search_many(
        self, key: Hashable, items: list[tuple[np.ndarray, str | None]]
    ) -> list[list[dict[str, Any]] | BaseException]:
        corpus, k, exclude, _ = key  # type: ignore[misc]
        exclude_ids = list(exclude) or None
        what = f"search of corpus {corpus!r}"
        if len(items) == 1:
            vector, trace_id = items[0]
            try:
                return [await self.timed(self.vectord.search(corpus, vector, k, exclude_ids=exclude_ids, trace_id=trace_id), what)]
            except Exception as exc:  # noqa: BLE001 - the caller's own error
                return [exc]
        try:
            # the first caller's trace id names the shared request in vectord's log
            return await self.timed(
                self.vectord.search_batch(
                    corpus, np.stack([v for v, _ in items]), k, exclude_ids=exclude_ids, trace_id=items[0][1]
                ),
                what,
            )
        except UpstreamError as exc:
            if exc.status != 400:
                return [exc] * len(items)  # what each search would have met on its own
        # 400: one query's own fault (its vector): each on its own, for its own answer
        alone = await asyncio.gather(*(self._search_many(key, [item]) for item in items))
        return [answer[0] for answer in alone]

    async def embed(self, texts: list[str], model: str, trace_id: str | None) -> tuple[str, np.ndarray]:
        """``(model, vectors)``; any embedd failure is a 502 (the reference's ErrEmbed)."""
        try:
            name, _, vectors = await self.embedd.embed(texts, model or None, trace_id=trace_id)
        except UpstreamError as exc:
            raise upstream_failure("embed failed", exc) from None
        return name, vectors

    async def timed(self, aw: Awaitable[T], what: str) -> T:
        """``aw`` under [matrixd].search_timeout; a timeout is an UpstreamError like any other."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps every call in a task
            async with asyncio.timeout(self.settings.search_timeout):
                return await aw
        except TimeoutError:
            raise UpstreamError(
                "vectord", None, f"{what} timed out after {self.settings.search_timeout}s"
            ) from None
