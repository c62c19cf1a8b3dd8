"""vectord over HTTP: every route and error path of contract section 7 and SPEC section 4."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse import VectorIndex
from lakehouse.data.storage import open_store
from lakehouse.services.vectord import VECTORD, create_app
from lakehouse.vectors.registry import MAX_K, object_key


@pytest.fixture
def vconfig(config):
    # Saves right away: tests look at the saved objects.
    return config.replace("vectord", save_min_interval=0.0)


@pytest.fixture
async def client(aiohttp_client, vconfig):
    return await aiohttp_client(create_app(vconfig))


async def call(client, method: str, path: str, body=None) -> tuple[int, dict]:
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    r = await client.request(method, path, data=data, headers={"Content-Type": "application/json"})
    raw = await r.read()
    assert r.status != 500, raw
    return r.status, orjson.loads(raw) if raw else None


async def create(client, name="w", dimension=3, **kw) -> dict:
    status, body = await call(client, "POST", "/vectors/index", {"name": name, "dimension": dimension, **kw})
    assert status == 201, body
    return body


async def add(client, name, items) -> dict:
    status, body = await call(client, "POST", f"/vectors/index/{name}/add", {"items": items})
    assert status == 200, body
    return body


async def search(client, name, **body):
    status, answer = await call(client, "POST", f"/vectors/index/{name}/search", body)
    assert status == 200, answer
    return answer["results"]


def assert_error(status: int, body: dict, expected: int, *words: str) -> None:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    for w in words:
        assert w in body["error"]["message"], body


# -- health, create, list, info ------------------------------------------------------------


async def test_health(client):
    assert await call(client, "GET", "/health") == (200, {"status": "ok", "service": "vectord"})


async def test_create_answers_201_with_params_and_native_defaults(client):
    body = await create(client, "workers", 768)
    assert body == {
        "name": "workers",
        "dimension": 768,
        "distance": "cosine",
        "m": 16,
        "ef_search": 64,
        "ef_construction": 200,
        "count": 0,
    }


async def test_create_takes_every_param(client):
    body = await create(client, "e", 8, distance="euclidean", m=8, ef_search=20, ef_construction=40)
    assert body["distance"] == "euclidean" and body["m"] == 8
    assert body["ef_search"] == 20 and body["ef_construction"] == 40
    assert (await create(client, "d", 8, distance="dot"))["distance"] == "dot"
    assert (await create(client, "r", 8, rotate=False))["rotate"] is False  # shown only when false
    assert "rotate" not in await create(client, "t", 8, rotate=True)


async def test_duplicate_create_is_409_and_changes_nothing(client):
    await create(client, "w", 3)
    await add(client, "w", [{"id": "a", "vector": [1, 0, 0]}])
    status, body = await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 5})
    assert_error(status, body, 409, "already exists")
    _, info = await call(client, "GET", "/vectors/index/w")
    assert info["dimension"] == 3 and info["count"] == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "", "dimension": 3}, ["invalid index name"]),
        ({"name": "a/b", "dimension": 3}, ["invalid index name"]),
        ({"name": ".hidden", "dimension": 3}, ["invalid index name"]),
        ({"name": "-x", "dimension": 3}, ["invalid index name"]),
        ({"name": "a b", "dimension": 3}, ["invalid index name"]),
        ({"name": "x" * 129, "dimension": 3}, ["invalid index name"]),
        ({"name": "ok", "dimension": 0}, ["dimension"]),
        ({"name": "ok", "dimension": -4}, ["dimension"]),
        ({"name": "ok", "dimension": 70000}, ["dimension"]),
        ({"name": "ok", "dimension": 3.5}, ["dimension"]),
        ({"name": "ok", "dimension": "3"}, ["dimension"]),
        ({"name": "ok", "dimension": True}, ["dimension"]),
        ({"name": "ok", "dimension": 3, "distance": "manhattan"}, ["distance"]),
        ({"name": "ok", "dimension": 3, "m": 1}, ["m must be"]),
        ({"name": "ok", "dimension": 3, "m": 1000}, ["m must be"]),
        ({"name": "ok", "dimension": 3, "ef_search": 0}, ["ef_search"]),
        ({"name": "ok", "dimension": 3, "ef_construction": 10**6}, ["ef_construction"]),
        ({"name": "ok", "dimension": 3, "rotate": "no"}, ["rotate"]),
        ({"name": "ok", "dimension": 3, "rotate": 0}, ["rotate"]),
        ({"name": "ok"}, ["dimension"]),
        ({"dimension": 3}, ["name"]),
        ({"name": "ok", "dimension": 3, "dims": 3}, ["dims"]),  # unknown field
        ({"name": "ok", "dimension": 3, "efSearch": 3}, ["efSearch"]),
    ],
)
async def test_create_rejects_bad_params_with_400(client, body, words):
    status, answer = await call(client, "POST", "/vectors/index", body)
    assert_error(status, answer, 400, *words)
    assert (await call(client, "GET", "/vectors/index"))[1] == {"indexes": []}


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'{"name": "x", "dimension": 3,}', b"\xff\xfe"])
async def test_create_rejects_malformed_bodies(client, raw):
    status, body = await call(client, "POST", "/vectors/index", raw)
    assert_error(status, body, 400)


async def test_name_rule_accepts_the_documented_alphabet(client):
    for name in ["a", "A9", "_x", "playbook_memory", "fresh-workers.v2", "x" * 128]:
        await create(client, name, 2)
    status, body = await call(client, "GET", "/vectors/index")
    assert len(body["indexes"]) == 6


async def test_list_is_sorted_with_counts(client):
    await create(client, "b", 2)
    await create(client, "a", 3, distance="euclidean")
    await add(client, "b", [{"id": "x", "vector": [1, 2]}, {"id": "y", "vector": [2, 1]}])
    status, body = await call(client, "GET", "/vectors/index")
    assert status == 200
    assert [i["name"] for i in body["indexes"]] == ["a", "b"]
    assert [i["count"] for i in body["indexes"]] == [0, 2]
    assert body["indexes"][0]["distance"] == "euclidean"


async def test_info_has_params_stats_and_persistence(client):
    await create(client, "w", 4)
    await add(client, "w", [{"id": "a", "vector": [1, 2, 3, 4]}])
    status, info = await call(client, "GET", "/vectors/index/w")
    assert status == 200
    assert info["name"] == "w" and info["dimension"] == 4 and info["count"] == 1
    assert info["stats"]["count"] == 1 and info["stats"]["graph_built"] is False
    assert info["persistence"]["key"] == "_vectors/w.lhv"
    assert {"saves", "failures", "pending", "running", "dirty", "last_save"} <= set(info["persistence"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/vectors/index/nope", None),
        ("DELETE", "/vectors/index/nope", None),
        ("POST", "/vectors/index/nope/add", {"items": [{"id": "a", "vector": [1]}]}),
        ("POST", "/vectors/index/nope/search", {"vector": [1]}),
        ("POST", "/vectors/index/nope/delete", {"ids": ["a"]}),
        ("GET", "/vectors/index/nope/items/a", None),
        ("POST", "/vectors/index/nope/merge", {"dest": "other"}),
        ("POST", "/vectors/index/nope/save", None),
    ],
)
async def test_missing_index_is_404_on_every_route(client, method, path, body):
    await create(client, "other", 1)
    status, answer = await call(client, method, path, body)
    assert_error(status, answer, 404, "nope")


# -- delete an index ----------------------------------------------------------------------


async def test_delete_index_removes_it_and_its_saved_object(client, vconfig):
    await create(client, "w", 3)
    await add(client, "w", [{"id": "a", "vector": [1, 0, 0]}])
    assert (await call(client, "POST", "/vectors/index/w/save"))[0] == 200
    store = open_store(vconfig)
    assert store.head(object_key("w")) is not None
    status, body = await call(client, "DELETE", "/vectors/index/w")
    assert (status, body) == (200, {"name": "w", "deleted": True})
    assert store.head(object_key("w")) is None
    assert (await call(client, "GET", "/vectors/index/w"))[0] == 404
    # The name is free again, and the new index starts empty.
    await create(client, "w", 5)
    _, info = await call(client, "GET", "/vectors/index/w")
    assert info["count"] == 0 and info["dimension"] == 5


# -- add --------------------------------------------------------------------------------------


async def test_add_counts_added_and_updated(client):
    await create(client, "w", 3)
    body = await add(client, "w", [{"id": "a", "vector": [1, 0, 0]}, {"id": "b", "vector": [0, 1, 0]}])
    assert body == {"added": 2, "updated": 0}
    body = await add(client, "w", [{"id": "b", "vector": [0, 0, 1]}, {"id": "c", "vector": [1, 1, 0]}])
    assert body == {"added": 1, "updated": 1}
    _, item = await call(client, "GET", "/vectors/index/w/items/b")
    assert item["vector"] == [0.0, 0.0, 1.0]  # the upsert replaced the vector


async def test_add_duplicate_ids_in_one_batch_last_wins(client):
    await create(client, "w", 2, distance="euclidean")
    body = await add(
        client,
        "w",
        [
            {"id": "a", "vector": [1, 1], "metadata": {"n": 1}},
            {"id": "a", "vector": [2, 2], "metadata": {"n": 2}},
            {"id": "a", "vector": [3, 3], "metadata": {"n": 3}},
        ],
    )
    assert body["added"] == 1
    _, item = await call(client, "GET", "/vectors/index/w/items/a")
    assert item == {"id": "a", "vector": [3.0, 3.0], "metadata": {"n": 3}}


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "bad", "vector": [1, 0]}], ["item 1", "2 dimensions", "expected 3"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "z", "vector": [0, 0, 0]}], ["item 1", "zero vector"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "big", "vector": [1e39, 0, 0]}], ["item 1", "NaN or inf"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "", "vector": [1, 0, 0]}], ["item 1", "empty id"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "s", "vector": ["1", 0, 0]}], ["item 1"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "s", "vector": None}], ["item 1"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "s", "vector": {"x": 1}}], ["item 1"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "s", "vector": [[1, 0, 0]]}], ["item 1"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "s", "vector": [True, 0, 0]}], ["item 1"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": 7, "vector": [1, 0, 0]}], ["items[1]"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"vector": [1, 0, 0]}], ["items[1]"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "x"}], ["items[1]"]),
        ([{"id": "ok", "vector": [1, 0, 0]}, {"id": "x", "vector": [1, 0, 0], "meta": {}}], ["meta"]),
    ],
)
async def test_add_is_all_or_nothing_and_names_the_failing_item(client, items, words):
    await create(client, "w", 3)
    await add(client, "w", [{"id": "keep", "vector": [0, 1, 0], "metadata": {"v": 1}}])
    status, body = await call(client, "POST", "/vectors/index/w/add", {"items": items})
    assert_error(status, body, 400, *words)
    _, info = await call(client, "GET", "/vectors/index/w")
    assert info["count"] == 1  # "ok" (item 0) was not added either
    assert (await call(client, "GET", "/vectors/index/w/items/ok"))[0] == 404


@pytest.mark.parametrize(
    "raw",
    [
        b'{"items": [{"id": "a", "vector": [NaN, 0, 0]}]}',
        b'{"items": [{"id": "a", "vector": [Infinity, 0, 0]}]}',
        b'{"items": [{"id": "a", "vector": [1e400, 0, 0]}]}',
        b'{"items": {"id": "a"}}',
        b'{"items": [{"id": "a", "vector": [1, 0, 0]}], "extra": 1}',
        b'{"item": []}',
        b"not json",
    ],
)
async def test_add_rejects_nan_inf_and_malformed_json(client, raw):
    await create(client, "w", 3)
    status, body = await call(client, "POST", "/vectors/index/w/add", raw)
    assert_error(status, body, 400)
    assert (await call(client, "GET", "/vectors/index/w"))[1]["count"] == 0


async def test_zero_vectors_are_fine_under_euclidean_and_dot(client):
    for distance in ("euclidean", "dot"):
        await create(client, distance, 3, distance=distance)
        assert (await add(client, distance, [{"id": "z", "vector": [0, 0, 0]}]))["added"] == 1


async def test_add_with_no_items_is_a_no_op(client):
    await create(client, "w", 3)
    assert await add(client, "w", []) == {"added": 0, "updated": 0}


async def test_metadata_nil_keeps_and_empty_object_clears(client):
    await create(client, "w", 2)
    await add(client, "w", [{"id": "a", "vector": [1, 0], "metadata": {"role": "picker"}}])

    async def meta():
        _, item = await call(client, "GET", "/vectors/index/w/items/a")
        return item.get("metadata", "<absent>")

    await add(client, "w", [{"id": "a", "vector": [1, 1]}])  # omitted: kept
    assert await meta() == {"role": "picker"}
    await add(client, "w", [{"id": "a", "vector": [1, 1], "metadata": None}])  # null: kept
    assert await meta() == {"role": "picker"}
    await add(client, "w", [{"id": "a", "vector": [0, 1], "metadata": {"role": "loader"}}])
    assert await meta() == {"role": "loader"}
    await call(client, "POST", "/vectors/index/w/add", b'{"items": [{"id": "a", "vector": [0, 1], "metadata": { }}]}')
    assert await meta() == "<absent>"  # {} cleared it; absent metadata is omitted
    hits = await search(client, "w", vector=[0, 1])
    assert hits == [{"id": "a", "distance": 0.0}]


async def test_metadata_is_any_json_and_comes_back_byte_for_byte(client):
    await create(client, "w", 2)
    raw = (
        b'{"items": [{"id": "a", "vector": [1, 0], "metadata": {"nested": {"list": [1, 2.5, null, "\\u00e9"]},'
        b' "big": 12345678901234567890123, "s": "x\\ny"}},'
        b' {"id": "b", "vector": [0, 1], "metadata": "just a string"},'
        b' {"id": "c", "vector": [1, 1], "metadata": [1, 2, 3]}]}'
    )
    assert (await call(client, "POST", "/vectors/index/w/add", raw))[0] == 200
    r = await client.post("/vectors/index/w/search", data=b'{"vector": [1, 0], "k": 3}')
    text = await r.read()
    # Emitted unparsed: the 23-digit integer and the escapes survive exactly.
    assert b'"metadata":{"nested": {"list": [1, 2.5, null, "\\u00e9"]}, "big": 12345678901234567890123, "s": "x\\ny"}' in text
    hits = json.loads(text)["results"]  # the stdlib: orjson refuses a 23-digit integer
    by_id = {h["id"]: h for h in hits}
    assert by_id["b"]["metadata"] == "just a string"
    assert by_id["c"]["metadata"] == [1, 2, 3]
    assert by_id["a"]["metadata"]["big"] == 12345678901234567890123


# -- search --------------------------------------------------------------------------------


def _numpy_distances(x: np.ndarray, q: np.ndarray, distance: str) -> np.ndarray:
    if distance == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1 - xn @ (q / np.linalg.norm(q))
    if distance == "euclidean":
        return np.linalg.norm(x - q, axis=1)
    return 1 - x @ q


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "dot"])
async def test_search_matches_a_brute_force_scan(client, distance):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    await create(client, "w", 8, distance=distance)
    await add(client, "w", [{"id": f"i{j}", "vector": x[j], "metadata": {"j": j}} for j in range(60)])
    q = rng.standard_normal(8).astype(np.float32)
    hits = await search(client, "w", vector=q, k=5)
    want = _numpy_distances(x.astype(np.float64), q.astype(np.float64), distance)
    order = np.argsort(want)[:5]
    assert [h["id"] for h in hits] == [f"i{j}" for j in order]
    for h, j in zip(hits, order, strict=True):
        assert math.isclose(h["distance"], want[j], abs_tol=1e-5)
        assert h["metadata"] == {"j": int(j)}
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)


async def test_search_default_k_is_10_and_k_beyond_count_returns_all(client):
    await create(client, "w", 2, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, 0]} for j in range(15)])
    assert len(await search(client, "w", vector=[0, 0])) == 10
    assert len(await search(client, "w", vector=[0, 0], k=100)) == 15
    assert len(await search(client, "w", vector=[0, 0], k=MAX_K)) == 15


async def test_search_on_an_empty_index_is_empty(client):
    await create(client, "w", 2)
    assert await search(client, "w", vector=[1, 0]) == []
    assert await search(client, "w", vectors=[[1, 0], [0, 1]]) == [[], []]


async def test_search_batch_answers_a_list_per_query(client):
    await create(client, "w", 2, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, 0], "metadata": {"j": j}} for j in range(20)])
    rows = await search(client, "w", vectors=[[0, 0], [19, 0], [7.2, 0]], k=3)
    assert [[h["id"] for h in r] for r in rows] == [["i0", "i1", "i2"], ["i19", "i18", "i17"], ["i7", "i8", "i6"]]
    assert rows[2][0]["metadata"] == {"j": 7}
    assert math.isclose(rows[2][0]["distance"], 0.2, abs_tol=1e-5)
    # The batch answers exactly what single searches answer.
    for q, row in zip([[0, 0], [19, 0], [7.2, 0]], rows, strict=True):
        assert await search(client, "w", vector=q, k=3) == row
    assert await search(client, "w", vectors=[], k=3) == []


async def test_batch_search_results_are_bounded(client, monkeypatch):
    import lakehouse.vectors.registry

    monkeypatch.setattr(lakehouse.vectors.registry, "MAX_BATCH_RESULTS", 20)
    await create(client, "w", 2, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, 0]} for j in range(10)])
    assert len(await search(client, "w", vectors=[[0, 0]] * 4, k=5)) == 4  # 20 results: fine
    status, body = await call(client, "POST", "/vectors/index/w/search", {"vectors": [[0, 0]] * 3, "k": 8})
    assert_error(status, body, 400, "batch too large")
    # k beyond the live count is clamped first: 2 queries x 10 live items = 20, fine
    status, body = await call(client, "POST", "/vectors/index/w/search", {"vectors": [[0, 0]] * 2, "k": 1000})
    assert status == 200 and [len(r) for r in body["results"]] == [10, 10]


async def test_exclude_ids_still_returns_k(client):
    await create(client, "w", 2, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, 0]} for j in range(10)])
    hits = await search(client, "w", vector=[0, 0], k=3, exclude_ids=["i0", "i2", "nope"])
    assert [h["id"] for h in hits] == ["i1", "i3", "i4"]
    rows = await search(client, "w", vectors=[[0, 0]], k=3, exclude_ids=["i1"])
    assert [h["id"] for h in rows[0]] == ["i0", "i2", "i3"]


async def test_ef_is_accepted_per_request(client):
    await create(client, "w", 2, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, 0]} for j in range(10)])
    assert [h["id"] for h in await search(client, "w", vector=[0, 0], k=2, ef=1)] == ["i0", "i1"]
    assert len(await search(client, "w", vector=[0, 0], k=2, ef=500)) == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"vector": [1, 0, 0]}, ["3 dimensions", "has 2"]),
        ({"vector": []}, ["dimensions"]),
        ({"vectors": [[1, 0], [1, 0, 0]]}, ["vectors[1]", "3 dimensions"]),
        ({"vector": [1, 0], "vectors": [[1, 0]]}, ["exactly one"]),
        ({}, ["exactly one"]),
        ({"k": 3}, ["exactly one"]),
        ({"vector": [1, 0], "k": 0}, ["k must be"]),
        ({"vector": [1, 0], "k": -1}, ["k must be"]),
        ({"vector": [1, 0], "k": MAX_K + 1}, ["k must be"]),
        ({"vector": [1, 0], "k": 2.5}, ["k"]),
        ({"vector": [1, 0], "ef": 0}, ["ef must be"]),
        ({"vector": [1, 0], "ef": 10**7}, ["ef must be"]),
        ({"vector": [1, 0], "exclude_ids": "a"}, ["exclude_ids"]),
        ({"vector": [1, 0], "exclude_ids": [1]}, ["exclude_ids"]),
        ({"vector": ["a", 0]}, ["vector"]),
        ({"vector": [1, 0], "query": "x"}, ["query"]),
        ({"vector": [0, 0]}, ["zero"]),
        ({"vector": [1e39, 0]}, ["NaN or inf"]),
    ],
)
async def test_search_rejects_bad_requests_with_400(client, body, words):
    await create(client, "w", 2)
    await add(client, "w", [{"id": "a", "vector": [1, 0]}])
    status, answer = await call(client, "POST", "/vectors/index/w/search", body)
    assert_error(status, answer, 400, *words)


async def test_every_spelling_of_a_vector_searches_alike(client):
    # A plain array of numbers is read natively (json_floats.h); any other body takes the
    # general decoder. Both must give the same query, and the same errors as before.
    await create(client, "w", 3, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, -j / 3, 0.5]} for j in range(20)])
    want = await search(client, "w", vector=[2.5, -0.8, 0.5], k=4)
    for raw in [
        b'{"vector": [2.5, -0.8, 0.5], "k": 4}',
        b'{"k": 4, "vector":\n [ 2.5 ,\t-8e-1, 5E-1 ] }',
        b'{"vector": [25e-1, -0.80000000000000004, 0.5000], "k": 4, "ef": 50, "exclude_ids": []}',
    ]:
        status, body = await call(client, "POST", "/vectors/index/w/search", raw)
        assert status == 200 and body["results"] == want, raw
    for raw, words in [
        (b'{"vector": [2.5, "a", 0.5]}', ["vector"]),
        (b'{"vector": [[2.5], 0, 0]}', ["vector"]),
        (b'{"vector": [2.5, 0, 0], "k": "4"}', ["k"]),
        (b'{"vector": null}', ["exactly one"]),
        (b'{"vector": [2.5, 0, 0,]}', ["malformed"]),
        (b'{"vector": [1e400, 0, 0]}', []),
        (b'{"vector": [2.5, 0, 0], "vector2": 1}', ["vector2"]),
    ]:
        status, body = await call(client, "POST", "/vectors/index/w/search", raw)
        assert_error(status, body, 400, *words)


async def test_concurrent_searches_share_trips_and_keep_their_own_answers(client):
    # 300 x 256 floats: above the inline threshold, so single searches go through the batcher.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((300, 256)).astype(np.float32)
    await create(client, "w", 256, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": x[j], "metadata": {"j": j}} for j in range(300)])
    bodies = [{"vector": x[j], "k": 3} for j in range(30)]
    bodies += [{"vector": x[0], "k": 0}, {"vector": x[0][:10]}, {"vector": x[1], "k": 2, "exclude_ids": ["i1"]}]
    bodies += [{"vector": np.full(256, 1e39), "k": 3}]  # alike the first 30: in their batch call
    bodies += [{"vector": [1.0], "k": 3}]  # alike too: must fail, not be broadcast to 256 values
    answers = await asyncio.gather(*(call(client, "POST", "/vectors/index/w/search", b) for b in bodies))
    for j in range(30):
        status, body = answers[j]
        assert status == 200 and body["results"][0] == {"id": f"i{j}", "distance": 0.0, "metadata": {"j": j}}
    assert_error(*answers[30], 400, "k must be")
    assert_error(*answers[31], 400, "10 dimensions")
    assert answers[32][0] == 200 and answers[32][1]["results"][0]["id"] != "i1"
    assert_error(*answers[33], 400, "NaN or inf")  # and only it failed
    assert_error(*answers[34], 400, "1 dimensions")
    batcher = client.server.app[VECTORD].searches
    assert batcher.jobs == 35 and batcher.trips < 35  # trips were shared
    assert batcher.grouped > 0  # and alike searches shared a native batch call


# -- delete items, get item ----------------------------------------------------------------


async def test_delete_items_counts_and_ignores_unknown_ids(client):
    await create(client, "w", 2, distance="euclidean")
    await add(client, "w", [{"id": f"i{j}", "vector": [j, 0]} for j in range(5)])
    status, body = await call(client, "POST", "/vectors/index/w/delete", {"ids": ["i0", "i3", "zz", "i0"]})
    assert (status, body) == (200, {"deleted": 2})
    assert [h["id"] for h in await search(client, "w", vector=[0, 0])] == ["i1", "i2", "i4"]
    assert (await call(client, "GET", "/vectors/index/w/items/i0"))[0] == 404
    assert (await call(client, "POST", "/vectors/index/w/delete", {"ids": []}))[1] == {"deleted": 0}
    for bad in ({"ids": "i1"}, {"ids": [1]}, {}, {"id": ["i1"]}):
        status, answer = await call(client, "POST", "/vectors/index/w/delete", bad)
        assert_error(status, answer, 400)


async def test_get_item_returns_the_stored_vector_and_metadata(client):
    await create(client, "c", 2)
    await create(client, "e", 2, distance="euclidean")
    await add(client, "c", [{"id": "a", "vector": [3, 4], "metadata": {"x": 1}}])
    await add(client, "e", [{"id": "a", "vector": [3, 4]}])
    status, item = await call(client, "GET", "/vectors/index/c/items/a")
    assert status == 200 and item["id"] == "a" and item["metadata"] == {"x": 1}
    assert np.allclose(item["vector"], [0.6, 0.8])  # cosine vectors are stored normalised
    _, item = await call(client, "GET", "/vectors/index/e/items/a")
    assert item == {"id": "a", "vector": [3.0, 4.0]}
    status, body = await call(client, "GET", "/vectors/index/e/items/b")
    assert_error(status, body, 404, "'b'", "'e'")


# Not "." or "..": URL normalisation removes such path segments before any server sees them
# (docs/vectord.md); they remain valid ids for add, search and delete.
@pytest.mark.parametrize("item_id", ["a/b/c", "50%", "w 1", "é✓", "?x=1", "#frag", "a/..", "...", "a%2Fb"])
async def test_item_ids_with_url_special_characters(client, item_id):
    from urllib.parse import quote

    await create(client, "w", 2)
    await add(client, "w", [{"id": item_id, "vector": [1, 0]}])
    status, item = await call(client, "GET", f"/vectors/index/w/items/{quote(item_id, safe='')}")
    assert status == 200 and item["id"] == item_id


# -- merge -----------------------------------------------------------------------------------


async def _merge(client, src, dest, clear=None):
    body = {"dest": dest}
    if clear is not None:
        body["clear_source"] = clear
    return await call(client, "POST", f"/vectors/index/{src}/merge", body)


async def test_merge_copies_and_is_idempotent(client):
    await create(client, "fresh", 2, distance="euclidean")
    await create(client, "main", 2, distance="euclidean")
    await add(client, "fresh", [{"id": f"f{j}", "vector": [j, 1], "metadata": {"j": j}} for j in range(5)] + [{"id": "nometa", "vector": [9, 9]}])
    await add(client, "main", [{"id": "m0", "vector": [0, 0]}])
    status, body = await _merge(client, "fresh", "main")
    assert status == 200
    assert body == {"source": "fresh", "dest": "main", "merged": 6, "skipped": 0, "failed": 0, "cleared": 0, "errors": []}
    assert (await call(client, "GET", "/vectors/index/main"))[1]["count"] == 7
    assert (await call(client, "GET", "/vectors/index/fresh"))[1]["count"] == 6
    _, item = await call(client, "GET", "/vectors/index/main/items/f3")
    assert item == {"id": "f3", "vector": [3.0, 1.0], "metadata": {"j": 3}}
    _, item = await call(client, "GET", "/vectors/index/main/items/nometa")
    assert "metadata" not in item
    # Again: everything is already there.
    status, body = await _merge(client, "fresh", "main")
    assert (body["merged"], body["skipped"]) == (0, 6)
    assert (await call(client, "GET", "/vectors/index/main"))[1]["count"] == 7


async def test_merge_clear_source_removes_only_what_reached_dest(client):
    await create(client, "src", 2, distance="euclidean")
    await create(client, "dst", 2, distance="cosine")
    await add(client, "src", [{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [0, 1]}, {"id": "zero", "vector": [0, 0]}, {"id": "dup", "vector": [5, 5]}])
    await add(client, "dst", [{"id": "dup", "vector": [1, 2], "metadata": {"mine": True}}])
    status, body = await _merge(client, "src", "dst", clear=True)
    assert status == 200
    assert (body["merged"], body["skipped"], body["failed"], body["cleared"]) == (2, 1, 1, 2)
    assert "zero" in body["errors"][0] and "zero vector" in body["errors"][0]
    # "zero" was refused by the cosine dest and "dup" was already there: both stay in src.
    src_ids = {h["id"] for h in await search(client, "src", vector=[1, 1], k=10)}
    assert src_ids == {"zero", "dup"}
    _, dup = await call(client, "GET", "/vectors/index/dst/items/dup")
    assert dup["metadata"] == {"mine": True}  # dest's own item untouched
    assert (await call(client, "GET", "/vectors/index/dst"))[1]["count"] == 3


@pytest.mark.parametrize(
    ("setup", "src", "body", "status", "words"),
    [
        ([("a", 2)], "a", {"dest": "a"}, 400, ["itself"]),
        ([("a", 2)], "a", {"dest": "missing"}, 404, ["missing"]),
        ([("a", 2)], "missing", {"dest": "a"}, 404, ["missing"]),
        ([("a", 2), ("b", 3)], "a", {"dest": "b"}, 400, ["dimension mismatch"]),
        ([("a", 2), ("b", 2)], "a", {}, 400, ["dest"]),
        ([("a", 2), ("b", 2)], "a", {"dest": "b", "clear_source": "yes"}, 400, ["clear_source"]),
        ([("a", 2), ("b", 2)], "a", {"dest": "b", "clear": True}, 400, ["clear"]),
    ],
)
async def test_merge_errors(client, setup, src, body, status, words):
    for name, dims in setup:
        await create(client, name, dims)
        await add(client, name, [{"id": f"{name}1", "vector": [1] * dims}])
    got, answer = await call(client, "POST", f"/vectors/index/{src}/merge", body)
    assert_error(got, answer, status, *words)
    for name, _ in setup:
        assert (await call(client, "GET", f"/vectors/index/{name}"))[1]["count"] == 1


# -- save -------------------------------------------------------------------------------------


async def test_save_returns_once_durable(aiohttp_client, config):
    # A long interval: only the explicit save writes the latest state.
    cfg = config.replace("vectord", save_min_interval=60.0)
    client = await aiohttp_client(create_app(cfg))
    await create(client, "w", 2)
    await add(client, "w", [{"id": f"i{j}", "vector": [1, j]} for j in range(7)])
    status, body = await call(client, "POST", "/vectors/index/w/save")
    assert status == 200
    assert body["saved"] is True and body["count"] == 7 and body["dirty"] is False
    assert body["key"] == "_vectors/w.lhv" and body["failures"] == 0
    saved = VectorIndex.from_bytes(open_store(cfg).get_bytes("_vectors/w.lhv"))
    assert len(saved) == 7
    # Saving an unchanged index writes nothing new.
    saves = body["saves"]
    _, body = await call(client, "POST", "/vectors/index/w/save")
    assert body["saves"] == saves


async def test_mutations_are_saved_without_asking(client, vconfig):
    await create(client, "w", 2)
    await add(client, "w", [{"id": "a", "vector": [1, 0]}])
    state = client.server.app[VECTORD]
    state.registry.get("w").flush(10)  # waits for the save the add triggered
    saved = VectorIndex.from_bytes(open_store(vconfig).get_bytes("_vectors/w.lhv"))
    assert saved.ids() == ["a"]


# -- body limit and no-500 fuzzing ---------------------------------------------------------


async def test_body_limit_fits_a_10000_by_768_add(vconfig):
    # The largest form of such a body: every number with 17 significant digits.
    rng = np.random.default_rng(0)
    row = orjson.dumps(rng.standard_normal(768).tolist())
    per_item = len(row) + len(b'{"id":"w-000000","vector":,"metadata":{"role":"Forklift Operator","city":"Milwaukee"}},')
    assert 10_000 * per_item + 100 < vconfig.vectord.max_body_bytes


async def test_oversize_body_is_413(aiohttp_client, vconfig):
    client = await aiohttp_client(create_app(vconfig.replace("vectord", max_body_bytes=1000)))
    await create(client, "w", 2)
    items = [{"id": f"i{j}", "vector": [1, j]} for j in range(100)]
    status, body = await call(client, "POST", "/vectors/index/w/add", {"items": items})
    assert_error(status, body, 413)


async def test_large_add_is_decoded_off_the_event_loop(client):
    # Above the inline threshold the body goes through the write pool; same answer.
    await create(client, "w", 64, distance="euclidean")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1500, 64)).astype(np.float32)
    items = [{"id": f"i{j}", "vector": x[j].tolist(), "metadata": {"j": j}} for j in range(1500)]
    data = orjson.dumps({"items": items})
    assert len(data) > 256 << 10
    status, body = await call(client, "POST", "/vectors/index/w/add", data)
    assert (status, body) == (200, {"added": 1500, "updated": 0})
    _, item = await call(client, "GET", "/vectors/index/w/items/i77")
    assert np.allclose(item["vector"], x[77]) and item["metadata"] == {"j": 77}
    items[1234]["vector"] = items[1234]["vector"][:-1]
    status, body = await call(client, "POST", "/vectors/index/w/add", orjson.dumps({"items": items}))
    assert_error(status, body, 400, "item 1234", "63 dimensions")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
routes = st.sampled_from(
    [
        ("POST", "/vectors/index"),
        ("POST", "/vectors/index/w/add"),
        ("POST", "/vectors/index/w/search"),
        ("POST", "/vectors/index/w/delete"),
        ("POST", "/vectors/index/w/merge"),
        ("POST", "/vectors/index/w/save"),
        ("GET", "/vectors/index/w/items/a"),
    ]
)
fields = st.sampled_from(["name", "dimension", "distance", "m", "items", "id", "vector", "vectors", "metadata", "k", "ef", "exclude_ids", "ids", "dest", "clear_source"])


requests = st.tuples(
    routes,
    st.one_of(
        json_values,
        st.dictionaries(fields, json_values, max_size=5),
        st.fixed_dictionaries({"items": st.lists(st.dictionaries(fields, json_values, max_size=4), max_size=3)}),
    ),
)


@settings(max_examples=40)
@given(batch=st.lists(requests, min_size=1, max_size=8))
def test_no_request_body_produces_a_500(tmp_path_factory, batch):
    from aiohttp.test_utils import TestClient, TestServer

    from lakehouse.config import load_config

    cfg = load_config(env={}, data_dir=str(tmp_path_factory.mktemp("fuzz")))

    async def run() -> None:
        async with TestClient(TestServer(create_app(cfg))) as client:
            await create(client, "w", 2)
            await create(client, "v", 2)
            await add(client, "w", [{"id": "a", "vector": [1, 0], "metadata": {"x": 1}}])
            for (method, path), body in batch:
                r = await client.request(method, path, data=orjson.dumps(body))
                assert r.status < 500, (method, path, body, await r.text())

    asyncio.run(run())
