"""A small whole stack in the test's process for the reality harnesses: gateway, embedd
(hash), vectord, matrixd, chatd (to a fake Ollama), validatord (with the workers as its
roster), observerd, and a ``workers`` corpus of 200 roster rows (``workers=`` for more),
each embedded as :data:`TEXT_TEMPLATE` renders it."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from lakehouse.clients.embedd import EmbeddClient
from lakehouse.clients.vectord import VectordClient
from lakehouse.fakes.ollama import FakeOllama
from lakehouse.roster import COLUMNS, iter_roster
from lakehouse.services import chatd, embedd, gateway, matrixd, observerd, validatord, vectord

WORKERS = 200
#: how a roster row becomes the text embedded into the corpus
TEXT_TEMPLATE = "Worker role: {role} in {city}. Skills: {skills}"


def _url(server: Any) -> str:
    return str(server.make_url("")).rstrip("/")


async def start_stack(
    aiohttp_server: Any, config: Any, fake: FakeOllama | None = None, *, roster: bool = True, workers: int = WORKERS
) -> str:
    """The gateway's URL."""
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in iter_roster(workers, seed=1)]
    config = config.replace("vectord", save_min_interval=0.0)
    if roster:
        path = config.path("roster.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(
            orjson.dumps({"candidate_id": r["worker_id"], "name": r["name"], "role": r["role"], "city": r["city"],
                          "state": r["state"], "availability": r["availability"]}) + b"\n"
            for r in rows
        ))
        config = config.replace("validatord", roster_path=str(path))
    if fake is not None:
        ollama = await aiohttp_server(fake.app())
        config = config.replace("chatd", ollama_url=_url(ollama))
    e = await aiohttp_server(embedd.create_app(config))
    v = await aiohttp_server(vectord.create_app(config))
    c = await aiohttp_server(chatd.create_app(config))
    urls = {"embedd_url": _url(e), "vectord_url": _url(v)}
    config = config.replace("matrixd", **urls)
    m = await aiohttp_server(matrixd.create_app(config))
    val = await aiohttp_server(validatord.create_app(config))
    obs = await aiohttp_server(observerd.create_app(config))
    config = config.replace(
        "gateway", matrixd_url=_url(m), chatd_url=_url(c), validatord_url=_url(val), observerd_url=_url(obs), **urls
    )
    g = await aiohttp_server(gateway.create_app(config))
    async with aiohttp.ClientSession() as session:
        texts = [TEXT_TEMPLATE.format(**r) for r in rows]
        _, dim, vecs = await EmbeddClient(session, urls["embedd_url"]).embed(texts)
        vec = VectordClient(session, urls["vectord_url"])
        await vec.create("workers", dim)
        meta = [{k: r[k] for k in ("name", "role", "city", "availability", "rating")} for r in rows]
        await vec.add("workers", [r["worker_id"] for r in rows], vecs, meta)
    return _url(g)
