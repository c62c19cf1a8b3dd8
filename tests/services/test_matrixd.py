"""matrixd over HTTP against real embedd (hash provider) and vectord apps on loopback ports.

Distances are placed exactly: corpus vectors and query vectors are built at a chosen cosine
distance from a text's embedding, so the contract's numbers (0.6566 -> 0.3283, the 0.20
inject window, the 0.135 cross-role hit) are tested as numbers, not as "smaller".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from hypothesis import strategies as st

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.embedd import EmbeddClient
from lakehouse.clients.matrixd import MatrixdClient
from lakehouse.clients.vectord import VectordClient
from lakehouse.config import Config, load_config
from lakehouse.fakes._script import Reply
from lakehouse.fakes.ollama import FakeOllama
from lakehouse.services import embedd, matrixd, vectord
from testkit import free_port

DIM = 64


@dataclass
class Stack:
    config: Config
    client: Any  # aiohttp TestClient on matrixd
    vectors: VectordClient
    embedder: EmbeddClient
    session: aiohttp.ClientSession

    async def call(self, path: str, body: Any = None, method: str = "POST") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        r = await self.client.request(method, path, data=data, headers={"Content-Type": "application/json"})
        raw = await r.read()
        assert r.status != 500, raw
        return r.status, orjson.loads(raw) if raw else None

    async def search(self, **body) -> dict:
        status, answer = await self.call("/matrix/search", body)
        assert status == 200, answer
        return answer

    async def record(self, **body) -> dict:
        status, answer = await self.call("/matrix/playbooks/record", body)
        assert status == 200, answer
        return answer

    async def embed(self, text: str) -> np.ndarray:
        _, _, vecs = await self.embedder.embed([text])
        return vecs[0].astype(np.float64)

    async def corpus(self, name: str, items: list[tuple[str, np.ndarray, dict | None]]) -> None:
        await self.vectors.create(name, DIM, exist_ok=True)
        await self.vectors.add(name, [i for i, _, _ in items], np.stack([v for _, v, _ in items]), [m for _, _, m in items])


def at_distance(base: np.ndarray, d: float, seed: int) -> np.ndarray:
    """A unit vector at cosine distance ``d`` from ``base``."""
    b = base / np.linalg.norm(base)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(b.shape)
    u -= (u @ b) * b
    u /= np.linalg.norm(u)
    c = 1.0 - d
    return c * b + np.sqrt(max(0.0, 1.0 - c * c)) * u


async def start(aiohttp_server, aiohttp_client, config: Config, **matrixd_changes) -> Stack:
    config = config.replace("embedd", dimension=DIM)
    config = config.replace("vectord", save_min_interval=0.0)
    e = await aiohttp_server(embedd.create_app(config))
    v = await aiohttp_server(vectord.create_app(config))
    config = config.replace(
        "matrixd",
        embedd_url=str(e.make_url("")).rstrip("/"),
        vectord_url=str(v.make_url("")).rstrip("/"),
        **matrixd_changes,
    )
    client = await aiohttp_client(matrixd.create_app(config))
    session = aiohttp.ClientSession()
    return Stack(
        config,
        client,
        VectordClient(session, config.matrixd.vectord_url),
        EmbeddClient(session, config.matrixd.embedd_url),
        session,
    )


@pytest.fixture
async def stack(aiohttp_server, aiohttp_client, config):
    s = await start(aiohttp_server, aiohttp_client, config)
    yield s
    await s.session.close()


@pytest.fixture
async def fake_judge(aiohttp_server):
    fake = FakeOllama()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/api/chat"))
    return fake


def ids(answer: dict) -> list[str]:
    return [r["id"] for r in answer["results"]]


# -- routes, retrieval, merge ---------------------------------------------------------------


async def test_routes_are_mounted(stack):
    paths = {(r.method, r.resource.canonical) for r in stack.client.app.router.routes()}
    for route in [
        ("POST", "/matrix/search"),
        ("GET", "/matrix/corpora"),
        ("POST", "/matrix/relevance"),
        ("POST", "/matrix/downgrade"),
        ("POST", "/matrix/playbooks/record"),
        ("POST", "/matrix/playbooks/bulk"),
        ("POST", "/matrix/corpus/build"),
        ("GET", "/health"),
    ]:
        assert route in paths
    status, body = await stack.call("/health", method="GET")
    assert (status, body) == (200, {"status": "ok", "service": "matrixd"})


async def test_global_merge_by_distance(stack):
    q = np.zeros(DIM)
    q[0] = 1.0
    await stack.corpus("a", [("a-near", at_distance(q, 0.1, 1), {"label": "a near"}), ("a-far", at_distance(q, 0.7, 2), {"label": "a far"})])
    await stack.corpus("b", [("b-near", at_distance(q, 0.05, 3), {"label": "b near"}), ("b-far", at_distance(q, 0.6, 4), {"label": "b far"})])
    answer = await stack.search(query_vector=q.tolist(), corpora=["a", "b"], k=3)
    assert ids(answer) == ["b-near", "a-near", "b-far"]
    assert [r["corpus"] for r in answer["results"]] == ["b", "a", "b"]
    assert answer["results"][0]["distance"] == pytest.approx(0.05, abs=1e-5)
    assert answer["results"][0]["metadata"] == {"label": "b near"}
    assert all(r["source"] == "retrieval" for r in answer["results"])
    assert answer["per_corpus"] == {"a": 2, "b": 2}
    assert answer["metadata_filter_dropped"] == 0
    assert answer["playbook"]["enabled"] is False and answer["playbook"]["boosted"] == 0
    # per_corpus_k limits each corpus before the merge
    answer = await stack.search(query_vector=q.tolist(), corpora=["a", "b", "a"], k=10, per_corpus_k=1)
    assert ids(answer) == ["b-near", "a-near"] and answer["per_corpus"] == {"a": 1, "b": 1}


async def test_concurrent_searches_share_vectord_requests_and_keep_their_own_answers(stack):
    # 300 items: above the inline threshold of nothing, but the point is the hop: searches
    # alike that arrive while one is in flight go to vectord as one batch (Coalescer).
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, DIM))
    await stack.corpus("w", [(f"i{j}", x[j], {"j": j}) for j in range(300)])
    await stack.corpus("v", [(f"v{j}", x[j] + 0.01, None) for j in range(40)])
    bodies = [{"query_vector": x[j].tolist(), "corpora": ["w", "v"], "k": 3} for j in range(24)]
    bodies += [{"query_vector": x[0].tolist(), "corpora": ["w"], "k": 3, "exclude_ids": ["i0"]}]  # another kind
    bodies += [{"query_vector": x[1][:10].tolist(), "corpora": ["w"], "k": 3}]  # wrong dimension: its own 400
    # alike the first 24 (their batch): vectord refuses a zero vector under cosine, and the
    # batch's 400 must become this request's alone
    bodies += [{"query_vector": [0.0] * DIM, "corpora": ["w", "v"], "k": 3}]
    alone = [await stack.call("/matrix/search", b) for b in bodies]  # one at a time: nothing to share
    ctx = stack.client.app[matrixd.MATRIX]
    calls, items = ctx.searches.calls, ctx.searches.items
    together = await asyncio.gather(*(stack.call("/matrix/search", b) for b in bodies))
    assert together == alone
    assert [a[0] for a in together] == [200] * 25 + [400, 400]
    assert "10" in together[-2][1]["error"]["message"]  # the dimension, named by vectord
    assert together[0][1]["results"][0]["id"] == "i0" and together[24][1]["results"][0]["id"] != "i0"
    assert ctx.searches.items - items == 2 * 24 + 4  # every vectord search went through it...
    assert ctx.searches.calls - calls < ctx.searches.items - items  # ...and some shared a request


async def test_searches_alone_when_coalescing_is_off(aiohttp_server, aiohttp_client, config):
    s = await start(aiohttp_server, aiohttp_client, config, coalesce_searches=False)
    try:
        await s.corpus("w", [("a", np.ones(DIM), None)])
        answers = await asyncio.gather(*(s.search(query_vector=[1.0] * DIM, corpora=["w"], k=1) for _ in range(5)))
        assert all(ids(a) == ["a"] for a in answers)
        assert s.client.app[matrixd.MATRIX].searches is None
    finally:
        await s.session.close()


async def test_query_vector_wins_and_query_text_is_embedded(stack):
    e = await stack.embed("forklift operator in milwaukee")
    other = np.zeros(DIM)
    other[1] = 1.0
    await stack.corpus("w", [("text-match", e, None), ("vector-match", other, None)])
    by_text = await stack.search(query_text="forklift operator in milwaukee", corpora=["w"], k=1)
    assert ids(by_text) == ["text-match"] and by_text["results"][0]["distance"] == pytest.approx(0, abs=1e-5)
    both = await stack.search(query_text="forklift operator in milwaukee", query_vector=other.tolist(), corpora=["w"], k=1)
    assert ids(both) == ["vector-match"]
    # an empty vector counts as absent (Go's omitempty): the text is used
    empty = await stack.search(query_text="forklift operator in milwaukee", query_vector=[], corpora=["w"], k=1)
    assert ids(empty) == ["text-match"]


async def test_metadata_filter_keeps_two_of_six_and_exclude_ids(stack):
    q = np.zeros(DIM)
    q[0] = 1.0
    labels = ["a near", "a far", "b near", "b far", "c near", "c far"]
    await stack.corpus("m", [(f"x{i}", at_distance(q, 0.1 + 0.05 * i, i), {"label": lab}) for i, lab in enumerate(labels)])
    answer = await stack.search(query_vector=q.tolist(), corpora=["m"], k=10, metadata_filter={"label": ["a near", "b near"]})
    assert ids(answer) == ["x0", "x2"] and answer["metadata_filter_dropped"] == 4
    answer = await stack.search(query_vector=q.tolist(), corpora=["m"], k=3, exclude_ids=["x0", "x1"])
    # pushed down to vectord, so k results still come back
    assert ids(answer) == ["x2", "x3", "x4"]


# -- the playbook ------------------------------------------------------------------------


async def test_smoke_boost_0_6566_becomes_0_3283(stack):
    text = "widget demand for the smoke"
    e = await stack.embed(text)
    await stack.corpus(
        "widgets",
        [("widget-a", at_distance(e, 0.2, 1), None), ("widget-b", at_distance(e, 0.4, 2), None), ("widget-c", at_distance(e, 0.6566, 3), {"n": 3})],
    )
    cold = await stack.search(query_text=text, corpora=["widgets"], k=3, use_playbook=True)
    assert ids(cold) == ["widget-a", "widget-b", "widget-c"]
    assert cold["playbook"]["cold_start"] is True
    baseline = cold["results"][2]["distance"]
    assert baseline == pytest.approx(0.6566, abs=1e-5)

    rec = await stack.record(query_text=text, answer_id="widget-c", answer_corpus="widgets", score=1.0)
    expected_id = hashlib.sha256(f"{text}\x1fwidget-c\x1fwidgets".encode()).hexdigest()[:32]
    assert rec == {"playbook_id": expected_id, "playbook_corpus": "playbook_memory"}

    warm = await stack.search(query_text=text, corpora=["widgets"], k=3, use_playbook=True)
    assert ids(warm) == ["widget-a", "widget-c", "widget-b"]  # rank 3 -> rank 2
    c = warm["results"][1]
    assert c["source"] == "boost" and c["metadata"] == {"n": 3}
    assert np.float32(c["distance"]) == np.float32(np.float32(baseline) * np.float32(0.5))
    assert round(c["distance"], 4) == 0.3283
    assert (warm["playbook"]["hits"], warm["playbook"]["boosted"], warm["playbook"]["injected"]) == (1, 1, 0)
    # without use_playbook nothing changes
    again = await stack.search(query_text=text, corpora=["widgets"], k=3)
    assert ids(again) == ["widget-a", "widget-b", "widget-c"]


async def _workers(stack, q: np.ndarray) -> None:
    await stack.corpus(
        "workers",
        [(f"w-{i}", at_distance(q, 0.3 + 0.02 * i, 10 + i), {"role": "Picker", "n": i}) for i in range(1, 6)]
        + [("w-9", at_distance(q, 0.95, 99), {"role": "Forklift Operator", "city": "Milwaukee"})],
    )


async def test_paraphrase_within_0_20_is_injected_and_at_0_3_is_not(stack):
    text = "need forklift operators in Milwaukee"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-9", answer_corpus="workers", score=1.0)

    near = at_distance(e, 0.15, 5)
    answer = await stack.search(
        query_vector=near.tolist(), corpora=["workers"], k=3, use_playbook=True, playbook_max_inject_distance=0.20
    )
    assert answer["playbook"]["thresholds"]["mode"] == "request"
    top = answer["results"][0]
    assert top["id"] == "w-9" and top["source"] == "inject" and top["corpus"] == "workers"
    assert top["distance"] == pytest.approx(0.15 * 0.5, abs=1e-4)
    assert top["metadata"] == {"role": "Forklift Operator", "city": "Milwaukee"}
    assert answer["playbook"]["injected"] == 1 and len(answer["results"]) == 3

    # The reference's window applies when the request sets it (a request that sets neither
    # threshold is calibrated: tests/matrix/test_calibration.py)
    far = at_distance(e, 0.3, 6)
    answer = await stack.search(
        query_vector=far.tolist(), corpora=["workers"], k=3, use_playbook=True, playbook_max_inject_distance=0.20
    )
    assert "w-9" not in ids(answer)
    assert answer["playbook"]["hits"] == 1 and answer["playbook"]["injected"] == 0
    # the request can widen the inject window
    answer = await stack.search(query_vector=far.tolist(), corpora=["workers"], k=3, use_playbook=True, playbook_max_inject_distance=0.35)
    assert ids(answer)[0] == "w-9"


async def test_role_gate_cross_role_rejected_same_role_plural_accepted(stack):
    text = "Forklift Operator at Beacon Freight Detroit"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-9", answer_corpus="workers", score=1.0, role="Forklift Operator")
    q = at_distance(e, 0.135, 7).tolist()
    cross = await stack.search(query_vector=q, corpora=["workers"], k=3, use_playbook=True, query_role="CNC Operator")
    assert "w-9" not in ids(cross)
    assert cross["playbook"]["rejected_role"] == 1 and cross["playbook"]["injected"] == 0
    same = await stack.search(query_vector=q, corpora=["workers"], k=3, use_playbook=True, query_role="Forklift Operators")
    assert ids(same)[0] == "w-9" and same["playbook"]["rejected_role"] == 0
    # no query role: the gate is open
    open_ = await stack.search(query_vector=q, corpora=["workers"], k=3, use_playbook=True)
    assert ids(open_)[0] == "w-9"


async def test_excluded_ids_never_come_back_through_boost_or_inject(stack):
    text = "warehouse associate swap"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-9", answer_corpus="workers", score=1.0)  # inject path
    await stack.record(query_text=text, answer_id="w-1", answer_corpus="workers", score=1.0)  # boost path
    answer = await stack.search(query_text=text, corpora=["workers"], k=6, use_playbook=True)
    assert {"w-9", "w-1"} <= set(ids(answer))
    answer = await stack.search(query_text=text, corpora=["workers"], k=6, use_playbook=True, exclude_ids=["w-9", "w-1"])
    assert not {"w-9", "w-1"} & set(ids(answer))
    assert answer["playbook"]["boosted"] == 0 and answer["playbook"]["injected"] == 0


async def test_playbook_namespaces_are_isolated(stack):
    text = "alice's milwaukee demand"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-9", answer_corpus="workers", score=1.0, playbook_corpus="playbook_alice")
    await stack.record(query_text="something else for bob", answer_id="w-5", answer_corpus="workers", score=0.5, playbook_corpus="playbook_bob")
    bob = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, playbook_corpus="playbook_bob")
    assert "w-9" not in ids(bob) and bob["playbook"]["injected"] == 0 and bob["playbook"]["corpus"] == "playbook_bob"
    default = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True)
    assert "w-9" not in ids(default) and default["playbook"]["cold_start"] is True
    alice = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, playbook_corpus="playbook_alice")
    assert ids(alice)[0] == "w-9"
    names = (await stack.call("/matrix/corpora", method="GET"))[1]["corpora"]
    assert {"playbook_alice", "playbook_bob", "workers"} <= set(names)
    assert "playbook_memory" not in names


async def test_rerecording_the_same_triple_upserts(stack):
    text = "same triple"
    e = await stack.embed(text)
    await _workers(stack, e)
    first = await stack.record(query_text=text, answer_id="w-3", answer_corpus="workers", score=0.2, tags=["a"])
    second = await stack.record(query_text=text, answer_id="w-3", answer_corpus="workers", score=1.0, role="Picker")
    assert first["playbook_id"] == second["playbook_id"]
    info = await stack.vectors.info("playbook_memory")
    assert info["count"] == 1
    item = await stack.vectors.get_item("playbook_memory", first["playbook_id"])
    assert item["metadata"]["score"] == 1.0 and item["metadata"]["role"] == "Picker"
    assert item["metadata"]["answer_id"] == "w-3" and item["metadata"]["query_text"] == text
    # the last score is the one applied
    answer = await stack.search(query_text=text, corpora=["workers"], k=6, use_playbook=True)
    w3 = next(r for r in answer["results"] if r["id"] == "w-3")
    assert w3["source"] == "boost" and w3["distance"] == pytest.approx(0.36 * 0.5, abs=1e-4)


async def test_a_deleted_answer_is_not_injected(stack):
    text = "ghost worker"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-gone", answer_corpus="workers", score=1.0)
    await stack.record(query_text=text, answer_id="x-1", answer_corpus="no_such_corpus", score=1.0)
    answer = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True)
    assert not {"w-gone", "x-1"} & set(ids(answer))
    assert answer["playbook"]["rejected_missing"] == 2 and answer["playbook"]["injected"] == 0


async def test_injected_answers_obey_the_metadata_filter(stack):
    text = "filtered inject"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-9", answer_corpus="workers", score=1.0)
    answer = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, metadata_filter={"role": "Picker"})
    assert "w-9" not in ids(answer) and answer["playbook"]["rejected_filter"] == 1
    answer = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, metadata_filter={"city": "Milwaukee"})
    assert ids(answer) == ["w-9"]


# -- the judge gate ----------------------------------------------------------------------


async def _judge_setup(stack):
    text = "forklift operator for the judge"
    e = await stack.embed(text)
    await _workers(stack, e)
    await stack.record(query_text=text, answer_id="w-9", answer_corpus="workers", score=1.0)
    await stack.record(query_text=text, answer_id="w-2", answer_corpus="workers", score=1.0)  # a boost
    return text


async def test_judge_approves(stack, fake_judge):
    text = await _judge_setup(stack)
    fake_judge.rule("w-9", '{"rating": 4, "reason": "fits"}')
    answer = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=fake_judge.url, judge_model="qwen2.5:latest")
    assert ids(answer)[0] == "w-9" and answer["playbook"]["rejected_judge"] == 0
    assert answer["playbook"]["boosted"] == 1
    calls = fake_judge.calls("/api/chat")
    assert len(calls) == 1  # the inject candidate only: boosts are not judged
    sent = calls[0].json
    assert sent["model"] == "qwen2.5:latest" and sent["stream"] is False and sent["format"] == "json"
    assert text in sent["messages"][-1]["content"] and "Milwaukee" in sent["messages"][-1]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        '{"rating": 1, "reason": "a crane operator"}',
        '{"rating": 2}',
        "I think it is fine",
        '{"score": 5}',
        Reply(status=500),
    ],
    ids=["rating-1", "rating-2", "not-json", "no-rating", "http-500"],
)
async def test_judge_rejects_and_fails_closed(stack, fake_judge, reply):
    text = await _judge_setup(stack)
    fake_judge.rule("w-9", reply)
    answer = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=fake_judge.url, judge_model="qwen2.5:latest")
    assert "w-9" not in ids(answer)
    assert answer["playbook"]["rejected_judge"] == 1 and answer["playbook"]["injected"] == 0
    assert answer["playbook"]["boosted"] == 1  # the boost survives a failing judge


async def test_judge_min_rating_and_disabled_gate(stack, fake_judge):
    text = await _judge_setup(stack)
    fake_judge.rule("w-9", '{"rating": 4}')
    strict = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=fake_judge.url, judge_model="qwen2.5:latest", judge_min_rating=5)
    assert "w-9" not in ids(strict)
    # no model: no gate (the reference's nil gate), nothing is asked
    fake_judge.requests.clear()
    ungated = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=fake_judge.url)
    assert ids(ungated)[0] == "w-9" and fake_judge.calls("/api/chat") == []


async def test_judge_unreachable_or_slow_rejects(aiohttp_server, aiohttp_client, config, fake_judge):
    s = await start(aiohttp_server, aiohttp_client, config, judge_timeout=0.3)
    try:
        text = await _judge_setup(s)
        fake_judge.rule("w-9", Reply('{"rating": 5}', delay=2.0))
        slow = await s.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=fake_judge.url, judge_model="qwen2.5:latest")
        assert "w-9" not in ids(slow) and slow["playbook"]["rejected_judge"] == 1
        dead = f"http://127.0.0.1:{free_port()}/api/chat"
        gone = await s.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=dead, judge_model="m")
        assert "w-9" not in ids(gone) and gone["playbook"]["rejected_judge"] == 1
    finally:
        await s.session.close()


async def test_judge_through_chatd_shape(stack, aiohttp_server):
    from aiohttp import web

    seen = []

    async def chat(request):
        body = await request.json()
        seen.append(body)
        return web.json_response({"model": body["model"], "provider": "x", "content": '{"rating": 3}', "finish_reason": "stop"})

    app = web.Application()
    app.router.add_post("/chat", chat)
    server = await aiohttp_server(app)
    text = await _judge_setup(stack)
    answer = await stack.search(query_text=text, corpora=["workers"], k=3, use_playbook=True, judge_url=str(server.make_url("/chat")), judge_model="qwen2.5:latest")
    assert ids(answer)[0] == "w-9"
    assert set(seen[0]) == {"model", "messages", "format", "temperature"}


# -- bulk ----------------------------------------------------------------------------------


async def test_bulk_records_each_entry_on_its_own(stack):
    status, answer = await stack.call(
        "/matrix/playbooks/bulk",
        {
            "playbook_corpus": "playbook_team",
            "entries": [
                {"query_text": "a", "answer_id": "w-1", "answer_corpus": "workers", "score": 1.0},
                {"query_text": "", "answer_id": "w-2", "answer_corpus": "workers", "score": 1.0},
                {"query_text": "c", "answer_id": "w-3", "answer_corpus": "workers", "score": 0.5, "playbook_corpus": "playbook_own"},
                {"query_text": "d", "answer_id": "w-4", "answer_corpus": "workers", "score": "high"},
                7,
                {"query_text": "e", "answer_id": "w-5", "answer_corpus": "workers", "score": 0.5, "extra": 1},
            ],
        },
    )
    assert status == 200, answer
    assert answer["recorded"] == 2 and answer["failed"] == 4
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert results[0]["playbook_id"] == hashlib.sha256(b"a\x1fw-1\x1fworkers").hexdigest()[:32]
    assert results[0]["playbook_corpus"] == "playbook_team"
    assert results[2]["playbook_corpus"] == "playbook_own"  # the entry wins
    assert "query_text" in results[1]["error"]
    assert "error" in results[3] and "error" in results[4] and "extra" in results[5]["error"]
    assert (await stack.vectors.info("playbook_team"))["count"] == 1
    assert (await stack.vectors.info("playbook_own"))["count"] == 1


async def test_bulk_limits_and_aliases(aiohttp_server, aiohttp_client, config):
    s = await start(aiohttp_server, aiohttp_client, config, max_bulk_entries=2)
    try:
        entry = {"query_text": "a", "answer_id": "w-1", "answer_corpus": "workers", "score": 1}
        status, body = await s.call("/matrix/playbooks/bulk", {"entries": [entry] * 3})
        assert status == 400 and "too many" in body["error"]["message"]
        status, body = await s.call("/matrix/playbooks/bulk", {"entries": [entry], "corpus": "x", "playbook_corpus": "y"})
        assert status == 400
        status, body = await s.call("/matrix/playbooks/bulk", {"entries": [entry], "corpus": "via_alias"})
        assert status == 200 and body["results"][0]["playbook_corpus"] == "via_alias"
        status, body = await s.call("/matrix/playbooks/bulk", {"entries": []})
        assert (status, body) == (200, {"results": [], "recorded": 0, "failed": 0})
    finally:
        await s.session.close()


# -- relevance, downgrade, corpora -------------------------------------------------------------


async def test_relevance_route_smoke(stack):
    status, body = await stack.call(
        "/matrix/relevance",
        {
            "focus": {"path": "crates/queryd/src/db.go", "defined_symbols": ["Connector"], "imported_symbols": ["catalogd::Registry"]},
            "chunks": [
                {"source": "crates/vectord/src/pool.rs", "text": "Connector opens a db pool with conn handle"},
                {"source": "crates/catalogd/src/registry.rs", "text": "Registry lookup of a manifest: dataset entries"},
                {"doc_id": "junk-1", "text": "lorem ipsum dolor"},
            ],
        },
    )
    assert status == 200, body
    assert body["threshold"] == 0.3
    assert [c["index"] for c in body["kept"]] == [0] and body["kept"][0]["score"] == pytest.approx(0.68)
    assert [c["score"] for c in body["dropped"]] == [pytest.approx(-0.46), 0.0]
    assert body["dropped"][1]["doc_id"] == "junk-1"
    # the observerd client's call shape works
    client = MatrixdClient(stack.session, str(stack.client.make_url("")).rstrip("/"))
    answer = await client.relevance({"path": "a/b/c.rs", "defined_symbols": [], "imported_symbols": []}, [{"source": "a/b/d.rs", "text": "x"}], threshold=0.2)
    assert [c["index"] for c in answer["kept"]] == [0]


async def test_downgrade_route(stack, monkeypatch):
    async def d(**body):
        status, answer = await stack.call("/matrix/downgrade", body)
        assert status == 200, answer
        return answer

    monkeypatch.delenv("LH_FORCE_FULL_ENRICHMENT", raising=False)
    assert await d(mode="codereview_lakehouse", model="grok-4.1-fast") == {
        "mode": "codereview_isolation", "downgraded_from": "codereview_lakehouse", "reason": "strong_model"
    }
    assert (await d(mode="codereview_lakehouse", model="qwen3.5:latest"))["mode"] == "codereview_lakehouse"  # [models].weak_models
    assert (await d(mode="codereview_lakehouse", model="qwen3.5:latest", weak_models=[]))["mode"] == "codereview_isolation"
    assert (await d(mode="codereview_lakehouse", model="x", forced_mode=True))["reason"] == "forced_mode"
    monkeypatch.setenv("LH_FORCE_FULL_ENRICHMENT", "true")
    assert (await d(mode="codereview_lakehouse", model="x"))["reason"] == "force_full_enrichment"
    assert (await d(mode="codereview_lakehouse", model="x", force_full_enrichment=False))["mode"] == "codereview_isolation"
    assert (await d(mode="codereview_null", model="x")) == {"mode": "codereview_null", "reason": "mode_not_eligible"}
    status, body = await stack.call("/matrix/downgrade", {"mode": "", "model": "x"})
    assert status == 400
    client = MatrixdClient(stack.session, str(stack.client.make_url("")).rstrip("/"))
    assert (await client.downgrade("codereview_lakehouse", "big-model", force_full_enrichment=False))["mode"] == "codereview_isolation"


async def test_corpora_lists_vectord_indexes(stack):
    status, body = await stack.call("/matrix/corpora", method="GET")
    assert (status, body) == (200, {"corpora": [], "indexes": []})
    await stack.vectors.create("workers", DIM)
    status, body = await stack.call("/matrix/corpora", method="GET")
    assert body["corpora"] == ["workers"] and body["indexes"][0]["dimension"] == DIM


# -- every 400 and 502 ----------------------------------------------------------------------


BAD_SEARCHES = [
    ({"query_text": "x"}, "corpora"),
    ({"query_text": "x", "corpora": []}, "corpora"),
    ({"query_text": "x", "corpora": [""]}, "empty name"),
    # names vectord would refuse are the caller's mistake: 400 here, not vectord's 400 as a 502
    ({"query_text": "x", "corpora": ["w", " "]}, "corpora[1]: invalid corpus name"),
    ({"query_text": "x", "corpora": ["x" * 100_000]}, "(100000 characters)"),
    ({"query_text": "x", "corpora": ["w"], "use_playbook": True, "playbook_corpus": " "}, "playbook_corpus: invalid"),
    ({"query_text": "x", "corpora": ["w"], "use_playbook": True, "playbook_corpus": "p" * 100_000}, "playbook_corpus: invalid"),
    ({"query_text": "x", "corpora": [f"c{i}" for i in range(65)]}, "at most 64"),
    ({"corpora": ["w"]}, "query"),
    ({"query_text": "   ", "corpora": ["w"]}, "query"),
    ({"query": "x", "corpora": ["w"]}, "query"),  # the renamed field fails loudly
    ({"query_text": "x", "corpora": "w"}, "corpora"),
    ({"query_text": "x", "corpora": ["w"], "k": -1}, "k"),
    ({"query_text": "x", "corpora": ["w"], "k": 100000}, "k"),
    ({"query_text": "x", "corpora": ["w"], "per_corpus_k": -2}, "per_corpus_k"),
    ({"query_text": "x", "corpora": ["w"], "playbook_top_k": -1}, "playbook_top_k"),
    ({"query_text": "x", "corpora": ["w"], "playbook_max_distance": -0.1}, "playbook_max_distance"),
    ({"query_text": "x", "corpora": ["w"], "playbook_max_inject_distance": -1}, "playbook_max_inject_distance"),
    ({"query_text": "x", "corpora": ["w"], "metadata_filter": {"a": None}}, "metadata_filter"),
    ({"query_text": "x", "corpora": ["w"], "metadata_filter": [1]}, "metadata_filter"),
    ({"query_text": "x", "corpora": ["w"], "judge_min_rating": 6}, "judge_min_rating"),
    ({"query_text": "x", "corpora": ["w"], "judge_url": "ftp://x", "judge_model": "m"}, "judge_url"),
    ({"query_vector": [1e39, 0], "corpora": ["w"]}, "float32"),
    ({"query_text": "x", "corpora": ["w"], "exclude_ids": "w-1"}, "exclude_ids"),
    ({"query_text": "x", "corpora": ["w"], "use_playbook": "yes"}, "use_playbook"),
]


@pytest.mark.parametrize("body,word", BAD_SEARCHES)
async def test_search_400s(stack, body, word):
    await stack.vectors.create("w", DIM)
    status, answer = await stack.call("/matrix/search", body)
    assert status == 400, answer
    assert word in answer["error"]["message"]


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'{"query_text": "x", "corpora": ["w"]', "\udcff".encode("utf-8", "surrogatepass")])
async def test_malformed_bodies_are_400_on_every_post_route(stack, raw):
    for path in ["/matrix/search", "/matrix/playbooks/record", "/matrix/playbooks/bulk", "/matrix/relevance", "/matrix/downgrade", "/matrix/corpus/build"]:
        status, answer = await stack.call(path, raw)
        assert status == 400, (path, answer)


async def test_query_vector_of_the_wrong_dimension_is_400(stack):
    await stack.vectors.create("w", DIM)
    status, answer = await stack.call("/matrix/search", {"query_vector": [1.0, 0.0], "corpora": ["w"]})
    assert status == 400 and "'w'" in answer["error"]["message"]


async def test_a_missing_corpus_is_404_naming_it(stack):
    await stack.vectors.create("w", DIM)
    status, answer = await stack.call("/matrix/search", {"query_text": "x", "corpora": ["w", "missing"]})
    assert status == 404 and "corpus 'missing' not found" in answer["error"]["message"]
    # a missing playbook corpus is a cold start, not an error
    status, answer = await stack.call("/matrix/search", {"query_text": "x", "corpora": ["w"], "use_playbook": True, "playbook_corpus": "nope"})
    assert status == 200 and answer["playbook"]["cold_start"] is True


async def test_upstreams_down_are_502(aiohttp_server, aiohttp_client, config):
    dead = f"http://127.0.0.1:{free_port()}"
    s = await start(aiohttp_server, aiohttp_client, config)
    try:
        bad = s.config.replace("matrixd", embedd_url=dead)
        client = await aiohttp_client(matrixd.create_app(bad))
        r = await client.post("/matrix/search", json={"query_text": "x", "corpora": ["w"]})
        assert r.status == 502 and "embed" in (await r.json())["error"]["message"]
        r = await client.post("/matrix/playbooks/record", json={"query_text": "x", "answer_id": "a", "answer_corpus": "c", "score": 1})
        assert r.status == 502
        # a query_vector needs no embedd; vectord down is a 502 too
        bad = s.config.replace("matrixd", vectord_url=dead)
        client = await aiohttp_client(matrixd.create_app(bad))
        r = await client.post("/matrix/search", json={"query_vector": [1.0] * DIM, "corpora": ["w"]})
        assert r.status == 502 and "'w'" in (await r.json())["error"]["message"]
        r = await client.get("/matrix/corpora")
        assert r.status == 502
        r = await client.post("/matrix/playbooks/record", json={"query_text": "x", "answer_id": "a", "answer_corpus": "c", "score": 1})
        assert r.status == 502
        # the bulk route reports the failure per entry
        r = await client.post("/matrix/playbooks/bulk", json={"entries": [{"query_text": "x", "answer_id": "a", "answer_corpus": "c", "score": 1}]})
        body = await r.json()
        assert r.status == 200 and body["failed"] == 1 and "vectord" in body["results"][0]["error"]
    finally:
        await s.session.close()


async def test_slow_corpus_is_502(aiohttp_server, aiohttp_client, config):
    from aiohttp import web

    async def slow(request):
        await asyncio.sleep(2)
        return web.json_response({"results": []})

    app = web.Application()
    app.router.add_post("/vectors/index/{name}/search", slow)
    server = await aiohttp_server(app)
    cfg = config.replace("matrixd", vectord_url=str(server.make_url("")).rstrip("/"), search_timeout=0.2)
    client = await aiohttp_client(matrixd.create_app(cfg))
    r = await client.post("/matrix/search", json={"query_vector": [1.0, 0.0], "corpora": ["w"]})
    assert r.status == 502 and "timed out" in (await r.json())["error"]["message"]


@pytest.mark.parametrize(
    "body,word",
    [
        ({"query_text": "", "answer_id": "a", "answer_corpus": "c", "score": 1}, "query_text"),
        ({"query_text": "  ", "answer_id": "a", "answer_corpus": "c", "score": 1}, "query_text"),
        ({"query_text": "q", "answer_id": "", "answer_corpus": "c", "score": 1}, "answer_id"),
        ({"query_text": "q", "answer_id": "a", "answer_corpus": "", "score": 1}, "answer_corpus"),
        ({"query_text": "q", "answer_id": "a", "answer_corpus": "c", "score": 1.5}, "score"),
        ({"query_text": "q", "answer_id": "a", "answer_corpus": "c", "score": -0.1}, "score"),
        ({"query_text": "q", "answer_id": "a", "answer_corpus": "c"}, "score"),
        ({"query": "q", "answer_id": "a", "answer_corpus": "c", "score": 1}, "query"),
        ({"query_text": "q", "answer_id": "a", "answer_corpus": "c", "score": 1, "tags": "x"}, "tags"),
    ],
)
async def test_record_400s(stack, body, word):
    status, answer = await stack.call("/matrix/playbooks/record", body)
    assert status == 400, answer
    assert word in answer["error"]["message"]


async def test_record_into_a_corpus_of_another_dimension_is_400(stack):
    await stack.vectors.create("playbook_small", 3)
    status, answer = await stack.call(
        "/matrix/playbooks/record",
        {"query_text": "q", "answer_id": "a", "answer_corpus": "c", "score": 1, "playbook_corpus": "playbook_small"},
    )
    assert status == 400 and "3-d" in answer["error"]["message"]


async def test_playbook_corpus_dropped_between_records_is_recreated(stack):
    await stack.record(query_text="q1", answer_id="a", answer_corpus="c", score=1)
    await stack.vectors.drop("playbook_memory")
    await stack.record(query_text="q2", answer_id="a", answer_corpus="c", score=1)
    assert (await stack.vectors.info("playbook_memory"))["count"] == 1


async def test_relevance_and_downgrade_400s(stack):
    for body in [
        {"chunks": []},
        {"focus": {"path": "a"}, "chunks": [{"source": "x"}]},
        {"focus": {"path": "a"}, "chunks": [], "threshold": "high"},
        {"focus": {"path": "a", "symbols": []}, "chunks": []},
    ]:
        status, _ = await stack.call("/matrix/relevance", body)
        assert status == 400, body
    for body in [{"model": "x"}, {"mode": "", "model": "x"}, {"mode": "m", "model": "x", "weak_models": "x"}]:
        status, _ = await stack.call("/matrix/downgrade", body)
        assert status == 400, body


async def test_odd_but_valid_inputs_never_500(stack):
    q = np.zeros(DIM)
    q[0] = 1
    await stack.corpus("w", [("a", q, {"k": "v"}), ("b", -q, None)])
    status, answer = await stack.call("/matrix/search", {"query_vector": [0.0] * DIM, "corpora": ["w"]})
    assert status == 400 and "zero vector" in answer["error"]["message"]  # cosine needs a norm
    bodies = [
        {"query_text": "x" * 10000, "corpora": ["w"], "use_playbook": True},
        {"query_text": "\u00e9\u4e2d\U0001f600", "corpora": ["w"], "query_role": "\u00c9quipiers", "use_playbook": True},
        {"query_text": "x", "corpora": ["w"], "exclude_ids": ["a", "b"], "use_playbook": True},
        {"query_text": "x", "corpora": ["w"], "metadata_filter": {"k": ["v", 1, True, 2.5]}},
        {"query_text": "x", "corpora": ["w"], "k": 1000, "per_corpus_k": 1000},
        {"query_text": "x", "corpora": ["w"], "playbook_max_distance": 1e308, "use_playbook": True},
        {"query_text": "x", "corpora": ["w"], "judge_url": "http://127.0.0.1:1/api/chat", "judge_model": "m", "use_playbook": True},
    ]
    for body in bodies:
        status, answer = await stack.call("/matrix/search", body)
        assert status == 200, (body, answer)


# -- fuzz: no body produces a 500 -------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
_FIELDS = {
    "/matrix/search": ["query_text", "query_vector", "corpora", "k", "per_corpus_k", "model", "use_playbook",
                       "playbook_corpus", "playbook_top_k", "playbook_max_distance", "playbook_max_inject_distance",
                       "query_role", "metadata_filter", "exclude_ids", "judge_url", "judge_model", "judge_min_rating"],
    "/matrix/playbooks/record": ["query_text", "answer_id", "answer_corpus", "score", "tags", "role", "playbook_corpus", "model"],
    "/matrix/playbooks/bulk": ["entries", "playbook_corpus", "corpus"],
    "/matrix/relevance": ["focus", "chunks", "threshold"],
    "/matrix/downgrade": ["mode", "model", "forced_mode", "force_full_enrichment", "weak_models"],
    "/matrix/corpus/build": ["name", "sql", "id_column", "text_template", "text_columns", "metadata_columns", "batch_size"],
}
_GOOD_VALUES = {
    "corpora": st.just(["w"]) | st.lists(st.sampled_from(["w", "", "nope"]), max_size=3),
    "query_text": st.sampled_from(["forklift", "", " "]) | st.text(max_size=5),
    "query_vector": st.lists(st.floats(-2, 2), min_size=DIM, max_size=DIM) | st.lists(st.floats(allow_nan=False), max_size=3),
    "use_playbook": st.booleans(),
    "entries": st.lists(st.fixed_dictionaries({"query_text": st.text(max_size=4), "answer_id": st.text(max_size=3),
                                               "answer_corpus": st.sampled_from(["w", ""]), "score": st.floats(-1, 2)}), max_size=3),
}


@st.composite
def _requests(draw):
    path = draw(st.sampled_from(sorted(_FIELDS)))
    keys = draw(st.lists(st.sampled_from(_FIELDS[path]), max_size=6, unique=True))
    body = {k: draw(_GOOD_VALUES.get(k, _JSON)) for k in keys}
    if draw(st.booleans()):
        body = draw(_JSON) if draw(st.integers(0, 9)) == 0 else body
    return path, body


def test_no_request_body_produces_a_500(tmp_path):
    from hypothesis import given, settings

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cfg = load_config(env={}, data_dir=str(tmp_path / "data"))
    state: dict[str, Any] = {}

    async def setup():
        from aiohttp.test_utils import TestClient, TestServer

        c = cfg.replace("embedd", dimension=DIM).replace("vectord", save_min_interval=0.0)
        e = TestServer(embedd.create_app(c))
        v = TestServer(vectord.create_app(c))
        await e.start_server()
        await v.start_server()
        c = c.replace(
            "matrixd",
            embedd_url=str(e.make_url("")).rstrip("/"),
            vectord_url=str(v.make_url("")).rstrip("/"),
            queryd_url=f"http://127.0.0.1:{free_port()}",  # down: a build that gets that far is a 502
        )
        client = TestClient(TestServer(matrixd.create_app(c)))
        await client.start_server()
        state.update(e=e, v=v, client=client)
        q = [1.0] + [0.0] * (DIM - 1)
        await client.post("/matrix/playbooks/record", json={"query_text": "forklift", "answer_id": "a", "answer_corpus": "w", "score": 1})
        session = aiohttp.ClientSession()
        vc = VectordClient(session, c.matrixd.vectord_url)
        await vc.create("w", DIM)
        await vc.add("w", ["a", "b"], np.array([q, q[::-1]]), [{"x": 1}, None])
        await session.close()

    async def send(path, body):
        r = await state["client"].post(path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        return r.status, await r.text()

    async def teardown():
        await state["client"].close()
        await state["e"].close()
        await state["v"].close()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    run(setup())
    try:

        @settings(max_examples=150, deadline=None)
        @given(_requests())
        def check(request):
            path, body = request
            status, text = run(send(path, body))
            assert status < 500 or status == 502, (path, body, text)
            if status == 502:  # only the (absent) queryd may be a 502
                assert "queryd" in text and path == "/matrix/corpus/build", (path, body, text)

        check()
    finally:
        run(teardown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def test_client_record_bulk_corpora_search(stack):
    client = MatrixdClient(stack.session, str(stack.client.make_url("")).rstrip("/"))
    text = "client round trip"
    e = await stack.embed(text)
    await _workers(stack, e)
    rec = await client.record(text, "w-9", "workers", 1.0, role="Forklift Operator", tags=["t"], playbook_corpus="playbook_c")
    assert rec["playbook_corpus"] == "playbook_c" and len(rec["playbook_id"]) == 32
    bulk = await client.record_bulk(
        [{"query_text": "b", "answer_id": "w-1", "answer_corpus": "workers", "score": 0.5}, {"query_text": ""}],
        playbook_corpus="playbook_c",
    )
    assert (bulk["recorded"], bulk["failed"]) == (1, 1)
    assert set(await client.corpora()) == {"workers", "playbook_c"}
    answer = await client.search({"query_text": text, "corpora": ["workers"], "k": 2, "use_playbook": True,
                                  "playbook_corpus": "playbook_c", "query_role": "forklift operators"})
    assert answer["results"][0]["id"] == "w-9"
    with pytest.raises(UpstreamError) as info:
        await client.record("", "a", "c", 1.0)
    assert info.value.status == 400


@pytest.mark.parametrize("name", [" ", "x" * 100_000, ".hidden"])
async def test_bad_playbook_corpus_names_are_400_not_502(stack, name):
    entry = {"query_text": "x", "answer_id": "a", "answer_corpus": "c", "score": 1}
    status, answer = await stack.call("/matrix/playbooks/record", {**entry, "playbook_corpus": name})
    assert status == 400 and "playbook_corpus: invalid corpus name" in answer["error"]["message"]
    status, answer = await stack.call("/matrix/playbooks/record", {**entry, "answer_corpus": name})
    assert status == 400 and "answer_corpus: invalid corpus name" in answer["error"]["message"]
    status, answer = await stack.call("/matrix/playbooks/bulk", {"entries": [entry], "playbook_corpus": name})
    assert status == 400 and "playbook_corpus: invalid corpus name" in answer["error"]["message"]
    status, answer = await stack.call("/matrix/playbooks/bulk", {"entries": [{**entry, "playbook_corpus": name}, {**entry, "score": "high"}]})
    assert status == 200 and answer["failed"] == 2
    assert "playbook_corpus: invalid corpus name" in answer["results"][0]["error"]
    assert answer["results"][1]["error"] == "score: expected a number, got a string"
