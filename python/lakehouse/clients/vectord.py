"""Client for vectord (contract section 7), used by matrixd and the corpus builder.

    client = VectordClient(session, config.upstream("matrixd", "vectord"))
    await client.create("workers", 768, exist_ok=True)
    await client.add("workers", ids, vectors, metadata)        # -> (added, updated)
    hits = await client.search("workers", query, k=10)         # [{id, distance, metadata?}]

Search vectors go out as binary float32 frames (:mod:`lakehouse.transport`) once vectord
has said it takes them, as JSON before that and to any vectord that does not. Add vectors
go out as float32 arrays in JSON (orjson writes each number in its shortest float32 form,
as the reference does); large adds are sent in chunks of ``add_chunk`` items, one after
another. Failures raise :class:`~lakehouse.clients.base.UpstreamError`: status 400 for a
request vectord refuses, 404 for a missing index or item, 409 for a taken name, None when
vectord could not be reached or timed out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np

from ..transport import F32, encode_frame, offers_f32
from ..web import dumps
from .base import ServiceClient, UpstreamError

__all__ = ["VectordClient"]


def _q(segment: str) -> str:
    return quote(segment, safe="")


class VectordClient(ServiceClient):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float | None = 120.0,
        add_chunk: int = 5000,
    ) -> None:
        super().__init__(session, base_url, "vectord", timeout)
        #: searches go out as float32 frames (lakehouse.transport): None until vectord's
        #: first search answer says whether it takes them
        self.binary: bool | None = None
        if add_chunk < 1:
            raise ValueError(f"add_chunk must be positive, got {add_chunk}")
        self.add_chunk = add_chunk

    # -- indexes ----------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        dimension: int,
        *,
        distance: str | None = None,
        m: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
        rotate: bool | None = None,
        exist_ok: bool = False,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an index; the index's info. With ``exist_ok``, an existing index of that
        name is returned instead of a 409 (its parameters are not compared)."""
        body: dict[str, Any] = {"name": name, "dimension": dimension}
        for key, value in (
            ("distance", distance),
            ("m", m),
            ("ef_search", ef_search),
            ("ef_construction", ef_construction),
            ("rotate", rotate),
        ):
            if value is not None:
                body[key] = value
        try:
            return await self.post("/vectors/index", body, trace_id=trace_id)
        except UpstreamError as exc:
            if exist_ok and exc.status == 409:
                return await self.info(name, trace_id=trace_id)
            raise

    async def list(self, *, trace_id: str | None = None) -> list[dict[str, Any]]:
        """Every index: ``[{name, dimension, distance, m, ef_search, ef_construction, count}]``."""
        answer = await self.get("/vectors/index", trace_id=trace_id)
        return list(answer["indexes"])

    async def info(self, name: str, *, trace_id: str | None = None) -> dict[str, Any]:
        """Params, count, the core's ``stats`` and ``persistence`` counters."""
        return await self.get(f"/vectors/index/{_q(name)}", trace_id=trace_id)

    async def drop(self, name: str, *, missing_ok: bool = False, trace_id: str | None = None) -> bool:
        """Delete an index and its saved object; False if it did not exist (``missing_ok``)."""
        try:
            await self.delete(f"/vectors/index/{_q(name)}", trace_id=trace_id)
        except UpstreamError as exc:
            if missing_ok and exc.status == 404:
                return False
            raise
        return True

    async def save(self, name: str, *, trace_id: str | None = None) -> dict[str, Any]:
        """Wait until everything acknowledged so far is durable."""
        return await self.post(f"/vectors/index/{_q(name)}/save", trace_id=trace_id)

    async def merge(
        self, source: str, dest: str, *, clear_source: bool = False, trace_id: str | None = None
    ) -> dict[str, Any]:
        """Copy ``source``'s items missing from ``dest``; ``{merged, skipped, failed, cleared}``."""
        return await self.post(
            f"/vectors/index/{_q(source)}/merge",
            {"dest": dest, "clear_source": clear_source},
            trace_id=trace_id,
        )

    # -- items ------------------------------------------------------------------------------

    async def add(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        trace_id: str | None = None,
    ) -> tuple[int, int]:
        """Upsert items; ``(added, updated)`` summed over the chunks sent.

        ``metadata`` entries: a mapping (``{}`` clears an item's metadata) or None (keeps
        it). Each chunk is all or nothing; chunks already sent stay if a later one fails.
        """
        if isinstance(ids, str):
            raise ValueError("ids must be a sequence of strings, not a single string")
        ids = list(ids)
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != len(ids):
            raise ValueError(f"vectors must have shape ({len(ids)}, dims), got {arr.shape}")
        if metadata is not None and len(metadata) != len(ids):
            raise ValueError(f"got {len(metadata)} metadata entries for {len(ids)} ids")
        added = updated = 0
        for lo in range(0, len(ids), self.add_chunk):
            items = []
            for i in range(lo, min(lo + self.add_chunk, len(ids))):
                item: dict[str, Any] = {"id": ids[i], "vector": arr[i]}
                if metadata is not None and metadata[i] is not None:
                    item["metadata"] = dict(metadata[i])
                items.append(item)
            answer = await self.post(
                f"/vectors/index/{_q(name)}/add", {"items": items}, trace_id=trace_id
            )
            added += int(answer["added"])
            updated += int(answer["updated"])
        return added, updated

    async def search(
        self,
        name: str,
        vector: Any,
        k: int = 10,
        *,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
        trace_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The ``k`` nearest items: ``[{id, distance, metadata?}]``, nearest first."""
        body = self._search_body(k, ef, exclude_ids)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        answer = await self._search(name, body, query, "vector", trace_id)
        return list(answer["results"])

    async def search_batch(
        self,
        name: str,
        vectors: Any,
        k: int = 10,
        *,
        ef: int | None = None,
        exclude_ids: Sequence[str] | None = None,
        trace_id: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        """One result list per query row."""
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"vectors must be 2-d, got shape {arr.shape}")
        body = self._search_body(k, ef, exclude_ids)
        answer = await self._search(name, body, arr, "vectors", trace_id)
        return list(answer["results"])

    async def _search(
        self, name: str, body: dict[str, Any], query: np.ndarray, field: str, trace_id: str | None
    ) -> Any:
        """POST a search: a float32 frame to a vectord that offers them (it says so by
        ``Accept-Post`` on its search answers), JSON otherwise and until it has said so."""
        path = f"/vectors/index/{_q(name)}/search"
        if self.binary:
            status, headers, payload = await self.exchange(
                "POST", path, encode_frame(body, query), headers={"Content-Type": F32}, trace_id=trace_id
            )
            if status != 415:
                return self.decode(status, payload)
            self.binary = False  # replaced by a vectord without frames: JSON from now on
        body[field] = query
        status, headers, payload = await self.exchange(
            "POST", path, dumps(body), headers={"Content-Type": "application/json"}, trace_id=trace_id
        )
        if self.binary is None and status < 400:
            self.binary = offers_f32(headers.get("Accept-Post"))
        return self.decode(status, payload)

    @staticmethod
    def _search_body(k: int, ef: int | None, exclude_ids: Sequence[str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"k": k}
        if ef is not None:
            body["ef"] = ef
        if exclude_ids:
            if isinstance(exclude_ids, str):
                raise ValueError("exclude_ids must be a sequence of strings, not a single string")
            body["exclude_ids"] = list(exclude_ids)
        return body

    async def delete_items(
        self, name: str, ids: Sequence[str], *, trace_id: str | None = None
    ) -> int:
        """Delete items by id (unknown ids are ignored); how many were deleted."""
        if isinstance(ids, str):
            raise ValueError("ids must be a sequence of strings, not a single string")
        answer = await self.post(
            f"/vectors/index/{_q(name)}/delete", {"ids": list(ids)}, trace_id=trace_id
        )
        return int(answer["deleted"])

    async def get_item(
        self, name: str, item_id: str, *, trace_id: str | None = None
    ) -> dict[str, Any]:
        """``{id, vector, metadata?}`` (cosine indexes return the normalised vector).

        The ids ``.`` and ``..`` cannot be fetched this way (URL normalisation removes such
        path segments): ValueError."""
        if item_id in (".", ".."):
            raise ValueError(f"item id {item_id!r} cannot be addressed in a URL path")
        return await self.get(f"/vectors/index/{_q(name)}/items/{_q(item_id)}", trace_id=trace_id)
