"""pathwayd over HTTP: contract section 10 (routes, trace shape, statuses, persistence)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.pathwayd import PathwaydClient
from lakehouse.services.pathwayd import create_app

TRACE_KEYS = {"uid", "content", "created_at_ns", "updated_at_ns", "retired", "replay_count"}


@pytest.fixture
async def pw(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def call(client, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    r = await client.request(method, path, data=data)
    return r.status, await r.json()


async def test_health_and_the_nine_routes(pw):
    assert (await call(pw, "GET", "/health")) == (200, {"status": "ok", "service": "pathwayd"})
    s, a = await call(pw, "POST", "/pathway/add", {"content": {"q": "forklift"}, "tags": ["fill"]})
    assert s == 200 and set(a) == TRACE_KEYS | {"tags"}
    assert a["content"] == {"q": "forklift"} and a["tags"] == ["fill"] and a["replay_count"] == 0
    assert a["created_at_ns"] == a["updated_at_ns"] and a["created_at_ns"] > 1_700_000_000 * 10**9
    assert len(a["uid"]) == 36  # a UUID

    s, k = await call(pw, "POST", "/pathway/add_idempotent", {"uid": "job-7", "content": [1]})
    assert s == 200 and k["uid"] == "job-7" and k["replay_count"] == 0 and "tags" not in k
    s, k = await call(pw, "POST", "/pathway/add_idempotent", {"uid": "job-7", "content": [2]})
    assert s == 200 and k["replay_count"] == 1 and k["content"] == [1]

    s, u = await call(pw, "POST", "/pathway/update", {"uid": a["uid"], "content": {"q": "welder"}})
    assert s == 200 and u["uid"] == a["uid"] and u["content"] == {"q": "welder"} and u["tags"] == ["fill"]

    s, b = await call(pw, "POST", "/pathway/revise", {"predecessor_uid": a["uid"], "content": "v2"})
    assert s == 200 and b["predecessor_uid"] == a["uid"] and b["uid"] != a["uid"]
    assert b["tags"] == ["fill"]  # the predecessor's tags, none given
    s, c = await call(pw, "POST", "/pathway/revise", {"predecessor_uid": b["uid"], "content": "v3", "tags": []})
    assert s == 200 and "tags" not in c  # [] clears them

    s, h = await call(pw, "GET", f"/pathway/history/{c['uid']}")
    assert s == 200 and [t["uid"] for t in h["traces"]] == [c["uid"], b["uid"], a["uid"]]
    assert h["truncated"] is False and h["uid"] == c["uid"]

    s, r = await call(pw, "POST", "/pathway/retire", {"uid": a["uid"]})
    assert s == 200 and r["retired"] is True
    s, g = await call(pw, "GET", f"/pathway/get/{a['uid']}")
    assert s == 200 and g["retired"] is True  # get includes retired traces

    s, found = await call(pw, "POST", "/pathway/search", {"query": "welder"})
    assert s == 200 and found == {"traces": [], "total": 0}  # retired: hidden from search
    s, found = await call(pw, "POST", "/pathway/search", {})
    assert s == 200 and found["total"] == 3
    assert {t["uid"] for t in found["traces"]} == {"job-7", b["uid"], c["uid"]}

    s, st_ = await call(pw, "GET", "/pathway/stats")
    assert s == 200 and (st_["total"], st_["active"], st_["retired"]) == (4, 3, 1)


async def test_search_request(pw):
    for i, (role, tags) in enumerate([("forklift operator", ["mke"]), ("Forklift lead", ["det"]),
                                      ("welder", ["mke"])]):
        await call(pw, "POST", "/pathway/add", {"content": {"role": role, "i": i}, "tags": tags})
    s, r = await call(pw, "POST", "/pathway/search", {"query": "FORKLIFT", "limit": 1})
    assert s == 200 and r["total"] == 2 and len(r["traces"]) == 1
    assert r["traces"][0]["content"]["role"] == "Forklift lead"  # newest first
    s, r = await call(pw, "POST", "/pathway/search", {"query": "forklift", "tags": ["mke"]})
    assert [t["content"]["i"] for t in r["traces"]] == [0]
    for bad in ({"limit": 0}, {"limit": 5000}, {"q": "x"}, {"tags": "mke"}, {"query": 3}):
        s, err = await call(pw, "POST", "/pathway/search", bad)
        assert s == 400 and set(err["error"]) == {"code", "message"}, bad


@pytest.mark.parametrize(
    "path, body",
    [
        ("/pathway/add", {}),  # content required
        ("/pathway/add", {"content": {"a": 1}, "extra": 1}),
        ("/pathway/add", {"content": 1, "tags": [""]}),
        ("/pathway/add", b'{"content": {"a": }'),
        ("/pathway/add", b""),
        ("/pathway/add_idempotent", {"content": 1}),
        ("/pathway/add_idempotent", {"uid": "", "content": 1}),
        ("/pathway/add_idempotent", {"uid": "a/b", "content": 1}),
        ("/pathway/update", {"uid": "x"}),
        ("/pathway/revise", {"content": 1}),
        ("/pathway/retire", {}),
        ("/pathway/retire", {"uid": 5}),
    ],
)
async def test_invalid_input_is_400(pw, path, body):
    s, err = await call(pw, "POST", path, body)
    assert s == 400, err
    assert (await call(pw, "GET", "/pathway/stats"))[1]["total"] == 0


async def test_unknown_uid_is_404_and_retired_update_409(pw):
    for method, path, body in [
        ("POST", "/pathway/update", {"uid": "ghost", "content": 1}),
        ("POST", "/pathway/revise", {"predecessor_uid": "ghost", "content": 1}),
        ("POST", "/pathway/retire", {"uid": "ghost"}),
        ("GET", "/pathway/get/ghost", None),
        ("GET", "/pathway/history/ghost", None),
    ]:
        s, err = await call(pw, method, path, body)
        assert s == 404 and err["error"]["code"] == "not_found" and "ghost" in err["error"]["message"]
    _, t = await call(pw, "POST", "/pathway/add", {"content": 1})
    await call(pw, "POST", "/pathway/retire", {"uid": t["uid"]})
    s, err = await call(pw, "POST", "/pathway/update", {"uid": t["uid"], "content": 2})
    assert s == 409 and "retired" in err["error"]["message"]


async def test_persistence_across_restarts(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    _, a = await call(client, "POST", "/pathway/add", {"content": {"v": 1}})
    _, b = await call(client, "POST", "/pathway/revise", {"predecessor_uid": a["uid"], "content": {"v": 2}})
    await call(client, "POST", "/pathway/retire", {"uid": a["uid"]})
    await client.close()
    log = config.path(config.pathwayd.persist_path)
    assert log.exists() and len(log.read_bytes().splitlines()) == 3
    with open(log, "ab") as fh:  # a crash mid-write leaves a torn line
        fh.write(b'{"op":"add","trace":{"uid":"tor')
    again = await aiohttp_client(create_app(config))
    s, h = await call(again, "GET", f"/pathway/history/{b['uid']}")
    assert s == 200 and [t["content"] for t in h["traces"]] == [{"v": 2}, {"v": 1}]
    assert h["traces"][1]["retired"] is True and h["traces"][1] == (await call(again, "GET", f"/pathway/get/{a['uid']}"))[1]
    st_ = (await call(again, "GET", "/pathway/stats"))[1]
    assert (st_["total"], st_["events_replayed"], st_["events_skipped"]) == (2, 3, 1)


async def test_in_memory_when_persist_path_is_empty(aiohttp_client, config, tmp_path):
    cfg = config.replace("pathwayd", persist_path="")
    client = await aiohttp_client(create_app(cfg))
    assert (await call(client, "POST", "/pathway/add", {"content": 1}))[0] == 200
    assert not (tmp_path / "data").exists()


async def test_hand_made_cycle_is_409(aiohttp_client, config):
    log = config.path(config.pathwayd.persist_path)
    log.parent.mkdir(parents=True)
    log.write_bytes(
        b'{"op":"add","trace":{"uid":"a","content":1,"predecessor_uid":"b","created_at_ns":1}}\n'
        b'{"op":"revise","trace":{"uid":"b","content":2,"predecessor_uid":"a","created_at_ns":2}}\n'
        b"this line is garbage\n"
    )
    client = await aiohttp_client(create_app(config))
    s, err = await call(client, "GET", "/pathway/history/a")
    assert s == 409 and "cycle" in err["error"]["message"]
    assert (await call(client, "GET", "/pathway/stats"))[1]["events_skipped"] == 1


async def test_client_round_trip(aiohttp_server, config):
    import aiohttp

    server = await aiohttp_server(create_app(config))
    async with aiohttp.ClientSession() as session:
        c = PathwaydClient(session, str(server.make_url("")))
        t = await c.add({"demand": "3 forklift operators"}, tags=["inbox"])
        t2 = await c.revise(t["uid"], {"demand": "4 forklift operators"})
        assert (await c.add_idempotent("x", 1))["replay_count"] == 0
        assert (await c.add_idempotent("x", 2))["replay_count"] == 1
        assert (await c.update("x", 3))["content"] == 3
        assert (await c.get_trace(t2["uid"]))["predecessor_uid"] == t["uid"]
        assert len((await c.history(t2["uid"]))["traces"]) == 2
        # the revision kept its predecessor's tag
        assert (await c.search("forklift", tags=["inbox"], limit=5))["total"] == 2
        assert (await c.retire(t["uid"]))["retired"]
        assert (await c.stats())["retired"] == 1
        with pytest.raises(UpstreamError) as exc:
            await c.get_trace("nope")
        assert exc.value.status == 404


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(
        ["uid", "content", "tags", "predecessor_uid", "query", "limit", "x"]) | st.text(max_size=4), kids, max_size=4),
    max_leaves=10,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["add", "add_idempotent", "update", "revise", "retire", "search"]),
       body=json_values)
async def test_no_body_gives_a_500(pw, path, body):
    r = await pw.post(f"/pathway/{path}", data=json.dumps(body))  # stdlib: any integer width
    assert r.status in (200, 400, 404, 409), await r.text()
