"""catalogd: ADR-020 registration, manifests, listing, persistence through the object store."""

from __future__ import annotations

import io
import uuid

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.data.catalog import (
    DATASET_NAMESPACE,
    MANIFEST_PREFIX,
    Catalog,
    Column,
    FingerprintConflict,
    decode_manifest,
    encode_manifest,
)
from lakehouse.data.storage import LocalStore, open_store
from lakehouse.services.catalogd import create_app

FP = "ab" * 32
FP2 = "cd" * 32


@pytest.fixture(params=["local", "s3"])
def any_config(request, config):
    return request.getfixturevalue("s3_config") if request.param == "s3" else config


def test_dataset_id_is_uuid5_in_the_pinned_namespace(tmp_path):
    assert str(DATASET_NAMESPACE) == "a8f3c1d2-4e5b-5a6c-9d8e-7f0a1b2c3d4e"
    cat = Catalog(LocalStore(tmp_path))
    m, _ = cat.register("workers", FP)
    # a known answer, so a change of namespace or UUID version can't pass unnoticed
    assert m.dataset_id == "4ee908eb-05e4-5c26-a4ad-4ca54bb01062"
    assert uuid.UUID(m.dataset_id).version == 5


async def test_register_rules(aiohttp_client, any_config):
    client = await aiohttp_client(create_app(any_config))
    r = await client.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP, "key": "datasets/workers/x.parquet", "row_count": 3})
    assert r.status == 200
    first = await r.json()
    assert first["existing"] is False
    assert first["dataset_id"] == str(uuid.uuid5(DATASET_NAMESPACE, "workers"))
    assert first["schema_fingerprint"] == FP and first["row_count"] == 3
    assert first["created_at"] == first["updated_at"] and first["updated_at"].endswith("Z")
    # same name + same fingerprint: the same dataset_id, existing, nothing changed
    r = await client.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP})
    again = await r.json()
    assert r.status == 200 and again["existing"] is True
    assert again["dataset_id"] == first["dataset_id"] and again["updated_at"] == first["updated_at"]
    # same fingerprint, new facts (a same-schema re-ingest): updated in place, etag moves
    r = await client.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP, "row_count": 5})
    moved = await r.json()
    assert moved["existing"] is True and moved["row_count"] == 5
    assert moved["dataset_id"] == first["dataset_id"] and moved["updated_at"] > first["updated_at"]
    # different fingerprint: 409, and the manifest is untouched
    r = await client.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP2})
    assert r.status == 409 and (await r.json())["error"]["code"] == "conflict"
    r = await client.get("/catalog/manifest/workers")
    assert (await r.json())["schema_fingerprint"] == FP
    # empty name / fingerprint: 400 with the reference's texts
    r = await client.post("/catalog/register", json={"name": "", "schema_fingerprint": FP})
    assert r.status == 400 and "empty name" in (await r.json())["error"]["message"]
    r = await client.post("/catalog/register", json={"name": "x", "schema_fingerprint": ""})
    assert r.status == 400
    assert (await r.json())["error"]["message"] == "catalogd: empty schema_fingerprint"
    r = await client.post("/catalog/register", json={"name": "x"})
    assert r.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b"{bad json",
        b"",
        b"[]",
        b'{"name": "x", "schema_fingerprint": "f", "nope": 1}',
        b'{"name": 5, "schema_fingerprint": "f"}',
        b'{"name": "x", "schema_fingerprint": "f", "row_count": -1}',
        b'{"name": "x", "schema_fingerprint": "f", "row_count": "3"}',
        b'{"name": "x", "schema_fingerprint": "f", "key": "../etc"}',
        b'{"name": "x", "schema_fingerprint": "f", "columns": [{"name": "a"}]}',
        b'{"name": "a\\nb", "schema_fingerprint": "f"}',
        b'{"name": "..", "schema_fingerprint": "f"}',
    ],
)
async def test_bad_register_bodies_are_400(aiohttp_client, config, body):
    client = await aiohttp_client(create_app(config))
    r = await client.post("/catalog/register", data=body)
    assert r.status == 400, await r.text()
    assert (await (await client.get("/catalog/list")).json())["manifests"] == []


