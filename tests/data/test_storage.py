"""The object-store module on both backends: keys, atomic writes, streaming, listing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.data.storage import (
    MAX_KEY_BYTES,
    TMP_PREFIX,
    InvalidKey,
    KeyConflict,
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    S3Store,
    open_store,
    put_limit,
    validate_key,
)

# -- the contract's validateKey table -------------------------------------------------------

REJECTED = {
    "": "empty",
    "a" * (MAX_KEY_BYTES + 1): "longer than 1024",
    "é" * 513: "longer than 1024",  # 1026 UTF-8 bytes, 513 characters
    "a\x00b": "NUL",
    "/abs": "starts with '/'",
    "..": "'..'",
    "a/../b": "'..'",
    "a/..": "'..'",
    "a\rb": "CR",
    "a\nb": "LF",
    "a\tb": "TAB",
    "a\x01b": "control",
    "a//b": "empty path segment",
    "a/": "empty path segment",
    "a/./b": "'.'",
    f"a/{TMP_PREFIX}x": "reserved",
}


@pytest.mark.parametrize("key", list(REJECTED))
def test_rejected_keys(key):
    with pytest.raises(InvalidKey, match=REJECTED[key]):
        validate_key(key)
    assert issubclass(InvalidKey, ValueError)


@pytest.mark.parametrize(
    "key", ["a", "a" * MAX_KEY_BYTES, "_vectors/workers.lhv", "datasets/o%27b/x.parquet", "a b", "..a", "a..", "x/.hidden", "ünï/cødé"]
)
def test_accepted_keys(key):
    assert validate_key(key) == key


def test_put_limit_per_prefix(config):
    s = config.storaged
    assert put_limit(s, "datasets/x.parquet") == 256 << 20
    assert put_limit(s, "_vectors/workers.lhv") == 4 << 30
    assert put_limit(s, "x/_vectors/y") == 256 << 20


# -- both backends -----------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request, config) -> ObjectStore:
    cfg = request.getfixturevalue("s3_config") if request.param == "s3" else config
    s = open_store(cfg)
    yield s
    s.close()


def test_open_store_backend(config, s3_config):
    local = open_store(config)
    assert isinstance(local, LocalStore)
    assert local.root == (Path(config.data_dir) / "objects").resolve()
    rooted = open_store(config.replace("storaged", root="elsewhere"))
    assert rooted.root == (Path(config.data_dir) / "elsewhere").resolve()
    s3 = open_store(s3_config)
    assert isinstance(s3, S3Store) and s3.bucket == s3_config.s3.bucket


def test_round_trip(store):
    info = store.put_bytes("a/b/c.bin", b"hello")
    assert (info.key, info.size) == ("a/b/c.bin", 5)
    assert info.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert store.get_bytes("a/b/c.bin") == b"hello"
    head = store.head("a/b/c.bin")
    assert head is not None and head.size == 5 and head.sha256 == info.sha256
    # overwrite
    store.put_bytes("a/b/c.bin", b"bye")
    assert store.get_bytes("a/b/c.bin") == b"bye"
    assert store.delete("a/b/c.bin") is True
    assert store.delete("a/b/c.bin") is False
    assert store.head("a/b/c.bin") is None
    with pytest.raises(ObjectNotFound) as exc:
        store.get_bytes("a/b/c.bin")
    assert isinstance(exc.value, KeyError) and exc.value.key == "a/b/c.bin"
    assert store.list().items == []  # the emptied directories went too


def test_empty_object(store):
    info = store.put_bytes("empty", b"")
    assert info.size == 0 and store.get_bytes("empty") == b""


def test_bad_key_is_refused_everywhere(store):
    for op in (
        lambda: store.put_bytes("../x", b""),
        lambda: store.get_bytes("/x"),
        lambda: store.head("a\nb"),
        lambda: store.delete(""),
        lambda: store.open_writer("a//b"),
    ):
        with pytest.raises(InvalidKey):
            op()


def test_streaming_writer_and_reader(store):
    chunks = [os.urandom(100_000) for _ in range(30)]  # 3 MB
    with store.open_writer("big/obj") as w:
        for c in chunks:
            w.write(c)
        assert store.head("big/obj") is None  # nothing visible before the commit
    assert w.info is not None and w.info.size == 3_000_000
    with store.open_reader("big/obj") as r:
        assert r.size == 3_000_000
        got = b"".join(r.iter_chunks(65536))
    assert got == b"".join(chunks)


def test_writer_error_leaves_previous_object(store):
    store.put_bytes("k", b"old")
    with pytest.raises(RuntimeError), store.open_writer("k") as w:
        w.write(b"new new new")
        raise RuntimeError("crash in the middle")
    assert store.get_bytes("k") == b"old"
    assert [i.key for i in store.list().items] == ["k"]


def test_writer_cap(store):
    store.put_bytes("capped", b"old")
    w = store.open_writer("capped", max_bytes=10)
    w.write(b"12345")
    with pytest.raises(ObjectTooLarge):
        w.write(b"678901")
    assert store.get_bytes("capped") == b"old"
    with pytest.raises(ObjectTooLarge):
        store.put_bytes("new", b"x" * 11, max_bytes=10)
    assert store.head("new") is None


def test_listing_order_and_continuation(store):
    # ("a" as an object and as a prefix can't coexist on a filesystem: not both here)
    keys = ["a-c", "a/b/c", "a/bb", "a.x", "b", "z/y/x", "ä", "a0", "a/b0"]
    for k in keys:
        store.put_bytes(k, k.encode())
    expected = sorted(keys, key=lambda k: k.encode())
    assert [i.key for i in store.list().items] == expected
    # pages of 2, continued by next_after, never silently truncated
    got, after = [], ""
    while True:
        page = store.list(after=after, limit=2)
        got += [i.key for i in page.items]
        if not page.truncated:
            assert page.next_after is None
            break
        assert len(page.items) == 2 and page.next_after == page.items[-1].key
        after = page.next_after
    assert got == expected
    assert [i.key for i in store.list(prefix="a/").items] == ["a/b/c", "a/b0", "a/bb"]
    assert [i.key for i in store.list(prefix="a/b").items] == ["a/b/c", "a/b0", "a/bb"]
    assert [i.key for i in store.list(prefix="a", after="a/b0").items] == ["a/bb", "a0"]
    assert [i.size for i in store.list(prefix="z").items] == [5]
    assert list(i.key for i in store.iter_list("a")) == [k for k in expected if k.startswith("a")]


@settings(max_examples=40)
@given(st.lists(st.text(alphabet="ab/-.", min_size=1, max_size=6), max_size=12), st.text(alphabet="ab/-.", max_size=4), st.text(alphabet="ab/-.", max_size=4))
def test_local_listing_matches_model(tmp_path_factory, names, prefix, after):
    """Property: the local walk lists exactly the model's keys, in byte order."""
    store = LocalStore(tmp_path_factory.mktemp("objs"))
    model: set[str] = set()
    for name in names:
        try:
            store.put_bytes(name, b"x")
        except (InvalidKey, KeyConflict):
            continue
        model.add(name)
    want = sorted(k for k in model if k.startswith(prefix) and k > after)
    got, cursor = [], after
    while True:
        page = store.list(prefix, cursor, limit=3)
        got += [i.key for i in page.items]
        if not page.truncated:
            break
        cursor = page.next_after
    assert got == want


