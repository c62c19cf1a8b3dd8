"""vectord's write-ahead log at the registry level: replay equals the model (hypothesis), torn
tails at every truncation point, drops interrupted by a crash, the S3 backend, failures.

A "crash image" is a copy of the data directory taken while the registry runs (after the
log writers have handled everything queued): what a SIGKILL at that moment leaves behind.
Loading a fresh registry from the copy is a restart after that crash.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lakehouse.data.storage import LocalStore, open_store
from lakehouse.services.vectord import create_app
from lakehouse.vectors import registry as registry_mod
from lakehouse.vectors import wal as wal_mod
from lakehouse.vectors.registry import IndexParams, VectorRegistry, object_key
from lakehouse.vectors.wal import WriteAheadLog

DIMS = 4


def registry(root: Path, **kw) -> VectorRegistry:
    kw.setdefault("save_min_interval", 3600.0)  # no save unless a test asks for one
    return VectorRegistry(LocalStore(root / "objects"), wal_dir=root / "wal", **kw)


def crash_image(reg: VectorRegistry, root: Path, dest: Path) -> Path:
    for _ in range(20):
        for entry in reg.indexes():
            if entry.wal is not None:
                assert entry.wal.barrier(30)
        try:
            # A save may be writing: its temporary file is never read at a start.
            shutil.copytree(root, dest, ignore=shutil.ignore_patterns(".lh-tmp-*"))
            return dest
        except shutil.Error:
            # A background save's checkpoint deleted a segment mid-copy: copy again.
            shutil.rmtree(dest, ignore_errors=True)
    raise AssertionError("no consistent copy of the data directory")


def contents(reg: VectorRegistry, name: str) -> dict[str, tuple[np.ndarray, object]]:
    ix = reg.get(name).index
    return {i: ix.get(i) for i in ix.ids()}


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for i, (vec, meta) in want.items():
        assert np.allclose(got[i][0], vec, atol=1e-6), i
        assert got[i][1] == meta, i


# -- replay equals the model -----------------------------------------------------------------

ids_st = st.sampled_from([f"i{k}" for k in range(8)])
vec_st = st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=DIMS, max_size=DIMS).filter(
    lambda v: sum(x * x for x in v) > 1e-3
)
# None keeps an existing item's metadata, {} clears it, bytes replace it.
meta_st = st.one_of(st.none(), st.just({}), st.integers(0, 99).map(lambda n: b'{"n":%d}' % n))
op_st = st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(ids_st, vec_st, meta_st), min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.lists(ids_st, min_size=1, max_size=3)),
    st.tuples(st.just("save")),
)


def apply_model(model: dict, op) -> None:
    """The documented semantics: last duplicate wins; None keeps, {} clears, bytes replace."""
    if op[0] == "add":
        last = {}
        for item, vec, meta in op[1]:
            last[item] = (vec, meta)
        for item, (vec, meta) in last.items():
            v = np.asarray(vec, np.float32)
            v = v / np.linalg.norm(v)
            old = model.get(item, (None, None))[1]
            model[item] = (v, old if meta is None else (None if meta == {} else meta))
    elif op[0] == "delete":
        for item in op[1]:
            model.pop(item, None)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(ops=st.lists(op_st, max_size=25), crash_at=st.integers(0, 25), no_checkpoints=st.booleans())
# Set, snapshot, clear with {}, keep with None: replay must not turn the clear into a keep.
@example(
    ops=[("add", [("i0", [1.0, 0, 0, 0], b"1")]), ("save",), ("add", [("i0", [0, 1.0, 0, 0], {})]),
         ("add", [("i0", [0, 0, 1.0, 0], None)])],
    crash_at=4,
    no_checkpoints=True,
)
def test_replay_after_a_crash_equals_the_model(tmp_path_factory, ops, crash_at, no_checkpoints):
    """``no_checkpoints``: the crash always comes between a snapshot and the deletion of the
    segments it covers, so the whole log is replayed over snapshots that already hold it."""
    root = tmp_path_factory.mktemp("live")
    reg = registry(root)
    model: dict = {}
    with contextlib.ExitStack() as stack:
        if no_checkpoints:
            stack.enter_context(mock.patch.object(WriteAheadLog, "checkpoint", lambda self, cut: None))
        image = _run_ops(reg, root, ops[:crash_at], model, tmp_path_factory)
    again = registry(image)
    try:
        assert again.load_all() == ["w"]
        assert_same(contents(again, "w"), model)
        # And once more after the restart's own appends and a snapshot.
        again.get("w").add(["new"], np.ones((1, DIMS), np.float32), [b"1"])
        again.get("w").flush()
        image2 = crash_image(again, image, image.parent / "crash2")
    finally:
        again.close()
    model["new"] = (np.full(DIMS, 0.5, np.float32), b"1")
    third = registry(image2)
    try:
        third.load_all()
        assert_same(contents(third, "w"), model)
    finally:
        third.close()


def _run_ops(reg: VectorRegistry, root: Path, ops: list, model: dict, factory) -> Path:
    try:
        entry = reg.create(IndexParams("w", DIMS))
        for op in ops:
            if op[0] == "add":
                ids = [i for i, _, _ in op[1]]
                vecs = np.array([v for _, v, _ in op[1]], np.float32)
                entry.add(ids, vecs, [m for _, _, m in op[1]])
            elif op[0] == "delete":
                entry.delete(op[1])
            else:
                entry.flush()  # a snapshot, which cuts the log; its checkpoint is queued
            apply_model(model, op)
        return crash_image(reg, root, factory.mktemp("crash") / "data")
    finally:
        reg.close()


# -- torn tails ------------------------------------------------------------------------------


def test_every_truncation_point_of_the_last_record_loads_the_state_before_it(tmp_path):
    root = tmp_path / "live"
    reg = registry(root)
    rng = np.random.default_rng(3)
    try:
        entry = reg.create(IndexParams("w", DIMS))
        entry.flush()
        entry.add([f"a{i}" for i in range(5)], rng.standard_normal((5, DIMS)).astype(np.float32),
                  [b'{"a":%d}' % i for i in range(5)])
        before = contents(reg, "w")
        entry.add(["a1", "z"], rng.standard_normal((2, DIMS)).astype(np.float32), [None, b'"z"'])
        after = contents(reg, "w")
        image = crash_image(reg, root, tmp_path / "image")
    finally:
        reg.close()
    (seg,) = wal_mod.list_segments(image / "wal")["w"]
    data = seg.path.read_bytes()
    frames = wal_mod.read_segment(seg.path)
    last = 8 + len(frames.records[-1])
    for cut in range(len(data) - last, len(data) + 1):
        trial = tmp_path / f"cut{cut}"
        shutil.copytree(image, trial)
        (trial / "wal" / seg.path.name).write_bytes(data[:cut])
        reg = registry(trial)
        try:
            assert reg.load_all() == ["w"]
            assert_same(contents(reg, "w"), after if cut == len(data) else before)
            assert bool(reg.torn_tails) == (len(data) - last < cut < len(data)), cut
            # The log goes on in a new segment; a later crash replays both, torn tail and all.
            reg.get("w").add(["b"], np.ones((1, DIMS), np.float32), [b"2"])
            second = crash_image(reg, trial, tmp_path / f"cut{cut}-again")
        finally:
            reg.close()
        reg = registry(second)
        try:
            reg.load_all()
            got = contents(reg, "w")
            assert "b" in got and got["b"][1] == b"2"
            assert_same({k: v for k, v in got.items() if k != "b"},
                        after if cut == len(data) else before)
        finally:
            reg.close()
        shutil.rmtree(trial)
        shutil.rmtree(second)


# -- create and drop -----------------------------------------------------------------------


class NoSaves(LocalStore):
    """A store where every save fails (the crash comes before any save completes)."""

    def put_bytes(self, key, data, **kw):
        raise OSError("the crash came first")


def log_only_image(tmp_path, params: IndexParams, ids: list[str], x: np.ndarray):
    """The crash image of a registry whose every save failed: one index, created with
    ``params`` and given one batch, so that only its log holds it."""
    root = tmp_path / "live"
    reg = VectorRegistry(NoSaves(root / "objects"), save_min_interval=3600.0, wal_dir=root / "wal")
    try:
        reg.create(params)
        reg.get(params.name).add(ids, x)
        return crash_image(reg, root, tmp_path / "image")
    finally:
        reg.close()


def test_a_created_index_survives_a_crash_before_any_save(tmp_path):
    image = log_only_image(tmp_path, IndexParams("w", DIMS, distance="euclidean", m=8, ef_search=30),
                           ["a"], np.ones((1, DIMS), np.float32))
    assert not (image / "objects" / object_key("w")).exists()  # no snapshot: the log only
    again = registry(image)
    try:
        assert again.load_all() == ["w"]
        p = again.get("w").params()
        assert (p["distance"], p["m"], p["ef_search"], p["count"]) == ("euclidean", 8, 30, 1)
    finally:
        again.close()


def test_rotate_false_survives_a_crash_before_any_save(tmp_path):
    """The log's header carries ``rotate``: an index rebuilt from the log alone keeps
    ``rotate=False``, and its vectors exactly. A header written before the field existed
    reads as the default."""
    x = np.random.default_rng(3).standard_normal((5, DIMS)).astype(np.float32)
    image = log_only_image(tmp_path, IndexParams("w", DIMS, distance="euclidean", rotate=False),
                           [str(j) for j in range(5)], x)
    again = registry(image)
    try:
        assert again.load_all() == ["w"]
        assert again.get("w").params()["rotate"] is False and not again.get("w").index.rotate
        assert np.array_equal(again.get("w").index.get("3")[0], x[3])
    finally:
        again.close()
    old = {"name": "o", "dimension": 4, "distance": "cosine", "m": 16, "ef_search": 64, "ef_construction": 200, "fresh": True}
    assert registry_mod._params_from_header(old).rotate is True
    with pytest.raises(ValueError, match="rotate"):
        registry_mod._params_from_header(old | {"rotate": "no"})


class HookedStore(LocalStore):
    """A local store that runs ``on_delete`` before deleting (a crash image, or a failure)."""

    on_delete = None

    def delete(self, key):
        if self.on_delete is not None:
            self.on_delete(key)
        return super().delete(key)


def test_a_drop_interrupted_by_a_crash_is_finished_at_the_next_start(tmp_path):
    root = tmp_path / "live"
    store = HookedStore(root / "objects")
    reg = VectorRegistry(store, save_min_interval=0.0, wal_dir=root / "wal")
    images = []
    try:
        reg.create(IndexParams("w", DIMS)).add(["a"], np.ones((1, DIMS), np.float32))
        reg.create(IndexParams("keep", DIMS))
        reg.get("w").flush()
        # The crash: after the drop is logged, before the object is deleted.
        store.on_delete = lambda key: images.append(shutil.copytree(root, tmp_path / "image"))
        reg.drop("w")
    finally:
        reg.close()
    (image,) = images
    assert (image / "objects" / object_key("w")).exists()
    again = registry(image)
    try:
        assert again.load_all() == ["keep"]
        assert not (image / "objects" / object_key("w")).exists()
        assert "w" not in wal_mod.list_segments(image / "wal")
        # The name is free, and a new index of that name starts empty.
        assert len(again.create(IndexParams("w", DIMS))) == 0
    finally:
        again.close()


def test_a_failed_object_delete_undoes_the_logged_drop(tmp_path):
    root = tmp_path / "live"
    store = HookedStore(root / "objects")
    reg = VectorRegistry(store, save_min_interval=3600.0, wal_dir=root / "wal")
    try:
        reg.create(IndexParams("w", DIMS)).add(["a"], np.ones((1, DIMS), np.float32))

        def refuse(key):
            raise OSError("read-only filesystem")

        store.on_delete = refuse
        with pytest.raises(Exception, match="read-only"):
            reg.drop("w")
        store.on_delete = None
        reg.get("w").add(["b"], np.ones((1, DIMS), np.float32))
        image = crash_image(reg, root, tmp_path / "image")
    finally:
        reg.close()
    again = registry(image)
    try:
        assert again.load_all() == ["w"]
        assert sorted(again.get("w").index.ids()) == ["a", "b"]
    finally:
        again.close()


def test_a_log_that_cannot_rebuild_its_index_is_quarantined(tmp_path):
    root = tmp_path / "live"
    reg = registry(root, save_min_interval=0.0)
    try:
        entry = reg.create(IndexParams("w", DIMS))
        entry.add(["a"], np.ones((1, DIMS), np.float32))
        entry.flush()  # the checkpoint deletes the segment that started at creation
        entry.add(["b"], np.ones((1, DIMS), np.float32))
        image = crash_image(reg, root, tmp_path / "image")
    finally:
        reg.close()
    (image / "objects" / object_key("w")).unlink()  # the snapshot is gone (a lost disk)
    again = registry(image)
    try:
        assert again.load_all() == []
        assert list((image / "wal" / "quarantine").iterdir())
        assert wal_mod.list_segments(image / "wal") == {}  # the name is free
    finally:
        again.close()


# -- the S3 backend: the log is on the local disk --------------------------------------------


def test_s3_backend_replays_the_local_log(s3_config, tmp_path):
    wal_dir = tmp_path / "wal"
    live = VectorRegistry(open_store(s3_config), save_min_interval=3600.0, wal_dir=wal_dir)
    try:
        entry = live.create(IndexParams("w", DIMS))
        entry.flush()
        entry.add(["a", "b"], np.eye(2, DIMS, dtype=np.float32), [b"1", None])
        entry.delete(["b"])
        assert entry.wal is not None and entry.wal.barrier(30)
        # A second process on the same bucket and log directory, as after a crash.
        again = VectorRegistry(open_store(s3_config), save_min_interval=3600.0, wal_dir=wal_dir)
        try:
            assert again.load_all() == ["w"]
            assert again.get("w").index.ids() == ["a"]
            assert again.get("w").get("a")[1] == b"1"
        finally:
            again.close()
    finally:
        live.close()


# -- the daemon --------------------------------------------------------------------------------


async def call(client, method, path, body=None):
    r = await client.request(method, path, data=None if body is None else orjson.dumps(body))
    raw = await r.read()
    return r.status, orjson.loads(raw) if raw else None


async def test_a_failed_log_write_is_503_and_the_log_recovers(aiohttp_client, config, monkeypatch):
    client = await aiohttp_client(create_app(config))
    assert (await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 2}))[0] == 201
    real = wal_mod._write_all
    fail = {"on": True}

    def failing(fd, bufs):
        if fail["on"]:
            fail["on"] = False
            raise OSError(5, "Input/output error")
        real(fd, bufs)

    monkeypatch.setattr(wal_mod, "_write_all", failing)
    status, body = await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "a", "vector": [1, 0]}]})
    assert status == 503 and "Input/output error" in body["error"]["message"]
    status, body = await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "b", "vector": [0, 1]}]})
    assert status == 200
    status, body = await call(client, "POST", "/vectors/index/w/delete", {"ids": ["b"]})
    assert status == 200 and body == {"deleted": 1}
    info = (await call(client, "GET", "/vectors/index/w"))[1]["persistence"]["wal"]
    assert info["failures"] == 1 and info["sync"] is True and info["durable_lsn"] == info["last_lsn"]


async def test_durability_none_keeps_no_log(aiohttp_client, config):
    cfg = config.replace("vectord", durability="none")
    client = await aiohttp_client(create_app(cfg))
    assert (await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 2}))[0] == 201
    assert (await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "a", "vector": [1, 0]}]}))[0] == 200
    assert (await call(client, "GET", "/vectors/index/w"))[1]["persistence"]["wal"] is None
    assert not (Path(cfg.data_dir) / "wal").exists()


def test_durability_is_validated():
    from lakehouse.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"\[vectord\]\.durability"):
        load_config(env={"LAKEHOUSE_VECTORD_DURABILITY": "sometimes"})
    with pytest.raises(ValueError, match="durability"):
        VectorRegistry(None, durability="maybe")


def test_a_create_racing_another_of_the_same_name_finds_the_index(tmp_path, monkeypatch):
    """Two creates of one name at once (matrixd's exist_ok on a new playbook corpus): the
    second waits for the first and then says "exists", so the caller's next add finds it."""
    from lakehouse.vectors.registry import IndexExists

    reg = registry(tmp_path)
    slow_open = reg._open_wal
    entered = threading.Event()

    def open_wal(*args, **kwargs):
        entered.set()
        time.sleep(0.3)  # the first create is inside its log's creation
        return slow_open(*args, **kwargs)

    monkeypatch.setattr(reg, "_open_wal", open_wal)
    params = IndexParams("racing", 4, "cosine", 16, 64, 200)
    first = threading.Thread(target=reg.create, args=(params,))
    first.start()
    assert entered.wait(5)
    with pytest.raises(IndexExists):
        reg.create(params)
    assert "racing" in reg  # visible the moment the second create answers
    first.join()
    reg.close()
