"""The binary vector transport between our daemons (lakehouse.transport): frames, negotiation,
and the clear 400s for a bad frame. The public JSON wire is covered by each daemon's tests."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lakehouse.clients.embedd import EmbeddClient
from lakehouse.clients.vectord import VectordClient
from lakehouse.services import embedd as embedd_service
from lakehouse.services import vectord as vectord_service
from lakehouse.transport import F32, FrameError, decode_frame, encode_frame

# -- the frame ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    arr=hnp.arrays(
        np.float32,
        st.one_of(st.tuples(st.integers(0, 9)), st.tuples(st.integers(0, 5), st.integers(0, 9))),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=32),
    ),
    k=st.integers(1, 100),
    exclude=st.lists(st.text(max_size=5), max_size=3),
)
def test_frame_round_trip(arr, k, exclude):
    header, back = decode_frame(encode_frame({"k": k, "exclude_ids": exclude}, arr))
    assert header == {"k": k, "exclude_ids": exclude}
    assert back.dtype == np.float32 and back.shape == arr.shape
    assert np.array_equal(back, arr)
    back[...] = 0  # the caller owns a writable copy


def test_frame_is_little_endian_float32():
    body = encode_frame({}, np.array([1.0, -2.5], dtype=">f4"))  # big-endian input converted
    (n,) = struct.unpack_from("<I", body)
    assert orjson.loads(body[4 : 4 + n]) == {"shape": [2]}
    assert body[4 + n :] == struct.pack("<2f", 1.0, -2.5)


def _frame(header: bytes, payload: bytes) -> bytes:
    return struct.pack("<I", len(header)) + header + payload


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "too short"),
        (b"\x01\x00", "too short"),
        (struct.pack("<I", 99) + b"{}", "does not fit"),
        (_frame(b"[1]", b""), "JSON object"),
        (_frame(b"{not json", b""), "not valid JSON"),
        (_frame(b"{}", b""), "shape"),
        (_frame(b'{"shape": [2, 3, 4]}', b""), "shape"),
        (_frame(b'{"shape": [-1]}', b""), "shape"),
        (_frame(b'{"shape": [2.0]}', b""), "shape"),
        (_frame(b'{"shape": [3]}', struct.pack("<2f", 1, 2)), "needs 12 bytes"),
        (_frame(b'{"shape": [1]}', struct.pack("<2f", 1, 2)), "needs 4 bytes"),
        (_frame(b'{"shape": [2]}', struct.pack("<2f", 1, float("nan"))), "finite"),
    ],
)
def test_bad_frames_say_why(body, needle):
    with pytest.raises(FrameError) as exc:
        decode_frame(body)
    assert needle in str(exc.value)


# -- vectord takes frames ------------------------------------------------------------------


@pytest.fixture
async def vectord(aiohttp_client, config):
    client = await aiohttp_client(vectord_service.create_app(config.replace("vectord", save_min_interval=0.0)))
    await client.post("/vectors/index", json={"name": "w", "dimension": 3, "distance": "euclidean"})
    items = [{"id": f"i{j}", "vector": [j, j, j], "metadata": {"j": j}} for j in range(10)]
    assert (await client.post("/vectors/index/w/add", json={"items": items})).status == 200
    return client


async def _search(client, body: bytes, content_type: str = F32):
    resp = await client.post("/vectors/index/w/search", data=body, headers={"Content-Type": content_type})
    return resp.status, await resp.json(), resp.headers


async def test_vectord_answers_a_frame_like_json(vectord):
    status, answer, headers = await _search(vectord, encode_frame({"k": 2, "exclude_ids": ["i4"]}, np.array([4, 4, 4])))
    assert status == 200 and [h["id"] for h in answer["results"]] == ["i3", "i5"]
    assert F32 in headers["Accept-Post"]
    s2, json_answer, h2 = await _search(vectord, orjson.dumps({"vector": [4, 4, 4], "k": 2, "exclude_ids": ["i4"]}), "application/json")
    assert s2 == 200 and json_answer == answer and F32 in h2["Accept-Post"]
    # a batch: shape [rows, dims]
    status, answer, _ = await _search(vectord, encode_frame({"k": 1}, np.array([[0, 0, 0], [9, 9, 9]])))
    assert status == 200 and [[h["id"] for h in r] for r in answer["results"]] == [["i0"], ["i9"]]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"garbage", "header length"),
        (_frame(b'{"shape": [3]}', struct.pack("<2f", 1, 2)), "needs 12 bytes"),
        (encode_frame({"k": 2}, np.array([1.0, 2.0])), "dimensions"),
        (encode_frame({"k": 2}, np.array([[1.0, 2.0]])), "dimensions"),
        (encode_frame({"k": 2, "vector": [1]}, np.array([1.0, 2.0, 3.0])), "header"),
        (encode_frame({"k": "ten"}, np.array([1.0, 2.0, 3.0])), "header"),
        (encode_frame({"k": 0}, np.array([1.0, 2.0, 3.0])), "k"),
    ],
)
async def test_vectord_bad_frame_is_a_clear_400(vectord, body, needle):
    status, answer, _ = await _search(vectord, body)
    assert status == 400 and answer["error"]["code"] == "bad_request"
    assert needle in answer["error"]["message"]


async def test_vectord_client_switches_to_frames_after_the_first_answer(vectord):
    sent: list[str] = []
    vc = VectordClient(vectord.session, str(vectord.make_url("")))
    orig = vc.exchange

    async def spy(method, path, data=None, *, headers=None, **kw):
        sent.append((headers or {}).get("Content-Type", ""))
        return await orig(method, path, data, headers=headers, **kw)

    vc.exchange = spy  # type: ignore[method-assign]
    first = await vc.search("w", [4, 4, 4], k=3)
    second = await vc.search("w", [4, 4, 4], k=3)
    assert first == second and [h["id"] for h in first][0] == "i4"
    assert sent == ["application/json", F32] and vc.binary is True


# -- negotiation with an upstream that has no frames ----------------------------------------


@pytest.fixture
async def json_only(aiohttp_server):
    """A vectord look-alike without frames: no Accept-Post; 415 for anything but JSON when
    ``strict`` is set (an upstream replaced under a running matrixd)."""
    state = {"strict": False, "types": []}

    async def search(request: web.Request) -> web.Response:
        state["types"].append(request.content_type)
        if request.content_type != "application/json":
            if state["strict"]:
                return web.json_response({"error": {"code": "unsupported_media_type", "message": "json only"}}, status=415)
            return web.json_response({"error": {"code": "bad_request", "message": "malformed JSON"}}, status=400)
        body = await request.json()
        return web.json_response({"results": [{"id": "x", "distance": float(sum(body["vector"]))}]})

    app = web.Application()
    app.router.add_post("/vectors/index/{name}/search", search)
    server = await aiohttp_server(app)
    return server, state


async def test_client_keeps_json_for_an_upstream_without_frames(json_only, aiohttp_client):
    server, state = json_only
    import aiohttp

    async with aiohttp.ClientSession() as session:
        vc = VectordClient(session, str(server.make_url("")))
        for _ in range(3):
            assert (await vc.search("w", [1, 2, 3]))[0]["distance"] == 6.0
        assert state["types"] == ["application/json"] * 3 and vc.binary is False


async def test_client_falls_back_to_json_on_415(json_only):
    server, state = json_only
    state["strict"] = True
    import aiohttp

    async with aiohttp.ClientSession() as session:
        vc = VectordClient(session, str(server.make_url("")))
        vc.binary = True  # as if the vectord it spoke to before had offered frames
        assert (await vc.search("w", [1, 2, 3]))[0]["distance"] == 6.0
        assert state["types"] == [F32, "application/json"] and vc.binary is False
        await vc.search("w", [1, 2, 3])
        assert state["types"][-1] == "application/json"


# -- embedd answers frames when asked ----------------------------------------------------------


@pytest.fixture
async def embedd(aiohttp_client, config):
    return await aiohttp_client(embedd_service.create_app(config))


async def test_embedd_answers_a_frame_when_asked(embedd):
    texts = ["forklift operator", "cnc machinist"]
    plain = await (await embedd.post("/embed", json={"texts": texts})).json()
    resp = await embedd.post("/embed", json={"texts": texts}, headers={"Accept": f"{F32}, application/json"})
    assert resp.status == 200 and resp.content_type == F32
    header, vectors = decode_frame(await resp.read())
    assert header == {"model": plain["model"], "dimension": plain["dimension"]}
    assert np.array_equal(vectors, np.asarray(plain["vectors"], dtype=np.float32))
    # errors stay JSON whatever was asked
    bad = await embedd.post("/embed", json={"texts": []}, headers={"Accept": F32})
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_request"


async def test_embedd_client_reads_frames_and_json(embedd, aiohttp_server):
    ec = EmbeddClient(embedd.session, str(embedd.make_url("")))
    model, dim, vectors = await ec.embed(["a", "b", "c"])
    assert vectors.shape == (3, dim) and vectors.dtype == np.float32

    async def json_embed(request: web.Request) -> web.Response:  # an embedd without frames
        n = len((await request.json())["texts"])
        return web.json_response({"model": "m", "dimension": 2, "vectors": [[1.0, 0.0]] * n})

    app = web.Application()
    app.router.add_post("/embed", json_embed)
    server = await aiohttp_server(app)
    import aiohttp

    async with aiohttp.ClientSession() as session:
        assert (await EmbeddClient(session, str(server.make_url(""))).embed(["x"]))[2].tolist() == [[1.0, 0.0]]
