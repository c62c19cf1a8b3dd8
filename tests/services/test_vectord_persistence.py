"""vectord persistence: restart, crash (SIGKILL) and clean shutdown (SIGTERM), save and delete
failures, unreadable objects at start, and the S3 backend."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from lakehouse import VectorIndex
from lakehouse.data.storage import StorageError, open_store
from lakehouse.services import vectord as vectord_service
from lakehouse.services.vectord import create_app
from lakehouse.vectors.registry import object_key
from testkit import free_port

# -- helpers ----------------------------------------------------------------------------------


async def call(client, method, path, body=None):
    data = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    r = await client.request(method, path, data=data)
    raw = await r.read()
    assert r.status != 500, raw
    return r.status, orjson.loads(raw) if raw else None


def items(prefix: str, x: np.ndarray, meta: bool = True) -> list[dict]:
    return [
        {"id": f"{prefix}{j}", "vector": x[j], **({"metadata": {"j": j}} if meta and j % 3 else {})}
        for j in range(len(x))
    ]


# -- restart ----------------------------------------------------------------------------------


async def test_restart_loads_every_index_and_answers_identically(config):
    cfg = config.replace("vectord", save_min_interval=0.0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 16)).astype(np.float32)  # past 2048: the graph is built
    queries = rng.standard_normal((12, 16)).astype(np.float32)
    before: dict = {}
    async with TestClient(TestServer(create_app(cfg))) as client:
        for name, distance in (("big", "cosine"), ("small", "euclidean"), ("empty", "dot")):
            assert (await call(client, "POST", "/vectors/index", {"name": name, "dimension": 16, "distance": distance, "ef_search": 40}))[0] == 201
        for lo in range(0, 3000, 1000):
            assert (await call(client, "POST", "/vectors/index/big/add", {"items": items("w", x)[lo : lo + 1000]}))[0] == 200
        await call(client, "POST", "/vectors/index/small/add", {"items": items("s", x[:50])})
        await call(client, "POST", "/vectors/index/big/delete", {"ids": ["w1", "w2"]})
        for name in ("big", "small"):
            assert (await call(client, "POST", f"/vectors/index/{name}/save"))[0] == 200
            before[name] = [
                (await call(client, "POST", f"/vectors/index/{name}/search", {"vector": q, "k": 10}))[1]
                for q in queries
            ]
            before[name + "/batch"] = (await call(client, "POST", f"/vectors/index/{name}/search", {"vectors": queries, "k": 7}))[1]
        before["info"] = (await call(client, "GET", "/vectors/index"))[1]
        before["item"] = (await call(client, "GET", "/vectors/index/big/items/w7"))[1]
        assert (await call(client, "GET", "/vectors/index/big"))[1]["stats"]["graph_built"] is True

    async with TestClient(TestServer(create_app(cfg))) as client:
        assert (await call(client, "GET", "/vectors/index"))[1] == before["info"]
        for name in ("big", "small"):
            after = [
                (await call(client, "POST", f"/vectors/index/{name}/search", {"vector": q, "k": 10}))[1]
                for q in queries
            ]
            assert after == before[name]
            assert (await call(client, "POST", f"/vectors/index/{name}/search", {"vectors": queries, "k": 7}))[1] == before[name + "/batch"]
        assert (await call(client, "GET", "/vectors/index/big/items/w7"))[1] == before["item"]
        stats = (await call(client, "GET", "/vectors/index/big"))[1]["stats"]
        assert stats["graph_built"] is True and stats["rebuilds"] == 0  # loaded, not rebuilt
        assert stats["ef_search"] == 40 and stats["count"] == 2998
        assert (await call(client, "GET", "/vectors/index/w1"))[0] == 404


async def test_rotate_false_keeps_vectors_exact_through_a_restart(config):
    """``"rotate": false`` at create: items come back bit for bit, before and after a
    restart, and later adds never rotate the index. The default index of the same data
    rotates once it outgrows the exact scan, and its items come back to about 1e-6."""
    cfg = config.replace("vectord", save_min_interval=0.0)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2300, 128)).astype(np.float32)
    async with TestClient(TestServer(create_app(cfg))) as client:
        for name, extra in (("plain", {"rotate": False}), ("turned", {})):
            status, body = await call(client, "POST", "/vectors/index",
                                      {"name": name, "dimension": 128, "distance": "euclidean", **extra})
            assert status == 201 and body.get("rotate", True) is (name == "turned"), body
            for lo in range(0, 2100, 700):
                assert (await call(client, "POST", f"/vectors/index/{name}/add",
                                   {"items": items(name, x, meta=False)[lo : lo + 700]}))[0] == 200
        info = {n: (await call(client, "GET", f"/vectors/index/{n}"))[1] for n in ("plain", "turned")}
        assert info["plain"]["rotate"] is False and info["plain"]["stats"]["rotated"] is False
        assert "rotate" not in info["turned"] and info["turned"]["stats"]["rotated"] is True
        listed = (await call(client, "GET", "/vectors/index"))[1]["indexes"]
        assert [ix.get("rotate") for ix in listed] == [False, None]
        got = (await call(client, "GET", "/vectors/index/plain/items/plain5"))[1]["vector"]
        assert np.array_equal(np.array(got, np.float32), x[5])
        turned = np.array((await call(client, "GET", "/vectors/index/turned/items/turned5"))[1]["vector"], np.float32)
        np.testing.assert_allclose(turned, x[5], rtol=0, atol=1e-5)
    async with TestClient(TestServer(create_app(cfg))) as client:
        info = (await call(client, "GET", "/vectors/index/plain"))[1]
        assert info["rotate"] is False and info["count"] == 2100
        got = (await call(client, "GET", "/vectors/index/plain/items/plain2099"))[1]["vector"]
        assert np.array_equal(np.array(got, np.float32), x[2099])
        assert (await call(client, "POST", "/vectors/index/plain/add", {"items": items("plain", x, meta=False)[2100:]}))[0] == 200
        assert (await call(client, "GET", "/vectors/index/plain"))[1]["stats"]["rotated"] is False
        assert (await call(client, "GET", "/vectors/index/turned"))[1]["stats"]["rotated"] is True


async def test_clean_app_shutdown_saves_what_was_acknowledged(config):
    cfg = config.replace("vectord", save_min_interval=3600.0)  # only the shutdown flush saves
    x = np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32)
    async with TestClient(TestServer(create_app(cfg))) as client:
        await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 4})
        for lo in range(0, 40, 10):
            await call(client, "POST", "/vectors/index/w/add", {"items": items("i", x)[lo : lo + 10]})
    saved = VectorIndex.from_bytes(open_store(cfg).get_bytes(object_key("w")))
    assert len(saved) == 40


# -- failures -----------------------------------------------------------------------------------


class FlakyStore:
    """Wraps a real store; writes and deletes fail or stall on demand."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.fail_puts = False
        self.fail_deletes = False
        self.put_delay = 0.0
        self.puts = 0

    def put_bytes(self, key, data, **kw):
        time.sleep(self.put_delay)
        if self.fail_puts:
            raise StorageError("disk on fire")
        self.puts += 1
        return self.inner.put_bytes(key, data, **kw)

    def delete(self, key):
        if self.fail_deletes:
            raise StorageError("read-only filesystem")
        return self.inner.delete(key)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def flaky(monkeypatch):
    holder = {}

    def fake_open_store(config):
        holder["store"] = FlakyStore(open_store(config))
        return holder["store"]

    monkeypatch.setattr(vectord_service, "open_store", fake_open_store)
    return holder