def test_local_key_conflicts(config):
    store = open_store(config)
    store.put_bytes("a", b"1")
    with pytest.raises(KeyConflict, match="'a' is an object"):
        store.put_bytes("a/b", b"2")
    store.put_bytes("d/e", b"3")
    with pytest.raises(KeyConflict, match="prefix"):
        store.put_bytes("d", b"4")
    assert store.get_bytes("a") == b"1" and store.get_bytes("d/e") == b"3"
    assert store.head("d") is None  # a directory is not an object
    with pytest.raises(ObjectNotFound):
        store.get_bytes("d")


def test_local_write_is_atomic_across_a_crash(config, tmp_path):
    """A process killed mid-write leaves the old object and an invisible temp file."""
    store = open_store(config)
    store.put_bytes("obj", b"previous")
    script = f"""
import os
from lakehouse.data.storage import LocalStore
s = LocalStore({str(store.root)!r})
w = s.open_writer("obj")
w.write(b"half of the new")
os._exit(9)  # dies before commit
"""
    rc = subprocess.run([sys.executable, "-c", script], timeout=60).returncode
    assert rc == 9
    assert store.get_bytes("obj") == b"previous"
    leftovers = [p.name for p in store.root.iterdir()]
    assert any(n.startswith(TMP_PREFIX) for n in leftovers)
    assert [i.key for i in store.list().items] == ["obj"]


def test_local_paths_and_uris(config, s3_config):
    local = open_store(config)
    local.put_bytes("datasets/x/y.parquet", b"p")
    assert local.local_path("datasets/x/y.parquet").read_bytes() == b"p"
    assert local.uri("datasets/x/y.parquet") == str(local.root / "datasets/x/y.parquet")
    assert local.uri_prefix("datasets/") == str(local.root) + "/datasets/"
    s3 = open_store(s3_config)
    assert s3.local_path("k") is None
    assert s3.uri("datasets/x/y.parquet") == f"s3://{s3_config.s3.bucket}/datasets/x/y.parquet"


def test_s3_prefix_isolates_keys(s3_config):
    plain = open_store(s3_config)
    scoped = open_store(s3_config.replace("s3", prefix="tenant/"))
    scoped.put_bytes("k", b"v")
    assert [i.key for i in scoped.list().items] == ["k"]
    assert [i.key for i in plain.list().items] == ["tenant/k"]
    assert scoped.uri("k").endswith("/tenant/k")


def test_s3_large_object_uses_multipart(s3_config):
    store = open_store(s3_config)
    data = os.urandom((8 << 20) + 12345)  # over the in-memory spool: the multipart path
    info = store.put_bytes("_vectors/big.lhv", data)
    assert store.head("_vectors/big.lhv").sha256 == info.sha256
    assert store.get_bytes("_vectors/big.lhv") == data


def test_thread_safety(store):
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(8):
                key = f"t{t}/k{i}"
                store.put_bytes(key, f"{t}:{i}".encode())
                assert store.get_bytes(key) == f"{t}:{i}".encode()
                store.put_bytes("shared", f"{t}:{i}".encode())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list(limit=1000).items) == 6 * 8 + 1
    assert store.get_bytes("shared").count(b":") == 1  # one whole write won
