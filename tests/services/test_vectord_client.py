"""VectordClient (used by matrixd) against a real vectord app."""

from __future__ import annotations

import numpy as np
import pytest

from lakehouse.clients.base import UpstreamError
from lakehouse.clients.vectord import VectordClient
from lakehouse.services.vectord import create_app


@pytest.fixture
async def vc(aiohttp_client, config):
    test_client = await aiohttp_client(create_app(config.replace("vectord", save_min_interval=0.0)))
    return VectordClient(test_client.session, str(test_client.make_url("")), add_chunk=7)


async def test_create_list_info_drop(vc):
    info = await vc.create("w", 4, distance="euclidean", m=8, ef_search=20, ef_construction=50)
    assert info == {"name": "w", "dimension": 4, "distance": "euclidean", "m": 8, "ef_search": 20, "ef_construction": 50, "count": 0}
    with pytest.raises(UpstreamError) as exc:
        await vc.create("w", 4)
    assert exc.value.status == 409
    again = await vc.create("w", 4, exist_ok=True)
    assert again["distance"] == "euclidean" and "stats" in again
    assert [i["name"] for i in await vc.list()] == ["w"]
    assert (await vc.info("w"))["count"] == 0
    assert await vc.drop("w") is True
    assert await vc.drop("w", missing_ok=True) is False
    with pytest.raises(UpstreamError) as exc:
        await vc.drop("w")
    assert exc.value.status == 404
    with pytest.raises(UpstreamError) as exc:
        await vc.create("bad name", 4)
    assert exc.value.status == 400 and "invalid index name" in exc.value.message


async def test_add_in_chunks_search_get_delete(vc):
    await vc.create("w", 3, distance="euclidean")
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    ids = [f"i{j}" for j in range(20)]
    meta = [{"j": j} if j % 2 else None for j in range(20)]
    assert await vc.add("w", ids, x, meta) == (20, 0)  # 3 chunks of at most 7
    assert await vc.add("w", ["i0"], x[:1], [{}]) == (0, 1)
    hits = await vc.search("w", x[4], k=3)
    assert [h["id"] for h in hits] == ["i4", "i3", "i5"]
    assert hits[0]["distance"] == 0.0 and "metadata" not in hits[0] and hits[1]["metadata"] == {"j": 3}
    rows = await vc.search_batch("w", x[[0, 19]], k=2, exclude_ids=["i18"])
    assert [[h["id"] for h in r] for r in rows] == [["i0", "i1"], ["i19", "i17"]]
    assert [h["id"] for h in await vc.search("w", x[0], k=2, ef=5)] == ["i0", "i1"]
    item = await vc.get_item("w", "i5")
    assert item == {"id": "i5", "vector": [15.0, 16.0, 17.0], "metadata": {"j": 5}}
    assert await vc.delete_items("w", ["i5", "nope"]) == 1
    with pytest.raises(UpstreamError) as exc:
        await vc.get_item("w", "i5")
    assert exc.value.status == 404
    with pytest.raises(UpstreamError) as exc:
        await vc.search("w", [1.0, 2.0])
    assert exc.value.status == 400 and "dimensions" in exc.value.message


async def test_ids_with_slashes_and_unicode_round_trip(vc):
    await vc.create("w", 2)
    ids = ["a/b", "100%", "é ✓", "x?y#z"]
    await vc.add("w", ids, np.ones((4, 2), np.float32) + np.eye(4, 2, dtype=np.float32))
    for i in ids:
        assert (await vc.get_item("w", i))["id"] == i


async def test_merge_and_save(vc):
    await vc.create("a", 2)
    await vc.create("b", 2)
    await vc.add("a", ["x", "y"], np.eye(2, dtype=np.float32))
    result = await vc.merge("a", "b", clear_source=True)
    assert (result["merged"], result["cleared"]) == (2, 2)
    saved = await vc.save("b")
    assert saved["saved"] is True and saved["count"] == 2
    with pytest.raises(UpstreamError) as exc:
        await vc.merge("a", "a")
    assert exc.value.status == 400


async def test_client_side_argument_checks(vc):
    with pytest.raises(ValueError, match="shape"):
        await vc.add("w", ["a", "b"], np.ones((3, 2)))
    with pytest.raises(ValueError, match="metadata"):
        await vc.add("w", ["a"], np.ones((1, 2)), [None, None])
    with pytest.raises(ValueError, match="single string"):
        await vc.delete_items("w", "abc")
    with pytest.raises(ValueError):
        VectordClient(None, "http://x", add_chunk=0)  # type: ignore[arg-type]


async def test_unreachable_vectord_is_status_none():
    import aiohttp

    async with aiohttp.ClientSession() as session:
        vc = VectordClient(session, "http://127.0.0.1:9", timeout=2)
        with pytest.raises(UpstreamError) as exc:
            await vc.list()
        assert exc.value.status is None