async def test_a_failing_save_is_503_and_the_index_keeps_serving(aiohttp_client, config, flaky):
    client = await aiohttp_client(create_app(config.replace("vectord", save_min_interval=0.0)))
    store = flaky["store"]
    store.fail_puts = True
    await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 2})
    assert (await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "a", "vector": [1, 0]}]}))[0] == 200
    status, body = await call(client, "POST", "/vectors/index/w/save")
    assert status == 503 and "disk on fire" in body["error"]["message"]
    status, info = await call(client, "GET", "/vectors/index/w")
    assert info["persistence"]["failures"] >= 1 and info["persistence"]["dirty"] is True
    assert "disk on fire" in info["persistence"]["last_error"]
    status, body = await call(client, "POST", "/vectors/index/w/search", {"vector": [1, 0]})
    assert status == 200 and body["results"][0]["id"] == "a"
    # The store recovers: the next save (retried by the explicit save) succeeds.
    store.fail_puts = False
    status, body = await call(client, "POST", "/vectors/index/w/save")
    assert status == 200 and body["dirty"] is False
    assert VectorIndex.from_bytes(store.inner.get_bytes(object_key("w"))).ids() == ["a"]


async def test_delete_during_a_save_leaves_no_object_behind(aiohttp_client, config, flaky):
    client = await aiohttp_client(create_app(config.replace("vectord", save_min_interval=0.0)))
    store = flaky["store"]
    store.put_delay = 0.4
    await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 2})
    await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "a", "vector": [1, 0]}]})
    # A save is in flight (stalled in put_bytes) and another is pending.
    assert (await call(client, "DELETE", "/vectors/index/w"))[0] == 200
    time.sleep(0.5)
    assert store.inner.head(object_key("w")) is None
    assert (await call(client, "GET", "/vectors/index"))[1] == {"indexes": []}


