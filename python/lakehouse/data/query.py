"""Read-only SQL over the cataloged Parquet datasets, with DuckDB (queryd's engine).

Every cataloged dataset is a view named after it::

    CREATE OR REPLACE VIEW "workers" AS SELECT * FROM read_parquet('<object location>')

where the location is a local path or ``s3://bucket/key`` (httpfs, loaded from the
``duckdb-ext-httpfs`` package with autoinstall off: nothing is downloaded at run time).

**Read-only, in two independent layers.**

1. Before running anything, the SQL is parsed by DuckDB itself (``extract_statements``):
   exactly one statement, of type SELECT (``SELECT``, ``WITH``, ``VALUES``, ``FROM x``,
   ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``). INSERT / UPDATE / DELETE, CREATE / DROP / ALTER,
   COPY, ATTACH / DETACH, INSTALL / LOAD, SET / RESET / USE / PRAGMA, CALL, EXPORT / IMPORT,
   PREPARE,
   transactions and EXPLAIN are refused. The statement's syntax tree
   (``json_serialize_sql``) is then walked and every table function must be on a short
   allow-list (``range``, ``generate_series``, ``unnest`` and the ``duckdb_*`` catalog
   functions): ``read_csv('/etc/passwd')``, ``read_parquet('https://...')``, ``glob``,
   ``query('...')``, ``pragma_*`` and the like are refused by name.
2. The database itself is locked after the views are set up: ``enable_external_access``
   is false with ``allowed_directories`` = the ``datasets/`` prefix of the store only, and
   ``lock_configuration`` is on. So even SQL that slipped past layer 1 (a replacement scan
   such as ``SELECT * FROM '/etc/passwd'`` or ``'https://host/x.csv'``) can't read a file or
   URL outside the datasets, write anything, load an extension or change a setting.

A query runs on its own cursor in a worker thread and is interrupted (``interrupt()``) when
it passes the time limit. At most ``max_rows`` rows are returned; a larger result is an
error that says so (add a LIMIT), never a silently truncated answer.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa

if TYPE_CHECKING:
    from ..config import S3Config
    from .storage import ObjectStore

__all__ = [
    "QueryEngine",
    "QueryRefused",
    "QueryFailed",
    "QueryTimeout",
    "QueryResult",
    "ResultTooLarge",
    "SyncReport",
    "check_read_only",
    "encode_result",
    "httpfs_extension_dir",
]

log = logging.getLogger("lakehouse.data.query")

#: table functions a query may call (everything else is refused by name)
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "duckdb_tables",
        "duckdb_views",
        "duckdb_columns",
        "duckdb_schemas",
        "duckdb_databases",
        "duckdb_types",
        "duckdb_functions",
        "duckdb_constraints",
        "duckdb_keywords",
    }
)

#: the object-store prefix whose objects SQL may read
DATASETS_PREFIX = "datasets/"


class QueryRefused(ValueError):
    """The SQL is not a read-only query over the catalog (400)."""


class QueryFailed(ValueError):
    """DuckDB rejected or failed the query (400); ``catalog_miss`` for an unknown table."""

    def __init__(self, message: str, catalog_miss: bool = False) -> None:
        super().__init__(message)
        self.catalog_miss = catalog_miss


class ResultTooLarge(ValueError):
    """More rows than one answer may carry (400)."""


class QueryTimeout(Exception):
    """The query ran past its time limit and was interrupted."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict[str, str]]
    rows: list[tuple[Any, ...]]
    elapsed_ms: float

    @property
    def row_count(self) -> int:
        return len(self.rows)


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: dict[str, str] = field(default_factory=dict)


# -- read-only check --------------------------------------------------------------------


#: scalar functions refused: they reveal the host (paths, settings, secrets), not data
REFUSED_FUNCTIONS = frozenset({"current_setting", "getenv", "which_secret"})

#: SELECTs nested in one another (subqueries, CTEs) one statement may hold: DuckDB plans
#: nested scalar subqueries in time exponential in their depth (22 levels: 3 s, 26: 40 s)
#: and cannot interrupt the planner, so depth is bounded before anything runs
MAX_QUERY_NESTING = 16


@dataclass
class _Tree:
    table_functions: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    base_tables: list[str] = field(default_factory=list)
    cte_names: set[str] = field(default_factory=set)
    nesting: int = 0


