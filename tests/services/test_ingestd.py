"""ingestd: multipart and raw CSV, inference, fingerprint, content-addressed keys, idempotence,
malformed input (400 naming the line, nothing written), drift (409), caps (413)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_stack import start_data_stack
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.clients.base import UpstreamError
from lakehouse.data.ingest import (
    CsvError,
    csv_to_parquet,
    dataset_key,
    infer_schema,
    schema_fingerprint,
)
from lakehouse.data.storage import open_store
from lakehouse.roster import write_roster
from testkit import free_port

CSV = b"id,name,score,active,day\n1,ann,1.5,true,2024-01-02\n2,bob,2,false,2024-02-29\n3,\"c, d\",,TRUE,\n"
EXPECTED_COLUMNS = [
    {"name": "id", "type": "int64"},
    {"name": "name", "type": "utf8"},
    {"name": "score", "type": "float64"},
    {"name": "active", "type": "bool"},
    {"name": "day", "type": "date32"},
]


@pytest.fixture(params=["local", "s3"])
async def stack(request, aiohttp_server, config):
    cfg = request.getfixturevalue("s3_config") if request.param == "s3" else config
    s = await start_data_stack(aiohttp_server, cfg)
    yield s
    await s.session.close()


@pytest.fixture
async def local_stack(aiohttp_server, config):
    s = await start_data_stack(aiohttp_server, config)
    yield s
    await s.session.close()


def _datasets(config) -> list[str]:
    return [i.key for i in open_store(config).list("datasets/").items]


# -- the fingerprint and inference (library) ------------------------------------------------


def test_fingerprint_bytes():
    cols = [("id", "int64"), ("name", "utf8")]
    expected = hashlib.sha256(b"id\x1fint64\x1ename\x1futf8").hexdigest()
    assert schema_fingerprint(cols) == expected
    assert schema_fingerprint([("a", "utf8")]) == hashlib.sha256(b"a\x1futf8").hexdigest()
    # order matters, and name/type boundaries can't be confused
    assert schema_fingerprint(cols[::-1]) != expected
    assert schema_fingerprint([("ab", "c")]) != schema_fingerprint([("a", "bc")])


def _infer(tmp_path: Path, text: str) -> dict[str, str]:
    p = tmp_path / "in.csv"
    p.write_bytes(text.encode())
    from lakehouse.data.ingest import TYPE_NAMES

    return {f.name: TYPE_NAMES[f.type] for f in infer_schema(p)}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "0"], "int64"),
        (["1", "2.5"], "float64"),
        ([".5", "1e3", "-2.0E-2"], "float64"),
        (["00123", "45"], "utf8"),  # leading zeros: an id, not a number
        (["+5"], "utf8"),
        (["1", "x"], "utf8"),
        (["NA", "1"], "utf8"),  # null markers other than the empty cell are ambiguous
        ([" 5"], "utf8"),
        (["1e999"], "utf8"),  # not finite
        (["nan"], "utf8"),
        (["99999999999999999999"], "float64"),  # too wide for int64, still a number
        (["true", "False", "TRUE"], "bool"),
        (["0", "1"], "int64"),
        (["yes", "no"], "utf8"),
        (["2024-01-02", "1999-12-31"], "date32"),
        (["2024-02-30"], "utf8"),  # not a date
        (["2024-01-02T10:00:00"], "utf8"),
        (["", ""], "utf8"),  # no evidence at all
        (["1", ""], "int64"),  # empty cells are nulls in typed columns
    ],
)
def test_inference_defaults_to_string_on_ambiguity(tmp_path, values, expected):
    text = "c,other\n" + "".join(f"{v},x\n" for v in values)
    assert _infer(tmp_path, text) == {"c": expected, "other": "utf8"}


def test_nullability_is_not_in_the_fingerprint(tmp_path):
    a = csv_to_parquet(_write(tmp_path / "a.csv", "n,s\n1,x\n2,y\n"), tmp_path / "a.parquet")
    b = csv_to_parquet(_write(tmp_path / "b.csv", "n,s\n1,x\n,y\n"), tmp_path / "b.parquet")
    assert a.schema_fingerprint == b.schema_fingerprint
    assert pq.read_table(tmp_path / "b.parquet").column("n").to_pylist() == [1, None]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(alphabet="abc ,\"'\n", max_size=8)),
        min_size=1,
        max_size=30,
    )
)
def test_values_round_trip(tmp_path_factory, rows):
    """Property: ints and arbitrary (quoted) strings come back from Parquet unchanged."""
    d = tmp_path_factory.mktemp("rt")
    buf = io.StringIO()
    import csv

    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["n", "s"])
    w.writerows(rows)
    src = _write(d / "x.csv", buf.getvalue())
    result = csv_to_parquet(src, d / "x.parquet")
    table = pq.read_table(d / "x.parquet")
    assert result.row_count == len(rows)
    assert table.column("n").to_pylist() == [r[0] for r in rows]
    assert table.column("n").type == pa.int64()
    # the alphabet can't spell a number, a bool or a date: always a string column, verbatim
    assert result.columns[1] == ("s", "utf8")
    assert table.column("s").to_pylist() == [r[1] for r in rows]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("a,b,c\n1,2,3\n4,5\n", 3, "expected 3 columns, got 2"),
        ("a,b\n1,2\n3,4\n5,6,7\n", 4, "expected 2 columns, got 3"),
        ("a,b\n1,2\n\xff,3\n", 3, "not valid UTF-8"),
        ("", 1, "empty"),
        ("a,a\n1,2\n", 1, "duplicate column name 'a'"),
        ("a,,c\n1,2,3\n", 1, "column 2 has an empty name"),
    ],
)
def test_malformed_csv_names_the_line(tmp_path, text, line, what):
    src = tmp_path / "bad.csv"
    src.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    with pytest.raises(CsvError) as exc:
        csv_to_parquet(src, tmp_path / "bad.parquet")
    assert exc.value.line == line
    assert f"line {line}" in str(exc.value) and what in str(exc.value)
    assert not (tmp_path / "bad.parquet").exists() or pq.read_metadata(tmp_path / "bad.parquet")


def test_dataset_key_escapes_the_name():
    assert dataset_key("workers", "ff") == "datasets/workers/ff.parquet"
    assert dataset_key("o'brien set/x", "ff") == "datasets/o%27brien%20set%2Fx/ff.parquet"


# -- over HTTP -------------------------------------------------------------------------------


async def test_ingest_multipart_and_raw(stack):
    answer = await stack.ingest.ingest("people", CSV)
    assert set(answer) >= {"dataset_id", "name", "key", "row_count", "schema_fingerprint", "columns", "existing"}
    assert answer["name"] == "people" and answer["row_count"] == 3
    assert answer["columns"] == EXPECTED_COLUMNS and answer["existing"] is False
    fp = schema_fingerprint([(c["name"], c["type"]) for c in EXPECTED_COLUMNS])
    assert answer["schema_fingerprint"] == fp
    assert answer["key"] == f"datasets/people/{fp}.parquet"
    store = open_store(stack.config)
    table = pq.read_table(io.BytesIO(store.get_bytes(answer["key"])))
    assert table.to_pylist()[2] == {"id": 3, "name": "c, d", "score": None, "active": True, "day": None}
    assert pq.read_metadata(io.BytesIO(store.get_bytes(answer["key"]))).row_group(0).column(0).compression == "SNAPPY"
    manifest = await stack.catalog.manifest("people")
    assert manifest["dataset_id"] == answer["dataset_id"] and manifest["key"] == answer["key"]
    assert manifest["row_count"] == 3 and manifest["columns"] == EXPECTED_COLUMNS
    raw = await stack.ingest.ingest("people_raw", CSV, multipart=False)
    assert raw["schema_fingerprint"] == fp and raw["row_count"] == 3


async def test_reingest_is_idempotent(local_stack, tmp_path):
    src = tmp_path / "w.csv"
    with open(src, "w", newline="") as fh:
        write_roster(fh, 500, seed=3)
    first = await local_stack.ingest.ingest("workers", src)
    path = open_store(local_stack.config).local_path(first["key"])
    before = path.stat()
    second = await local_stack.ingest.ingest("workers", src)
    assert second["existing"] is True
    for field in ("dataset_id", "key", "schema_fingerprint", "row_count", "columns"):
        assert second[field] == first[field]
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert len(await local_stack.catalog.list()) == 1
    assert _datasets(local_stack.config) == [first["key"]]


async def test_schema_drift_is_409_and_leaves_nothing(stack):
    first = await stack.ingest.ingest("drift", b"a,b\n1,2\n")
    with pytest.raises(UpstreamError) as exc:
        await stack.ingest.ingest("drift", b"a,b\nx,2\n")  # a is now a string
    assert exc.value.status == 409
    # plain words, no Python reprs of the column lists (issue 14)
    message = exc.value.message
    assert "(a is int64, now utf8)" in message and "registered a int64, b int64; this CSV has a utf8, b int64" in message
    assert "{" not in message and "[" not in message
    assert _datasets(stack.config) == [first["key"]]
    assert (await stack.catalog.manifest("drift"))["schema_fingerprint"] == first["schema_fingerprint"]


async def test_malformed_csv_is_400_and_nothing_written(stack):
    with pytest.raises(UpstreamError) as exc:
        await stack.ingest.ingest("bad", b"a,b,c\n1,2,3\n4,5,6\n7,8\n")
    assert exc.value.status == 400 and "line 4" in exc.value.message
    assert _datasets(stack.config) == []
    assert await stack.catalog.manifest("bad") is None
    assert list(Path(stack.config.data_dir, "tmp", "ingest").iterdir()) == []  # spool cleaned


async def _post(stack, params, data=None, headers=None):
    async with stack.session.post(stack.config.base_url("ingestd") + "/ingest", params=params, data=data, headers=headers) as r:
        return r.status, await r.json()


async def test_request_errors(local_stack):
    status, body = await _post(local_stack, {}, data=b"a\n1\n", headers={"Content-Type": "text/csv"})
    assert status == 400 and '"name"' in body["error"]["message"]
    status, body = await _post(local_stack, {"name": ""}, data=b"a\n1\n", headers={"Content-Type": "text/csv"})
    assert status == 400 and '"name"' in body["error"]["message"]
    for bad in ("..", "a\nb", "x" * 300):
        status, _ = await _post(local_stack, {"name": bad}, data=b"a\n1\n", headers={"Content-Type": "text/csv"})
        assert status == 400, bad
    # wrong multipart field name
    form = aiohttp.FormData()
    form.add_field("upload", b"a\n1\n", filename="x.csv", content_type="text/csv")
    status, body = await _post(local_stack, {"name": "x"}, data=form)
    assert status == 400 and "'file'" in body["error"]["message"]
    # malformed multipart
    status, body = await _post(local_stack, {"name": "x"}, data=b"--nope\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert status == 400
    status, _ = await _post(local_stack, {"name": "x"}, data=b"{}", headers={"Content-Type": "application/json"})
    assert status == 415
    assert _datasets(local_stack.config) == [] and await local_stack.catalog.list() == []


async def test_other_multipart_fields_are_skipped(local_stack):
    form = aiohttp.FormData()
    form.add_field("note", "hello")
    form.add_field("file", b"a,b\n1,2\n", filename="x.csv", content_type="text/csv")
    status, body = await _post(local_stack, {"name": "withnote"}, data=form)
    assert status == 200 and body["row_count"] == 1


async def test_size_cap_is_413(aiohttp_server, config):
    s = await start_data_stack(aiohttp_server, config.replace("ingestd", max_csv_bytes=1000))
    try:
        big = b"a,b\n" + b"1,2\n" * 500
        status, _ = await _post(s, {"name": "big"}, data=big, headers={"Content-Type": "text/csv"})
        assert status == 413

        async def chunked():
            for _ in range(10):
                yield b"1,2\n" * 50

        status, _ = await _post(s, {"name": "big"}, data=chunked(), headers={"Content-Type": "text/csv"})
        assert status == 413
        with pytest.raises(UpstreamError) as exc:
            await s.ingest.ingest("big", big)  # multipart: caught while streaming
        assert exc.value.status == 413
        assert _datasets(s.config) == [] and await s.catalog.list() == []
    finally:
        await s.session.close()


async def test_name_is_escaped_in_the_key(local_stack):
    answer = await local_stack.ingest.ingest("o'brien crew", b"a\n1\n")
    assert answer["key"].startswith("datasets/o%27brien%20crew/")
    assert (await local_stack.catalog.manifest("o'brien crew"))["key"] == answer["key"]


async def test_catalogd_down_is_502_and_nothing_left(aiohttp_server, config):
    from lakehouse.services import ingestd

    cfg = config.replace("ingestd", catalogd_url=f"http://127.0.0.1:{free_port()}")
    server = await aiohttp_server(ingestd.create_app(cfg))
    async with aiohttp.ClientSession() as session, session.post(
        server.make_url("/ingest"), params={"name": "x"}, data=b"a\n1\n", headers={"Content-Type": "text/csv"}
    ) as r:
        assert r.status == 502
    assert _datasets(cfg) == []


# -- streaming at scale (slow) -----------------------------------------------------------------


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_200mb_csv_streams_in_bounded_memory(tmp_path):
    """A ~200 MB CSV through real catalogd + ingestd processes: ingestd's peak RSS barely moves
    from what a 13 MB CSV needed (memory does not follow the file size); the count is exact."""
    block = io.StringIO()
    write_roster(block, 100_000, seed=7)
    header, _, body = block.getvalue().partition("\n")
    src = tmp_path / "big.csv"
    repeats = 15
    with open(src, "w") as fh:
        fh.write(header + "\n")
        for _ in range(repeats):
            fh.write(body)
    size = src.stat().st_size
    assert size > 190e6
    cfg = tmp_path / "lakehouse.toml"
    ports = {"catalogd": free_port(), "ingestd": free_port()}
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[catalogd]\nport = {ports["catalogd"]}\n[ingestd]\nport = {ports["ingestd"]}\n'
    )
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "serve", name, "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("catalogd", "ingestd")
    }
    try:
        async with aiohttp.ClientSession() as session:
            for port in ports.values():
                for _ in range(150):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/health") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
            from lakehouse.clients.ingestd import IngestdClient

            client = IngestdClient(session, f"http://127.0.0.1:{ports['ingestd']}")
            # a 13 MB ingest first: the peak it leaves is the baseline the big one is held to
            small = tmp_path / "small.csv"
            small.write_text(block.getvalue())
            assert (await client.ingest("small", small))["row_count"] == 100_000
            baseline = _peak_rss_mb(procs["ingestd"].pid)
            answer = await client.ingest("big", src)
        assert answer["row_count"] == 100_000 * repeats
        peak = _peak_rss_mb(procs["ingestd"].pid)
        print(f"{size / 1e6:.0f} MB CSV ingested; ingestd peak RSS {peak:.0f} MB (after 13 MB: {baseline:.0f} MB)")
        # 15x the data, (almost) the same memory
        assert peak - baseline < 100, f"peak grew {peak - baseline:.0f} MB for a {size / 1e6:.0f} MB CSV"
        assert peak < 400, f"ingestd peak RSS {peak:.0f} MB for a {size / 1e6:.0f} MB CSV"
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=30)
        os.sync()


async def test_long_ingests_log_progress(local_stack, monkeypatch, caplog):
    from lakehouse.services import ingestd

    monkeypatch.setattr(ingestd, "PROGRESS_EVERY", 0.0)  # every batch is "long enough"
    caplog.set_level("INFO", logger="lakehouse.ingestd")
    big = b"a,b\n" + b"1,hello\n" * 300_000  # 2.4 MB: a few 1 MiB batches per pass
    await local_stack.ingest.ingest("progress", big, multipart=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "lakehouse.ingestd"]
    assert any("1/2 inferring the schema" in m for m in lines)
    assert any("2/2 writing Parquet" in m for m in lines)
    assert any("300000 rows" in m for m in lines)


async def test_no_csv_produces_a_500(local_stack):
    """Fuzz: random small CSV-ish bodies are ingested (200) or refused (400), never a 500."""
    import random

    rng = random.Random(1)
    pieces = [b"a", b"1", b"-2.5", b"true", b",", b"\n", b"\r\n", b'"', b"x y", b"\xff", b"\xc3\xa9", b"", b"2024-01-01", b"007"]
    for i in range(300):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        status, _ = await _post(local_stack, {"name": f"fuzz{i}"}, data=body, headers={"Content-Type": "text/csv"})
        assert status in (200, 400), (body, status)


def test_check_utf8_across_chunk_boundaries(tmp_path):
    from lakehouse.data.ingest import check_utf8

    ok = tmp_path / "ok.csv"
    ok.write_bytes(b"a\n" + b"x" * ((1 << 20) - 3) + "é".encode() + b"\nb\n")  # é straddles 1 MiB
    check_utf8(ok)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a\n" + b"x\n" * (1 << 19) + b"y\n\xffz\n")
    with pytest.raises(CsvError) as exc:
        check_utf8(bad)
    assert exc.value.line == (1 << 19) + 3
    cut = tmp_path / "cut.csv"
    cut.write_bytes(b"a\nb\n\xc3")
    with pytest.raises(CsvError, match="ends inside a character") as exc:
        check_utf8(cut)
    assert exc.value.line == 3