async def test_a_failed_object_delete_keeps_the_index(aiohttp_client, config, flaky):
    client = await aiohttp_client(create_app(config.replace("vectord", save_min_interval=0.0)))
    store = flaky["store"]
    await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 2})
    await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "a", "vector": [1, 0]}]})
    store.fail_deletes = True
    status, body = await call(client, "DELETE", "/vectors/index/w")
    assert status == 503 and "read-only" in body["error"]["message"]
    assert (await call(client, "GET", "/vectors/index/w"))[1]["count"] == 1
    # Still persisted: a later add is saved.
    await call(client, "POST", "/vectors/index/w/add", {"items": [{"id": "b", "vector": [0, 1]}]})
    assert (await call(client, "POST", "/vectors/index/w/save"))[0] == 200
    assert len(VectorIndex.from_bytes(store.inner.get_bytes(object_key("w")))) == 2
    store.fail_deletes = False
    assert (await call(client, "DELETE", "/vectors/index/w"))[0] == 200
    assert store.inner.head(object_key("w")) is None


async def test_unreadable_objects_are_quarantined_never_loaded(aiohttp_client, config):
    store = open_store(config)
    good = VectorIndex(3)
    good.add(["a"], np.ones((1, 3), np.float32))
    data = good.to_bytes()
    store.put_bytes("_vectors/good.lhv", data)
    store.put_bytes("_vectors/garbage.lhv", b"this is not an index")
    store.put_bytes("_vectors/torn.lhv", data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    store.put_bytes("_vectors/flipped.lhv", bytes(flipped))
    store.put_bytes("_vectors/legacy.lhv1", b"LHV1....")
    store.put_bytes("_vectors/other/nested.lhv", data)
    client = await aiohttp_client(create_app(config))
    status, body = await call(client, "GET", "/vectors/index")
    assert [i["name"] for i in body["indexes"]] == ["good"]
    assert body["indexes"][0]["count"] == 1
    keys = [o.key for o in store.iter_list("_vectors/")]
    for name in ("garbage", "torn", "flipped"):
        assert f"_vectors/{name}.lhv" not in keys
        assert any(k.startswith(f"_vectors/quarantine/{name}.") for k in keys), keys
    assert "_vectors/legacy.lhv1" in keys  # not ours: left alone
    # The names are free again.
    assert (await call(client, "POST", "/vectors/index", {"name": "torn", "dimension": 3}))[0] == 201


async def test_a_storage_failure_at_start_stops_the_daemon(config, monkeypatch):
    class Broken(FlakyStore):
        def get_bytes(self, key):
            raise StorageError("bucket unreachable")

    store = open_store(config)
    store.put_bytes("_vectors/w.lhv", VectorIndex(2).to_bytes())
    monkeypatch.setattr(vectord_service, "open_store", lambda cfg: Broken(open_store(cfg)))
    with pytest.raises(StorageError, match="bucket unreachable"):
        async with TestClient(TestServer(create_app(config))):
            pass


async def test_s3_backend_round_trip(s3_config):
    cfg = s3_config.replace("vectord", save_min_interval=0.0)
    x = np.random.default_rng(2).standard_normal((30, 8)).astype(np.float32)
    async with TestClient(TestServer(create_app(cfg))) as client:
        await call(client, "POST", "/vectors/index", {"name": "w", "dimension": 8})
        await call(client, "POST", "/vectors/index/w/add", {"items": items("i", x)})
        assert (await call(client, "POST", "/vectors/index/w/save"))[0] == 200
        before = (await call(client, "POST", "/vectors/index/w/search", {"vector": x[3], "k": 5}))[1]
    assert open_store(cfg).head("_vectors/w.lhv") is not None
    async with TestClient(TestServer(create_app(cfg))) as client:
        assert (await call(client, "POST", "/vectors/index/w/search", {"vector": x[3], "k": 5}))[1] == before
        assert (await call(client, "DELETE", "/vectors/index/w"))[0] == 200
    assert open_store(cfg).head("_vectors/w.lhv") is None


# -- a real process: SIGKILL while adds stream in, SIGTERM -------------------------------------


class Daemon:
    """``lakehouse serve vectord`` as a subprocess on 127.0.0.1, with a tiny HTTP client."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.env = dict(os.environ, LAKEHOUSE_LOG_LEVEL="WARNING")
        for key, value in settings.items():
            self.env[f"LAKEHOUSE_VECTORD_{key.upper()}"] = value
        self.proc: subprocess.Popen | None = None
        self.conn: http.client.HTTPConnection | None = None

    def start(self, timeout: float = 30) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "serve", "vectord", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vectord exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("vectord did not start")

    def request(self, method: str, path: str, body=None) -> tuple[int, dict]:
        assert self.conn is not None
        data = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, orjson.loads(raw) if raw else None

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        if self.conn is not None:
            self.conn.close()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            self.proc.stderr.close()
        return code

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


BATCH = 200
DIMS = 48


def batch_vectors(j: int) -> np.ndarray:
    return np.random.default_rng(1000 + j).standard_normal((BATCH, DIMS)).astype(np.float32)


def batch_items(j: int) -> list[dict]:
    x = batch_vectors(j)
    return [{"id": f"b{j}-{i}", "vector": x[i], "metadata": {"b": j}} for i in range(BATCH)]


def _kill_mid_save(d: Daemon, deadline: float, stop: threading.Event) -> None:
    """SIGKILL as soon as a save is writing (its temporary file exists), or at ``deadline``."""
    folder = d.data_dir / "objects" / "_vectors"
    while not stop.is_set() and time.monotonic() < deadline:
        with os.scandir(folder) as it:
            if any(e.name.startswith(".lh-tmp-") for e in it):
                break
        time.sleep(0.0005)
    d.proc.kill()


WRITERS = 8
#: items per batch of the concurrent writers (small: many acknowledgements per cycle)
SMALL = 20


def small_items(w: int, j: int) -> list[dict]:
    x = np.random.default_rng(w * 1_000_003 + j).standard_normal((SMALL, DIMS)).astype(np.float32)
    return [{"id": f"w{w}-{j}-{i}", "vector": x[i], "metadata": {"w": w, "j": j}} for i in range(SMALL)]


def stream_adds_then_kill(
    d: Daemon, first: list[int], seconds: float, mid_save: bool
) -> list[int]:
    """``WRITERS`` threads, each with its own connection, add batches first[w], first[w]+1,
    ... one at a time until the daemon is SIGKILLed: after ``seconds``, or (``mid_save``) at
    the first save in progress after ``seconds / 2``. Returns, per writer, the number of the
    batch after its last acknowledged one."""
    stop = threading.Event()
    if mid_save:
        start = time.monotonic() + seconds / 2
        killer = threading.Timer(seconds / 2, _kill_mid_save, (d, start + 10 * seconds, stop))
    else:
        killer = threading.Timer(seconds, lambda: d.proc.kill())
    acked = list(first)
    failures: list[str] = []

    def writer(w: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        j = first[w]
        try:
            while True:
                body = orjson.dumps({"items": small_items(w, j)}, option=orjson.OPT_SERIALIZE_NUMPY)
                conn.request("POST", "/vectors/index/w/add", body=body)
                r = conn.getresponse()
                raw = r.read()
                if r.status != 200:
                    failures.append(f"writer {w} batch {j}: {r.status} {raw[:200]!r}")
                    return
                j += 1
                acked[w] = j  # acknowledged: it must survive the kill
        except (OSError, http.client.HTTPException):
            pass  # the kill
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    killer.start()
    try:
        for t in threads:
            t.join()
    finally:
        stop.set()
        killer.cancel()
        killer.join()
        d.proc.kill()  # a writer that failed ended its loop early
        d.proc.wait()
        d.proc.stderr.close()
    assert not failures, failures
    return acked


def check_nothing_acknowledged_was_lost(d: Daemon, before: list[int], acked: list[int]) -> list[int]:
    """After a restart: each writer's acknowledged batches are all there, in full; the one in
    flight at the kill may or may not be. Returns, per writer, the batches the index holds."""
    status, info = d.request("GET", "/vectors/index/w")
    assert status == 200, info
    count = info["count"]
    assert count % SMALL == 0, count
    held = []
    for w in range(WRITERS):
        # Every batch acknowledged in this cycle, first and last item (vector and metadata).
        for j in range(before[w], acked[w]):
            for i in (0, SMALL - 1):
                status, item = d.request("GET", f"/vectors/index/w/items/w{w}-{j}-{i}")
                assert status == 200, (w, j, i, item)
                assert item["metadata"] == {"w": w, "j": j}
            want = np.random.default_rng(w * 1_000_003 + j).standard_normal((SMALL, DIMS))[SMALL - 1]
            assert np.allclose(item["vector"], want / np.linalg.norm(want), atol=1e-5)
        inflight = d.request("GET", f"/vectors/index/w/items/w{w}-{acked[w]}-0")[0] == 200
        assert d.request("GET", f"/vectors/index/w/items/w{w}-{acked[w] + 1}-0")[0] == 404
        held.append(acked[w] + inflight)
    assert count == SMALL * sum(held), (count, held)
    # The snapshot file itself passes the format's checks (the log holds the rest).
    raw = (d.data_dir / "objects" / "_vectors" / "w.lhv").read_bytes()
    assert len(VectorIndex.from_bytes(raw)) <= count
    return held


def crash_cycles(
    tmp_path: Path, cycles: int, rng: random.Random, *, more_until_torn: int = 0, **settings: str
) -> list[tuple[int, int, int]]:
    """Kill / restart ``cycles`` times under ``WRITERS`` concurrent writers, every other kill
    in the middle of a save; check after each restart that nothing acknowledged was lost.
    With ``more_until_torn``, go on (up to twice ``cycles``) until that many kills tore a
    save: whether a kill lands inside a save is a race the machine's load decides.
    Returns (acknowledged batches, batches held after the restart, torn saves) per cycle."""
    settings = {"save_min_interval": "0", **settings}
    d = Daemon(tmp_path / "data", **settings)
    folder = tmp_path / "data" / "objects" / "_vectors"
    history = []
    try:
        d.start()
        assert d.request("POST", "/vectors/index", {"name": "w", "dimension": DIMS})[0] == 201
        assert d.request("POST", "/vectors/index/w/save")[0] == 200
        held = [0] * WRITERS
        for cycle in range(2 * cycles):
            if cycle >= cycles and sum(t for _, _, t in history) >= more_until_torn:
                break
            torn_before = sum(p.name.startswith(".lh-tmp-") for p in folder.iterdir())
            acked = stream_adds_then_kill(d, held, rng.uniform(0.6, 1.4), mid_save=cycle % 2 == 1)
            torn = sum(p.name.startswith(".lh-tmp-") for p in folder.iterdir()) - torn_before
            d.start()  # a failed start raises
            held = check_nothing_acknowledged_was_lost(d, held, acked)
            history.append((sum(acked), sum(held), torn))
        assert not (folder / "quarantine").exists()  # no unreadable snapshot, ever
        assert not (tmp_path / "data" / "wal" / "vectord" / "quarantine").exists()
    finally:
        d.kill_quietly()
    return history


def test_sigkill_under_concurrent_writers_loses_nothing_acknowledged(tmp_path):
    history = crash_cycles(tmp_path, cycles=3, rng=random.Random(11), more_until_torn=1)
    # The mid-save kills did tear a save (its temporary file is left behind), and the
    # restart still loaded the previous complete snapshot plus the log.
    assert any(torn for _, _, torn in history), history
    assert history[-1][0] > 0, history


def test_sigkill_with_durability_os_loses_nothing_acknowledged(tmp_path):
    # "os": written to the kernel before the answer; a SIGKILL does not lose the page cache.
    history = crash_cycles(tmp_path, cycles=1, rng=random.Random(13), durability="os")
    assert history[-1][0] > 0, history


@pytest.mark.slow
def test_sigkill_soak(tmp_path):
    """100 kill / restart cycles under 8 writers: 0 acknowledged writes lost, 0 failed starts."""
    history = crash_cycles(tmp_path, cycles=100, rng=random.Random(12), more_until_torn=10)
    assert len(history) >= 100
    assert sum(torn for _, _, torn in history) >= 10, history


def test_sigterm_saves_everything_acknowledged(tmp_path):
    # No save would run for an hour: only the shutdown flush can save the adds.
    d = Daemon(tmp_path / "data", save_min_interval="3600")
    try:
        d.start()
        assert d.request("POST", "/vectors/index", {"name": "w", "dimension": DIMS})[0] == 201
        for j in range(5):
            assert d.request("POST", "/vectors/index/w/add", {"items": batch_items(j)})[0] == 200
        status, info = d.request("GET", "/vectors/index/w")
        assert info["persistence"]["dirty"] is True
        started = time.monotonic()
        assert d.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 20
        d.start()
        status, info = d.request("GET", "/vectors/index/w")
        assert info["count"] == 5 * BATCH
        status, item = d.request("GET", f"/vectors/index/w/items/b4-{BATCH - 1}")
        assert status == 200 and item["metadata"] == {"b": 4}
        # The snapshot alone holds everything: the shutdown saved, and the log is covered.
        raw = (d.data_dir / "objects" / "_vectors" / "w.lhv").read_bytes()
        assert len(VectorIndex.from_bytes(raw)) == 5 * BATCH
    finally:
        d.kill_quietly()