def _walk(root: Any) -> _Tree:
    """What a ``json_serialize_sql`` tree uses. Iterative: the tree may be deep."""
    out = _Tree()
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "SELECT_NODE":
                depth += 1
                out.nesting = max(out.nesting, depth)
            elif kind == "TABLE_FUNCTION":
                function = node.get("function") or {}
                out.table_functions.append(str(function.get("function_name", "")).lower())
            elif kind == "BASE_TABLE":
                out.base_tables.append(str(node.get("table_name", "")))
            if node.get("class") == "FUNCTION":
                out.functions.append(str(node.get("function_name", "")).lower())
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                out.cte_names.update(str(e.get("key", "")) for e in cte_map.get("map") or [])
            stack.extend((v, depth) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth) for v in node)
    return out


_LEADING_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


def _first_keyword(sql: str) -> str:
    rest = sql[_LEADING_COMMENTS.match(sql).end() :]  # type: ignore[union-attr]
    match = re.match(r"[A-Za-z_]+", rest)
    return match.group(0).upper() if match else ""


def statement_tree(statement_sql: str, conn: duckdb.DuckDBPyConnection) -> _Tree:
    """DuckDB's syntax tree of one statement, summarised; QueryFailed when it cannot say."""
    try:
        tree = orjson.loads(
            conn.execute("SELECT json_serialize_sql(?)", [statement_sql]).fetchone()[0]  # type: ignore[index]
        )
    except orjson.JSONDecodeError as exc:
        raise QueryFailed(
            "the statement nests too deeply to analyse; simplify it (fewer nested expressions)"
        ) from exc
    except (duckdb.Error, TypeError) as exc:
        raise QueryFailed(f"could not analyse the statement: {exc}") from exc
    if tree.get("error"):
        raise QueryFailed(str(tree.get("error_message", "could not analyse the statement")))
    return _walk(tree.get("statements", []))


def check_read_only(sql: str, conn: duckdb.DuckDBPyConnection) -> str:
    """Return the single SELECT statement of ``sql``, or raise QueryRefused / QueryFailed."""
    if not sql.strip():
        raise QueryRefused("empty SQL")
    try:
        # On the locked connection, never the module-level function: parsing IMPORT DATABASE
        # reads files, and only the locked connection refuses that.
        statements = conn.extract_statements(sql)
    except duckdb.ParserException as exc:
        # our prefix, so a client (and a test) can tell a syntax error without DuckDB's words
        raise QueryFailed(f"SQL syntax error: {exc}") from exc
    except duckdb.Error as exc:
        raise QueryFailed(str(exc)) from exc
    if not statements:
        raise QueryRefused("no SQL statement (only comments?)")
    if len(statements) > 1:
        raise QueryRefused(f"one statement per request, got {len(statements)}")
    statement = statements[0]
    if _first_keyword(sql) == "PRAGMA":
        # DuckDB turns some PRAGMAs (show_tables, database_list, functions) into SELECTs
        raise QueryRefused("queryd is read-only: PRAGMA is refused")
    if statement.type != duckdb.StatementType.SELECT:
        kind = statement.type.name
        if kind == "LOAD":
            kind = "INSTALL/LOAD"
        elif kind == "SET":
            kind = "SET/RESET/USE/PRAGMA"
        raise QueryRefused(f"queryd is read-only: {kind} statements are refused")
    tree = statement_tree(statement.query, conn)
    if tree.nesting > MAX_QUERY_NESTING:
        raise QueryRefused(
            f"the statement nests {tree.nesting} SELECTs in one another; at most "
            f"{MAX_QUERY_NESTING} are allowed (subqueries and CTEs count)"
        )
    for name in tree.table_functions:
        if name.startswith("pragma_"):
            raise QueryRefused("queryd is read-only: PRAGMA is refused")
        if name not in ALLOWED_TABLE_FUNCTIONS:
            raise QueryRefused(
                f"table function {name}() is not allowed: queryd reads the cataloged datasets, "
                "which are views (SELECT ... FROM <dataset name>)"
            )
    for name in tree.functions:
        if name in REFUSED_FUNCTIONS:
            raise QueryRefused(f"function {name}() is refused: it reads the server's settings, not data")
    return statement.query


# -- JSON -------------------------------------------------------------------------------

_INT64 = (-(1 << 63), (1 << 64) - 1)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            as_int = int(value)
            # HUGEINT arrives as DECIMAL(38,0): an int while JSON can carry it exactly
            return as_int if _INT64[0] <= as_int <= _INT64[1] else str(as_int)
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        # the reference converts []byte to strings so VARCHAR-ish values read as text
        return bytes(value).decode("utf-8", "replace")
    if hasattr(value, "months") and hasattr(value, "nanoseconds"):  # an INTERVAL
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    return str(value)


