"""queryd: the /sql shape, views from catalogd, read-only enforcement (every refused class),
the timeout, and the end-to-end path gen-roster -> ingest -> SQL on local disk and on S3."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter

import orjson
import pytest
from data_stack import start_data_stack
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.data.query import (
    QueryEngine,
    QueryFailed,
    QueryRefused,
    check_read_only,
    encode_result,
)
from lakehouse.data.storage import open_store
from lakehouse.roster import iter_roster, write_roster


def _roster_csv(n: int, seed: int = 1) -> bytes:
    buf = io.StringIO()
    write_roster(buf, n, seed)
    return buf.getvalue().encode()


@pytest.fixture
async def local_stack(aiohttp_server, config):
    s = await start_data_stack(aiohttp_server, config, refresh_every=3600.0)
    yield s
    await s.session.close()


async def _sql(stack, sql: str):
    async with stack.session.post(stack.config.base_url("queryd") + "/sql", data=orjson.dumps({"sql": sql})) as r:
        return r.status, await r.json()


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_end_to_end_roster_group_by_role(request, aiohttp_server, config, backend):
    cfg = request.getfixturevalue("s3_config") if backend == "s3" else config
    # a long refresh interval: the view must appear through the catalog-miss refresh
    stack = await start_data_stack(aiohttp_server, cfg, refresh_every=3600.0)
    try:
        answer = await stack.ingest.ingest("workers", _roster_csv(10_000))
        assert answer["row_count"] == 10_000
        if backend == "s3":
            assert open_store(stack.config).uri(answer["key"]).startswith("s3://")
        result = await stack.query.sql("SELECT role, count(*) AS n FROM workers GROUP BY role ORDER BY role")
        expected = Counter(row[2] for row in iter_roster(10_000, 1))
        assert result["columns"] == [{"name": "role", "type": "VARCHAR"}, {"name": "n", "type": "BIGINT"}]
        assert {role: n for role, n in result["rows"]} == dict(expected)
        assert result["row_count"] == len(expected) and sum(expected.values()) == 10_000
        assert result["elapsed_ms"] >= 0
        # typed columns made it through: numbers are numbers
        rec = await stack.query.records("SELECT * FROM workers WHERE worker_id = 'w-00042'")
        first = next(r for i, r in enumerate(iter_roster(42, 1), 1) if i == 42)
        assert rec == [dict(zip([c for c in rec[0]], first, strict=True))]
        agg = await stack.query.sql("SELECT avg(rating) AS r, max(years_experience) AS y FROM workers")
        assert [c["type"] for c in agg["columns"]] == ["DOUBLE", "BIGINT"]
    finally:
        await stack.session.close()


async def test_answer_shape_and_types(local_stack):
    status, body = await _sql(
        local_stack,
        "SELECT 1 AS id, 'x' AS s, 1.5::DECIMAL(18,3) AS d, 'ab'::BLOB AS b, "
        "170141183460469231731687303715884105727::HUGEINT AS h, sum(2) AS s2, "
        "DATE '2024-01-02' AS day, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS ts, "
        "[1, 2] AS l, {'k': 1} AS st, INTERVAL 1 DAY AS i, NULL AS n",
    )
    assert status == 200
    assert set(body) == {"columns", "rows", "row_count", "elapsed_ms"}
    assert [c["type"] for c in body["columns"]][:6] == ["INTEGER", "VARCHAR", "DECIMAL(18,3)", "BLOB", "HUGEINT", "HUGEINT"]
    row = body["rows"][0]
    assert row[:6] == [1, "x", 1.5, "ab", "170141183460469231731687303715884105727", 2]
    assert row[6] == "2024-01-02" and row[7].startswith("2024-01-02T03:04:05")
    assert row[8:10] == [[1, 2], {"k": 1}] and row[11] is None
    assert body["row_count"] == 1


# -- read-only enforcement -----------------------------------------------------------------

REFUSED = {
    "INSERT INTO workers VALUES (1)": "INSERT",
    "UPDATE workers SET name = 'x'": "UPDATE",
    "DELETE FROM workers": "DELETE",
    "CREATE TABLE t AS SELECT 1": "CREATE",
    "CREATE OR REPLACE VIEW workers AS SELECT 1": "CREATE",
    "DROP VIEW workers": "DROP",
    "ALTER VIEW workers RENAME TO w2": "ALTER",
    "COPY (SELECT 1) TO '/tmp/lakehouse-out.csv'": "COPY",
    "ATTACH '/tmp/lakehouse-x.db' AS x": "ATTACH",
    "DETACH x": "DETACH",
    "INSTALL httpfs": "INSTALL/LOAD",
    "LOAD httpfs": "INSTALL/LOAD",
    "SET threads = 1": "SET",
    "RESET threads": "SET",
    "USE memory": "SET",
    "PRAGMA enable_profiling": "PRAGMA",
    "PRAGMA threads=1": "PRAGMA",
    # DuckDB rewrites these three into SELECTs; docs/data.md says PRAGMA is refused (issue 17)
    "PRAGMA show_tables": "PRAGMA",
    "PRAGMA database_list": "PRAGMA",
    "-- a comment first\n/* and another */ pragma functions": "PRAGMA",
    # settings reveal host paths (secret_directory, temp_directory)
    "SELECT current_setting('secret_directory')": "current_setting",
    "SELECT upper(current_setting('temp_directory'))": "current_setting",
    # nested scalar subqueries: DuckDB's planner takes exponential time and ignores interrupt()
    "SELECT " + "(SELECT " * 30 + "1" + ")" * 30: "at most 16",
    "PRAGMA version": "PRAGMA",
    "CALL pragma_version()": "CALL",
    "EXPORT DATABASE '/tmp/lakehouse-export'": "EXPORT",
    # parsing IMPORT reads <dir>/schema.sql: the locked connection refuses even that
    "IMPORT DATABASE '/tmp'": "Permission",
    "BEGIN TRANSACTION": "TRANSACTION",
    "PREPARE p AS SELECT 1": "PREPARE",
    "EXPLAIN SELECT 1": "EXPLAIN",
    "SELECT 1; SELECT 2": "one statement",
    "SELECT 1; DROP VIEW workers": "one statement",
    "SELECT * FROM read_csv('/etc/passwd')": "read_csv",
    "SELECT * FROM read_csv_auto('/etc/passwd')": "read_csv_auto",
    "SELECT * FROM read_text('/etc/passwd')": "read_text",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')": "read_parquet",
    "SELECT * FROM read_json('http://127.0.0.1:9/x.json')": "read_json",
    "SELECT * FROM glob('/*')": "glob",
    "SELECT * FROM query('DROP VIEW workers')": "query",
    "SELECT * FROM duckdb_secrets()": "duckdb_secrets",
    "SELECT * FROM duckdb_settings()": "duckdb_settings",
    "SELECT * FROM workers w JOIN read_csv('/etc/passwd') p ON true": "read_csv",
    "SELECT (SELECT count(*) FROM read_text('/etc/hostname'))": "read_text",
    "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x": "read_csv",
    "SUMMARIZE SELECT * FROM read_csv('/etc/passwd')": "read_csv",
    # replacement scans: refused by the locked database itself (external access off)
    "SELECT * FROM '/etc/passwd'": "",
    "SELECT * FROM 'https://example.com/data.csv'": "",
    "SELECT * FROM 's3://some-other-bucket/x.parquet'": "",
}


@pytest.mark.parametrize("sql", list(REFUSED))
async def test_refused_statements(local_stack, sql):
    await local_stack.ingest.ingest("workers", _roster_csv(50))
    status, body = await _sql(local_stack, sql)
    assert status == 400, body
    assert REFUSED[sql] in body["error"]["message"]
    # nothing changed: the view is still there and answers
    assert (await local_stack.query.sql("SELECT count(*) FROM workers"))["rows"] == [[50]]


def test_the_database_lock_holds_even_without_the_statement_check(config):
    """Layer 2 alone: DuckDB refuses files, URLs, settings and extensions by itself."""
    engine = QueryEngine(open_store(config))
    cur = engine._db.cursor()
    for sql in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM 'https://example.com/x.csv'",
        "COPY (SELECT 1) TO '/tmp/lakehouse-lock-test.csv'",
        "ATTACH '/tmp/lakehouse-lock-test.db'",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "LOAD httpfs",
    ):
        with pytest.raises(Exception) as exc:  # noqa: PT011 - any DuckDB refusal
            cur.execute(sql)
        assert "disabled" in str(exc.value) or "locked" in str(exc.value) or "Permission" in str(exc.value), sql
    engine.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "VALUES (1), (2)",
        "FROM range(3)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT unnest([1, 2])",
        "SELECT table_name FROM information_schema.tables",
        "SELECT * FROM duckdb_views()",
        "SHOW TABLES",
        "DESCRIBE SELECT 1 AS x",
        "SELECT 1 UNION ALL SELECT 2",
    ],
)
def test_read_only_queries_pass_the_check(config, sql):
    engine = QueryEngine(open_store(config))
    check_read_only(sql, engine._db.cursor())
    engine.execute(sql)
    engine.close()


def test_check_refuses_empty(config):
    engine = QueryEngine(open_store(config))
    for sql in ("", "   ", "-- just a comment"):
        with pytest.raises(QueryRefused):
            check_read_only(sql, engine._db.cursor())


# -- request errors, timeout, limits --------------------------------------------------------


async def test_request_errors(local_stack):
    url = local_stack.config.base_url("queryd") + "/sql"
    for body, fragment in [
        (b'{"q": "SELECT 1"}', "unknown field 'q'"),
        (b'{"sql": ""}', "empty"),
        (b'{"sql": "   "}', "empty"),
        (b"{}", "sql"),
        (b"not json", "malformed"),
        (b'{"sql": 1}', "sql: expected a string"),
        (b'{"sql": "SELEC 1"}', "SQL syntax error:"),
        (b'{"sql": "SELECT * FROM nope"}', "unknown table 'nope': queryd's tables are the cataloged datasets"),
        (b'{"sql": "SELECT 1/0::INTEGER + \'a\'"}', ""),
    ]:
        async with local_stack.session.post(url, data=body) as r:
            assert r.status == 400, body
            assert fragment.lower() in (await r.json())["error"]["message"].lower(), body


async def test_timeout_interrupts(aiohttp_server, config):
    stack = await start_data_stack(aiohttp_server, config, query_timeout=0.5)
    try:
        status, body = await _sql(stack, "SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = -1")
        assert status == 408 and "time limit" in body["error"]["message"]
        status, body = await _sql(stack, "SELECT 42")  # the engine is fine afterwards
        assert status == 200 and body["rows"] == [[42]]
    finally:
        await stack.session.close()


async def test_row_cap(aiohttp_server, config):
    stack = await start_data_stack(aiohttp_server, config, max_rows=100)
    try:
        assert (await _sql(stack, "SELECT * FROM range(100)"))[0] == 200
        status, body = await _sql(stack, "SELECT * FROM range(101)")
        assert status == 400 and "more than 100 rows" in body["error"]["message"]
    finally:
        await stack.session.close()


async def test_views_follow_the_catalog(aiohttp_server, config):
    stack = await start_data_stack(aiohttp_server, config, refresh_every=0.2)
    try:
        await stack.ingest.ingest("a", b"x\n1\n2\n")
        await stack.ingest.ingest("b b", b"y\nhello\n")
        assert (await stack.query.sql("SELECT sum(x) FROM a"))["rows"] == [[3]]
        assert (await stack.query.sql('SELECT y FROM "b b"'))["rows"] == [["hello"]]
        # a same-schema re-ingest replaces the data behind the view
        await stack.ingest.ingest("a", b"x\n10\n20\n30\n")
        assert (await stack.query.sql("SELECT sum(x) FROM a"))["rows"] == [[60]]
        # a removed manifest: its view is dropped by the periodic refresh
        assert await stack.catalog.delete_manifest("a") is True
        for _ in range(50):
            await asyncio.sleep(0.1)
            status, body = await _sql(stack, "SELECT * FROM a")
            if status == 400:
                break
        assert status == 400 and "a" in body["error"]["message"]
        assert (await stack.query.sql('SELECT y FROM "b b"'))["rows"] == [["hello"]]
    finally:
        await stack.session.close()


def test_sync_views_reports_per_view_errors(config):
    store = open_store(config)
    store.put_bytes("datasets/good/x.parquet", _parquet_bytes())
    store.put_bytes("_catalog/outside.parquet", _parquet_bytes())
    engine = QueryEngine(store)
    manifests = [
        {"name": "good", "key": "datasets/good/x.parquet", "updated_at": "1"},
        {"name": "missing", "key": "datasets/missing/x.parquet", "updated_at": "1"},
        {"name": "outside", "key": "_catalog/outside.parquet", "updated_at": "1"},
        {"name": "nokey", "key": "", "updated_at": "1"},
    ]
    report = engine.sync_views(manifests)
    assert report.created == ["good"] and set(report.errors) == {"missing", "outside"}
    again = engine.sync_views(manifests)
    assert again.created == [] and again.unchanged == 1  # unchanged updated_at: skipped
    dropped = engine.sync_views([])
    assert dropped.dropped == ["good"]
    engine.close()


def _parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"v": [1, 2]}), buf)
    return buf.getvalue()


def test_credentials_are_redacted(s3_config):
    engine = QueryEngine(open_store(s3_config), s3=s3_config.s3)
    assert engine.redact("key test and secret test") == "key *** and secret ***"
    engine.close()


def test_encode_result_falls_back_for_odd_values(config):
    engine = QueryEngine(open_store(config))
    result = engine.execute("SELECT 'a'::BLOB AS b, 2.50::DECIMAL(4,2) AS d")
    assert orjson.loads(encode_result(result))["rows"] == [["a", 2.5]]
    engine.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from lakehouse.config import load_config

    cfg = load_config(env={}, data_dir=str(tmp_path_factory.mktemp("engine")))
    e = QueryEngine(open_store(cfg))
    yield e
    e.close()


@settings(max_examples=60)
@given(st.text(max_size=60))
def test_no_sql_text_produces_an_unexpected_error(engine, text):
    """Property: any text is answered, refused or failed cleanly, never with a crash."""
    from lakehouse.data.query import QueryTimeout, ResultTooLarge

    with contextlib.suppress(QueryRefused, QueryFailed, QueryTimeout, ResultTooLarge):
        engine.execute(text, timeout=2.0)


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_names_needing_escapes(request, aiohttp_server, config, backend):
    """A name with a quote and a space: URL-escaped in the key, quoted as a view name."""
    cfg = request.getfixturevalue("s3_config") if backend == "s3" else config
    stack = await start_data_stack(aiohttp_server, cfg, refresh_every=3600.0)
    try:
        answer = await stack.ingest.ingest("o'brien \"crew\"", b"x\n1\n2\n")
        assert answer["key"].startswith("datasets/o%27brien%20%22crew%22/")
        result = await stack.query.sql('SELECT sum(x) AS s FROM "o\'brien ""crew"""')
        assert result["rows"] == [[3]]
    finally:
        await stack.session.close()


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT 'infinity'::TIMESTAMP AS t", "t"),
        ("SELECT 1 AS a, '-infinity'::DATE AS d", "d"),
        ("SELECT '294247-01-01'::DATE AS big", "big"),
        ("SELECT 'infinity'::TIMESTAMP_S AS s", "s"),
        ("SELECT '-infinity'::TIMESTAMP_MS AS ms", "ms"),
        ("SELECT 'infinity'::TIMESTAMP_NS AS ns", "ns"),
        ("SELECT 'infinity'::TIMESTAMPTZ AS tz", "tz"),
    ],
)
def test_values_python_cannot_hold_are_a_400_naming_the_column(config, sql, column):
    engine = QueryEngine(open_store(config))
    with pytest.raises(QueryFailed) as info:
        engine.execute(sql)
    assert f"column {column!r}" in str(info.value) and "VARCHAR" in str(info.value)
    # and what can be returned is: the extremes Python holds, and the same value as text
    assert engine.execute("SELECT 'infinity'::TIMESTAMP::VARCHAR AS t").rows == [("infinity",)]
    assert engine.execute("SELECT '9999-12-31'::DATE AS d").row_count == 1
    engine.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "[" * 100 + "1" + "]" * 100,  # a 100-deep list type
        "SELECT " + "abs(" * 900 + "1" + ")" * 900,  # a tree too deep to analyse
        "SELECT " + "(" * 500 + "1" + ")" * 500,
        "SELECT " + "+".join(["1"] * 3000),
    ],
)
async def test_deep_queries_are_400_not_500(local_stack, sql):
    status, body = await _sql(local_stack, sql)
    assert status in (200, 400), body
    if status == 400:
        assert body["error"]["code"] == "bad_request"


