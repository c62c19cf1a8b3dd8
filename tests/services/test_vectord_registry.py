"""The library behind vectord (lakehouse.vectors.registry): save spacing and coalescing, flush, drop
races, merge in chunks; and a model-based property test of add / delete over HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse import VectorIndex
from lakehouse.data.storage import LocalStore
from lakehouse.services.vectord import create_app
from lakehouse.vectors.registry import (
    IndexExists,
    IndexNotFound,
    IndexParams,
    VectorRegistry,
    decode_vectors,
    is_empty_object,
    object_key,
    validate_name,
)


class CountingStore(LocalStore):
    def __init__(self, root, delay: float = 0.0) -> None:
        super().__init__(root)
        self.delay = delay
        self.puts: list[float] = []

    def put_bytes(self, key, data, **kw):
        self.puts.append(time.monotonic())
        time.sleep(self.delay)
        return super().put_bytes(key, data, **kw)


def test_fifty_triggers_during_a_save_make_at_most_two_saves(tmp_path):
    store = CountingStore(tmp_path, delay=0.3)
    reg = VectorRegistry(store, save_min_interval=0.0)
    ix = reg.create(IndexParams("w", 2))  # the create's save starts now and takes 0.3 s
    deadline = time.monotonic() + 10
    while not store.puts and time.monotonic() < deadline:
        time.sleep(0.005)
    for i in range(50):  # all during that save
        ix.add([f"i{i}"], np.ones((1, 2), np.float32))
    ix.flush(10)
    assert len(store.puts) == 2
    assert len(VectorIndex.from_bytes(store.get_bytes(object_key("w")))) == 50
    reg.close()


def test_saves_are_spaced_by_the_minimum_interval(tmp_path):
    store = CountingStore(tmp_path)
    reg = VectorRegistry(store, save_min_interval=0.25)
    ix = reg.create(IndexParams("w", 2))
    stop = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < stop:
        ix.add([f"i{i}"], np.ones((1, 2), np.float32))
        i += 1
        time.sleep(0.002)
    ix.flush(10)
    gaps = np.diff(store.puts[:-1])  # the last save is the flush's, which skips the wait
    assert len(store.puts) <= 7, store.puts
    assert (gaps >= 0.2).all(), gaps  # 0.25 apart, less scheduling noise
    assert len(VectorIndex.from_bytes(store.get_bytes(object_key("w")))) == i
    reg.close()


def test_flush_does_not_wait_out_the_interval(tmp_path):
    store = CountingStore(tmp_path)
    reg = VectorRegistry(store, save_min_interval=60.0)
    ix = reg.create(IndexParams("w", 2))
    ix.flush(10)
    ix.add(["a"], np.ones((1, 2), np.float32))  # its save would wait a minute
    started = time.monotonic()
    ix.flush(10)
    assert time.monotonic() - started < 2
    assert VectorIndex.from_bytes(store.get_bytes(object_key("w"))).ids() == ["a"]
    ix.add(["b"], np.ones((1, 2), np.float32))
    started = time.monotonic()
    reg.close()  # the shutdown flush skips the wait as well
    assert time.monotonic() - started < 2
    assert len(VectorIndex.from_bytes(store.get_bytes(object_key("w")))) == 2


def test_create_during_a_drop_is_refused_then_works(tmp_path):
    store = CountingStore(tmp_path, delay=0.5)
    reg = VectorRegistry(store, save_min_interval=0.0)
    reg.create(IndexParams("w", 2))
    while not store.puts:  # the create's save is now stalled in put_bytes
        time.sleep(0.005)
    dropper = threading.Thread(target=reg.drop, args=("w",))
    dropper.start()
    time.sleep(0.1)
    with pytest.raises(IndexExists, match="being deleted"):
        reg.create(IndexParams("w", 3))
    dropper.join()
    assert store.head(object_key("w")) is None
    assert reg.create(IndexParams("w", 3)).index.dims == 3
    with pytest.raises(IndexNotFound):
        reg.drop("nope")
    reg.close()


def test_in_memory_registry_needs_no_store():
    reg = VectorRegistry(None)
    ix = reg.create(IndexParams("w", 2))
    ix.add(["a"], np.ones((1, 2), np.float32))
    ix.flush()
    assert reg.load_all() == [] and ix.persistence()["key"] is None
    reg.drop("w")
    assert len(reg) == 0


def test_merge_works_in_chunks(tmp_path):
    reg = VectorRegistry(None)
    a = reg.create(IndexParams("a", 3, "euclidean"))
    reg.create(IndexParams("b", 3, "euclidean"))
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    a.add([f"i{j}" for j in range(10)], x, [{"j": j} for j in range(10)])
    result = reg.merge("a", "b", clear_source=True, chunk=3)
    assert (result.merged, result.cleared, len(a)) == (10, 10, 0)
    vec, meta = reg.get("b").get("i7")
    assert vec.tolist() == x[7].tolist() and meta == {"j": 7}


def test_names_params_and_helpers():
    for good in ["a", "Z_9", "x" * 128, "a.b-c"]:
        assert validate_name(good) == good
    for bad in ["", ".a", "-a", "a/b", "a b", "x" * 129, None, 3, "é"]:
        with pytest.raises(ValueError):
            validate_name(bad)
    with pytest.raises(ValueError, match="m must be"):
        IndexParams("w", 3, m=300).validate()
    assert is_empty_object(b"{}") and is_empty_object(b" { \n } ")
    assert not is_empty_object(b'{"a":1}') and not is_empty_object(b"[]") and not is_empty_object(b"null")
    out = decode_vectors([b"[1, 2]", b"[3.5, 1e39]"], 2)
    assert out.dtype == np.float32 and out[0].tolist() == [1.0, 2.0] and np.isinf(out[1, 1])
    with pytest.raises(ValueError, match="item 1: vector has 3 dimensions"):
        decode_vectors([b"[1, 2]", b"[1, 2, 3]"], 2)
    with pytest.raises(ValueError, match="item 0: vector: malformed"):
        decode_vectors([b"[1, "], 2)


# -- a model-based property test over HTTP ---------------------------------------------------

ids = st.sampled_from(["a", "b", "c", "d"])
metas = st.one_of(
    st.just("absent"), st.none(), st.just({}), st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 9), min_size=1, max_size=2)
)
ops = st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(ids, st.integers(1, 5), metas), min_size=1, max_size=5)),
    st.tuples(st.just("delete"), st.lists(ids, max_size=3)),
)


@settings(max_examples=40)
@given(program=st.lists(ops, min_size=1, max_size=8))
def test_add_and_delete_follow_the_model(tmp_path_factory, program):
    """Upserts, the nil-vs-{} metadata rule and deletes, checked against a dict model after
    every step and again after a restart. A duplicate id inside one batch: only its last
    occurrence counts (the reference dedups before inserting), metadata included."""
    from lakehouse.config import load_config

    cfg = load_config(env={}, data_dir=str(tmp_path_factory.mktemp("model")))
    cfg = cfg.replace("vectord", save_min_interval=0.0)
    model: dict[str, tuple[list[float], dict | None]] = {}

    async def check(client) -> None:
        for i in ["a", "b", "c", "d"]:
            r = await client.get(f"/vectors/index/w/items/{i}")
            if i not in model:
                assert r.status == 404
                continue
            body = await r.json()
            assert body["vector"] == model[i][0]
            assert body.get("metadata") == model[i][1]
        r = await client.get("/vectors/index/w")
        assert (await r.json())["count"] == len(model)

    async def run() -> None:
        async with TestClient(TestServer(create_app(cfg))) as client:
            await client.post("/vectors/index", json={"name": "w", "dimension": 2, "distance": "euclidean"})
            for op, arg in program:
                if op == "add":
                    items = []
                    for i, v, m in arg:
                        item = {"id": i, "vector": [v, 0]}
                        if m != "absent":
                            item["metadata"] = m
                        items.append(item)
                    r = await client.post("/vectors/index/w/add", data=orjson.dumps({"items": items}))
                    assert r.status == 200
                    last = {i: (v, m) for i, v, m in arg}  # duplicates: only the last counts
                    for i, (v, m) in last.items():
                        old = model.get(i, (None, None))[1]
                        meta = old if m in ("absent", None) else (m or None)
                        model[i] = ([float(v), 0.0], meta)
                else:
                    r = await client.post("/vectors/index/w/delete", data=orjson.dumps({"ids": arg}))
                    assert (await r.json())["deleted"] == len(set(arg) & set(model))
                    for i in arg:
                        model.pop(i, None)
                await check(client)
        async with TestClient(TestServer(create_app(cfg))) as client:
            await check(client)

    asyncio.run(run())


def test_a_trip_batches_alike_searches_and_isolates_a_bad_one():
    from lakehouse.services.vectord import SearchJob, _answer, _run_trip

    reg = VectorRegistry(None)
    ix = reg.create(IndexParams("w", 8, "euclidean"))
    x = np.random.default_rng(4).standard_normal((50, 8)).astype(np.float32)
    ix.add([f"i{j}" for j in range(50)], x, [b'{"j": %d}' % j for j in range(50)])
    good = [SearchJob(ix, x[j], 3, None, None, None) for j in range(5)]  # type: ignore[arg-type]
    singles = [_answer(ix.search(x[j], 3)) for j in range(5)]
    out, grouped = _run_trip(good)
    assert grouped == 5 and out == singles  # the batch call answers exactly like single ones
    bad = SearchJob(ix, np.full(8, np.inf, np.float32), 3, None, None, None)  # type: ignore[arg-type]
    out, grouped = _run_trip([*good, bad])
    assert grouped == 0 and out[:5] == singles
    assert isinstance(out[5], ValueError) and "NaN or inf" in str(out[5])
    other_k = SearchJob(ix, x[0], 4, None, None, None)  # type: ignore[arg-type]
    out, grouped = _run_trip([*good, other_k])
    assert grouped == 5 and orjson.loads(out[5])["results"][3]["id"] != "i0"


def test_an_unclosed_registry_saves_and_exits_cleanly(tmp_path):
    """A library user who never calls close(): the interpreter exits with status 0 (a save
    worker asking for the GIL during finalization used to abort it) and the pending save of
    the acknowledged adds is done, so a new registry finds them."""
    script = f"""
import numpy as np
from lakehouse.data.storage import LocalStore
from lakehouse.vectors.registry import IndexParams, VectorRegistry
reg = VectorRegistry(LocalStore({str(tmp_path)!r}), save_min_interval=0.0, durability="none")
ix = reg.create(IndexParams("w", 8))
for j in range(20):
    ix.add([f"i{{j}}-{{k}}" for k in range(50)], np.random.default_rng(j).random((50, 8), np.float32))
"""
    for _ in range(3):  # the abort was a race: give it a few chances
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        reg = VectorRegistry(LocalStore(str(tmp_path)), durability="none")
        assert reg.load_all() == ["w"] and reg.get("w").count == 1000
        reg.close()