def encode_result(result: QueryResult) -> bytes:
    """The /sql answer: ``{columns, rows, row_count, elapsed_ms}`` as JSON bytes."""
    return orjson.dumps(
        {
            "columns": result.columns,
            "rows": result.rows,
            "row_count": result.row_count,
            "elapsed_ms": round(result.elapsed_ms, 3),
        },
        default=_json_default,
        option=orjson.OPT_NON_STR_KEYS,
    )


class UnrepresentableValue(QueryFailed):
    """A result value JSON (through Python) cannot carry, named by its column (400)."""


def _column_values(column: pa.ChunkedArray | pa.Array, described: dict[str, str]) -> list[Any]:
    """A result column as Python values; UnrepresentableValue naming the column when a value
    does not fit Python's types (DuckDB's infinite dates and timestamps, years past 9999)."""
    try:
        return column.to_pylist()
    except (OverflowError, ValueError) as exc:
        raise UnrepresentableValue(
            f"column {described['name']!r} ({described['type']}) holds a value outside what "
            "queryd can return (an infinite date or timestamp, or a year past 9999); "
            "cast it to VARCHAR to read it as text"
        ) from exc


# -- the engine -------------------------------------------------------------------------


def httpfs_extension_dir() -> Path | None:
    """The extension directory of the ``duckdb-ext-httpfs`` package, if installed."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "extensions"
        if candidate.is_dir():
            return candidate
    return None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class QueryEngine:
    """An in-memory DuckDB with one view per dataset, locked read-only. Thread-safe."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        s3: S3Config | None = None,
        temp_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        max_rows: int = 100_000,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.max_rows = max_rows
        self._secrets = [s for s in ((s3.access_key, s3.secret_key) if s3 else ()) if s]
        config: dict[str, Any] = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        if store.backend == "s3":
            if s3 is None:
                raise ValueError("an S3 store needs its [s3] settings (s3=config.s3)")
            ext = httpfs_extension_dir()
            if ext is None:
                raise RuntimeError(
                    "queryd over S3 needs the duckdb-ext-httpfs package (pinned with duckdb)"
                )
            config["extension_directory"] = str(ext)
        self._db = duckdb.connect(":memory:", config=config)
        if temp_dir is not None:
            Path(temp_dir).mkdir(parents=True, exist_ok=True)
            self._db.execute(f"SET temp_directory = {_literal(str(temp_dir))}")
        if s3 is not None and store.backend == "s3":
            self._db.execute("LOAD httpfs")
            self._db.execute(self._secret_sql(s3))
        allowed = store.uri_prefix(DATASETS_PREFIX)
        self._db.execute(f"SET allowed_directories = [{_literal(allowed)}]")
        self._db.execute("SET enable_external_access = false")
        self._db.execute("SET lock_configuration = true")
        self._views: dict[str, str] = {}  # view name -> manifest updated_at (the etag)
        self._ddl = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()  # cursors of running queries

    @staticmethod
    def _secret_sql(s3: S3Config) -> str:
        parts = ["TYPE S3", f"REGION {_literal(s3.region or 'us-east-1')}"]
        key_id = s3.access_key or os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = s3.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if key_id:
            parts.append(f"KEY_ID {_literal(key_id)}")
        if secret:
            parts.append(f"SECRET {_literal(secret)}")
        if s3.endpoint:
            scheme, _, rest = s3.endpoint.partition("://")
            parts.append(f"ENDPOINT {_literal(rest.rstrip('/'))}")
            parts.append(f"USE_SSL {'true' if scheme == 'https' else 'false'}")
        parts.append(f"URL_STYLE {_literal('path' if s3.url_style == 'path' else 'vhost')}")
        return f"CREATE OR REPLACE SECRET lakehouse_s3 ({', '.join(parts)})"

    def redact(self, text: str) -> str:
        """``text`` without the configured S3 credentials (reference: redactCreds)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        """Interrupt the queries still running, then close the database."""
        with self._ddl:
            running = list(self._running)
        for cur in running:
            cur.interrupt()
        self._db.close()

    # -- views --------------------------------------------------------------------------

    @property
    def views(self) -> dict[str, str]:
        with self._ddl:
            return dict(self._views)

    def sync_views(self, manifests: list[dict[str, Any]]) -> SyncReport:
        """Make the views match ``manifests`` (catalogd's list): drop pass, then create pass.

        A manifest whose ``updated_at`` is unchanged is skipped; one that fails (missing
        object, key outside ``datasets/``) is reported in ``errors`` without blocking others.
        """
        report = SyncReport()
        wanted = {m["name"]: m for m in manifests if m.get("key")}
        with self._ddl:
            cur = self._db.cursor()
            try:
                for name in sorted(set(self._views) - set(wanted)):
                    try:
                        cur.execute(f"DROP VIEW IF EXISTS {quote_identifier(name)}")
                    except duckdb.Error as exc:
                        report.errors[name] = self.redact(str(exc))
                        continue
                    del self._views[name]
                    report.dropped.append(name)
                for name, m in sorted(wanted.items()):
                    etag = f"{m.get('updated_at', '')}|{m['key']}"
                    if self._views.get(name) == etag:
                        report.unchanged += 1
                        continue
                    try:
                        uri = self.store.uri(m["key"])
                        cur.execute(
                            f"CREATE OR REPLACE VIEW {quote_identifier(name)} AS "
                            f"SELECT * FROM read_parquet({_literal(uri)})"
                        )
                    except (duckdb.Error, ValueError) as exc:
                        report.errors[name] = self.redact(str(exc))
                        continue
                    self._views[name] = etag
                    report.created.append(name)
            finally:
                cur.close()
        return report

    # -- queries ------------------------------------------------------------------------

    def _catalog_message(self, statement: str, cur: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
        """An unknown table named in our words, with the datasets there are (DuckDB's own
        "did you mean" picks from its internal catalog: pg_enum, duckdb_tables...)."""
        try:
            tree = statement_tree(statement, cur)
        except QueryFailed:
            tree = _Tree()
        views = self.views
        unknown = sorted({t for t in tree.base_tables if t not in views and t not in tree.cte_names})
        if not unknown:
            return self.redact(str(exc))
        names = ", ".join(sorted(views)) or "none yet"
        which = "table" if len(unknown) == 1 else "tables"
        return (
            f"unknown {which} {', '.join(map(repr, unknown))}: queryd's tables are the cataloged "
            f"datasets ({names})"
        )

    def execute(self, sql: str, timeout: float | None = None) -> QueryResult:
        """Run one read-only query; QueryRefused, QueryFailed, ResultTooLarge, QueryTimeout."""
        limit = self.timeout if timeout is None else timeout
        cur = self._db.cursor()
        with self._ddl:
            self._running.add(cur)
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            cur.interrupt()

        timer = threading.Timer(limit, interrupt) if limit and limit > 0 else None
        started = time.perf_counter()
        try:
            if timer is not None:
                timer.daemon = True
                timer.start()
            statement = check_read_only(sql, cur)
            try:
                cur.execute(statement)
                columns = [
                    {"name": str(d[0]), "type": str(d[1])} for d in (cur.description or [])
                ]
                rows: list[tuple[Any, ...]] = []
                reader = cur.fetch_record_batch(min(self.max_rows + 1, 65_536))
                for batch in reader:
                    if len(rows) + batch.num_rows > self.max_rows:
                        raise ResultTooLarge(
                            f"the result has more than {self.max_rows} rows; "
                            "add a LIMIT or aggregate"
                        )
                    rows.extend(zip(*(_column_values(c, d) for c, d in zip(batch.columns, columns, strict=True)), strict=True))
            except pa.ArrowException as exc:
                raise QueryFailed(
                    "the result cannot be returned: its column types nest too deeply "
                    "(simplify the nested LIST / STRUCT values)"
                ) from exc
            except duckdb.InterruptException as exc:
                if fired.is_set():
                    raise QueryTimeout(f"query exceeded the {limit:g} s time limit") from exc
                raise QueryFailed("query was interrupted") from exc
            except duckdb.Error as exc:
                if fired.is_set():
                    raise QueryTimeout(f"query exceeded the {limit:g} s time limit") from exc
                if isinstance(exc, duckdb.CatalogException):
                    raise QueryFailed(self._catalog_message(statement, cur, exc), catalog_miss=True) from exc
                raise QueryFailed(self.redact(str(exc))) from exc
        finally:
            if timer is not None:
                timer.cancel()
            with self._ddl:
                self._running.discard(cur)
            cur.close()
        return QueryResult(columns, rows, (time.perf_counter() - started) * 1000.0)