async def test_unknown_table_names_our_datasets_not_duckdbs_catalog(local_stack):
    await local_stack.ingest.ingest("workers", _roster_csv(5))
    status, body = await _sql(local_stack, "SELECT * FROM worker")
    assert status == 400
    message = body["error"]["message"]
    assert "unknown table 'worker'" in message and "workers" in message
    assert "duckdb_" not in message and "pg_" not in message
    # a CTE is not an unknown table; an unknown column keeps the engine's explanation
    status, body = await _sql(local_stack, "WITH w AS (SELECT 1 AS x) SELECT nope FROM w")
    assert status == 400 and "unknown table" not in body["error"]["message"]


async def test_a_query_that_ignores_its_interrupt_still_gets_its_408(aiohttp_client, config, monkeypatch):
    """DuckDB does not check for interrupts everywhere (planning): the client is answered at
    the time limit anyway, and the stuck call runs on a daemon thread, so it cannot hold up
    a clean stop."""
    import threading
    import time

    from lakehouse.services import queryd

    monkeypatch.setattr(queryd, "INTERRUPT_GRACE", 0.2)
    client = await aiohttp_client(queryd.create_app(config.replace("queryd", query_timeout=0.3, refresh_every=60)))
    release = threading.Event()
    seen: list[threading.Thread] = []

    def stuck(sql, timeout=None):
        seen.append(threading.current_thread())
        release.wait(10)

    monkeypatch.setattr(client.server.app[queryd.ENGINE], "execute", stuck)
    try:
        started = time.monotonic()
        r = await client.post("/sql", json={"sql": "SELECT 1"})
        assert r.status == 408 and "time limit" in (await r.json())["error"]["message"]
        assert time.monotonic() - started < 3
        assert seen and seen[0].daemon
    finally:
        release.set()