async def test_body_cap(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    r = await client.post("/catalog/register", data=b'{"name": "' + b"x" * (5 << 20) + b'"}')
    assert r.status == 413


async def test_manifest_list_and_delete(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    r = await client.get("/catalog/list")
    assert r.status == 200 and await r.json() == {"manifests": [], "count": 0}
    assert (await client.get("/catalog/manifest/nope")).status == 404
    cols = [{"name": "a", "type": "int64"}, {"name": "b", "type": "utf8"}]
    for name in ("zeta", "alpha", "with space/and slash"):
        r = await client.post("/catalog/register", json={"name": name, "schema_fingerprint": FP, "key": f"datasets/{name.replace(' ', '%20').replace('/', '%2F')}/{FP}.parquet", "columns": cols, "size": 10})
        assert r.status == 200
    listed = (await (await client.get("/catalog/list")).json())["manifests"]
    assert [m["name"] for m in listed] == ["alpha", "with space/and slash", "zeta"]
    r = await client.get("/catalog/manifest/with%20space%2Fand%20slash")
    m = await r.json()
    assert r.status == 200 and m["columns"] == cols and m["size"] == 10
    assert set(m) == {"dataset_id", "name", "schema_fingerprint", "key", "row_count", "size", "columns", "created_at", "updated_at"}
    r = await client.delete("/catalog/manifest/alpha")
    assert r.status == 200 and (await r.json())["deleted"] is True
    assert (await client.delete("/catalog/manifest/alpha")).status == 404
    assert (await client.get("/catalog/manifest/alpha")).status == 404
    # a deleted name can be registered again with another fingerprint
    r = await client.post("/catalog/register", json={"name": "alpha", "schema_fingerprint": FP2})
    assert r.status == 200 and (await r.json())["existing"] is False


async def test_persisted_as_parquet_and_reloaded(aiohttp_client, any_config):
    client = await aiohttp_client(create_app(any_config))
    r = await client.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP, "key": "datasets/workers/a.parquet", "row_count": 10_000, "columns": [{"name": "role", "type": "utf8"}]})
    first = await r.json()
    store = open_store(any_config)
    keys = [i.key for i in store.list(MANIFEST_PREFIX).items]
    assert keys == [f"{MANIFEST_PREFIX}{first['dataset_id']}.parquet"]
    table = pq.read_table(io.BytesIO(store.get_bytes(keys[0])))  # Arrow/Parquet-encoded
    assert table.num_rows == 1 and table.column("name").to_pylist() == ["workers"]
    await client.close()
    # a new catalogd over the same store sees the same manifest
    client2 = await aiohttp_client(create_app(any_config))
    m = await (await client2.get("/catalog/manifest/workers")).json()
    assert {k: m[k] for k in first if k != "existing"} == {k: first[k] for k in first if k != "existing"}
    r = await client2.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP})
    assert (await r.json())["existing"] is True
    r = await client2.post("/catalog/register", json={"name": "workers", "schema_fingerprint": FP2})
    assert r.status == 409


async def test_a_poison_manifest_does_not_block_the_others(aiohttp_client, config):
    store = open_store(config)
    cat = Catalog(store)
    cat.register("good", FP)
    store.put_bytes(f"{MANIFEST_PREFIX}junk.parquet", b"not parquet")
    client = await aiohttp_client(create_app(config))
    names = [m["name"] for m in (await (await client.get("/catalog/list")).json())["manifests"]]
    assert names == ["good"]


def test_failed_persist_changes_nothing(config, monkeypatch):
    from lakehouse.data.storage import StorageError

    store = open_store(config)
    cat = Catalog(store)
    cat.register("a", FP, row_count=1)

    def broken(*args, **kwargs):
        raise StorageError("disk full")

    monkeypatch.setattr(store, "put_bytes", broken)
    with pytest.raises(StorageError):
        cat.register("a", FP, row_count=2)
    with pytest.raises(StorageError):
        cat.register("b", FP)
    assert cat.get("a").row_count == 1 and [m.name for m in cat.list()] == ["a"]


def test_manifest_encoding_round_trip(tmp_path):
    cat = Catalog(LocalStore(tmp_path))
    m, _ = cat.register("rt", FP, key="datasets/rt/x.parquet", row_count=7, size=99, columns=[Column("a", "int64")])
    assert decode_manifest(encode_manifest(m)) == m
    with pytest.raises(ValueError):
        decode_manifest(b"garbage")


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([FP, FP2])), max_size=20))
def test_register_model(tmp_path_factory, ops):
    """Property: the catalog agrees with a dict model under any register sequence."""
    cat = Catalog(LocalStore(tmp_path_factory.mktemp("cat")))
    model: dict[str, str] = {}
    for name, fp in ops:
        if name in model and model[name] != fp:
            with pytest.raises(FingerprintConflict):
                cat.register(name, fp)
            continue
        m, existing = cat.register(name, fp)
        assert existing == (name in model)
        assert m.dataset_id == str(uuid.uuid5(DATASET_NAMESPACE, name))
        model[name] = fp
    assert {m.name: m.schema_fingerprint for m in cat.list()} == model
    reloaded = Catalog(cat.store)
    assert reloaded.load() == []
    assert {m.name: m.schema_fingerprint for m in reloaded.list()} == model


@pytest.mark.parametrize("field", ["row_count", "size"])
@pytest.mark.parametrize("value", [-1, 2**63, 2**64, 10**30])
async def test_counts_outside_int64_are_400_and_nothing_changes(aiohttp_client, config, field, value):
    client = await aiohttp_client(create_app(config))
    body = b'{"name": "w", "schema_fingerprint": "%s", "%s": %d}' % (FP.encode(), field.encode(), value)
    r = await client.post("/catalog/register", data=body)
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]["code"] == "bad_request"
    assert (await (await client.get("/catalog/list")).json())["count"] == 0
    r = await client.post("/catalog/register", json={"name": "w", "schema_fingerprint": FP, field: 2**63 - 1})
    assert r.status == 200 and (await r.json())[field] == 2**63 - 1
