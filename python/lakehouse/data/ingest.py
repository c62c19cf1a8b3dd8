"""CSV -> Parquet for ingestd: schema inference, the schema fingerprint, streaming conversion.

**Two passes over a spooled file.** ADR-010 says a column's type defaults to string on any
ambiguity, which can only be decided after seeing every value of the column; holding a
200 MB CSV in memory to do that is not an option. So ingestd spools the upload to a
temporary file and reads it twice with pyarrow's streaming CSV reader, every column as a
string: pass 1 infers the types (and finds malformed rows before anything is written),
pass 2 casts each batch and appends it to a Parquet file (Snappy). Memory stays at a few
blocks plus one row group, whatever the file size.

**Inference** (per column, over all non-empty values; an empty cell is null in a typed
column and "" in a string column):

=========  ==============================================================================
int64      every value is a decimal integer without a "+" or leading zeros ("007" is an id,
           not 7) that fits in 64 bits
float64    every value is a decimal number (``1``, ``-2.5``, ``.5``, ``1e3``), finite, no "+",
           no leading zeros; a column mixing integers and decimals is float64
bool       every value is ``true`` or ``false`` (any case); ``0``/``1`` stay int64
date32     every value is a valid ``YYYY-MM-DD`` date
string     anything else: mixed kinds, ``NA``/``null`` markers, whitespace, timestamps,
           a column with no value at all
=========  ==============================================================================

**Fingerprint** (contract section 5): SHA-256 over ``name 0x1f type`` per column in header
order, columns joined by ``0x1e`` (no trailing separator: the contract leaves it open),
hex-encoded. Nullability is not part of it. Type names are Apache Arrow's canonical names
as the Go runtime prints them (``int64``, ``float64``, ``bool``, ``date32``, ``utf8``), so a
schema that both runtimes infer alike has the same fingerprint in both.

A malformed CSV raises :class:`CsvError` naming the line (the record number, counting the
header as line 1; it differs from the physical line only after a quoted value that spans
lines).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = [
    "CsvError",
    "IngestResult",
    "Progress",
    "TYPE_NAMES",
    "csv_to_parquet",
    "dataset_key",
    "check_utf8",
    "infer_schema",
    "schema_fingerprint",
]

#: Arrow type -> the name used in fingerprints and in the ``columns`` of answers
TYPE_NAMES: dict[pa.DataType, str] = {
    pa.int64(): "int64",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.date32(): "date32",
    pa.string(): "utf8",
}
ARROW_TYPES: dict[str, pa.DataType] = {v: k for k, v in TYPE_NAMES.items()}

#: bytes the CSV reader parses at a time (one batch). pyarrow reads ahead a few dozen
#: blocks, so this also sets the reader's memory: 1 MiB keeps it near 50 MB, and is no slower
BLOCK_SIZE = 1 << 20
#: rows per Parquet row group (DuckDB reads row groups in parallel; ~122k is its own size)
ROW_GROUP_ROWS = 122_880

_INT_RE = r"^-?(0|[1-9][0-9]*)$"
_FLOAT_RE = r"^-?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

#: progress(phase, rows_so_far, file_size); phase is "infer" or "write"
Progress = Callable[[str, int, int], None]


class CsvError(ValueError):
    """The CSV can't be ingested; ``line`` is the 1-based line (record) when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"CSV line {line}: {message}" if line is not None else message)
        self.line = line


@dataclass(frozen=True)
class IngestResult:
    columns: list[tuple[str, str]]
    schema_fingerprint: str
    row_count: int
    parquet_size: int = 0
    parquet_sha256: str = ""
    arrow_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))

    def columns_json(self) -> list[dict[str, str]]:
        return [{"name": n, "type": t} for n, t in self.columns]


def schema_fingerprint(columns: Sequence[tuple[str, str]]) -> str:
    """SHA-256 hex of ``name 0x1f type`` per column, joined by ``0x1e``, in order."""
    h = hashlib.sha256()
    for i, (name, type_name) in enumerate(columns):
        if i:
            h.update(b"\x1e")
        h.update(name.encode("utf-8"))
        h.update(b"\x1f")
        h.update(type_name.encode("utf-8"))
    return h.hexdigest()


def dataset_key(name: str, fingerprint: str) -> str:
    """``datasets/<name>/<fp>.parquet``, the name URL-escaped as Go's url.PathEscape does."""
    return f"datasets/{urllib.parse.quote(name, safe='$&+:=@')}/{fingerprint}.parquet"


# -- reading ----------------------------------------------------------------------------


class _BadRow:
    """invalid_row_handler that remembers the first malformed row and stops the read."""

    def __init__(self) -> None:
        self.first: tuple[int | None, str] | None = None

    def __call__(self, row: pacsv.InvalidRow) -> str:
        if self.first is None:
            text = row.text if len(row.text) <= 200 else row.text[:200] + "..."
            self.first = (
                row.number,
                f"expected {row.expected_columns} columns, got {row.actual_columns}: {text!r}",
            )
        return "error"


def _header(path: Path) -> list[str]:
    """The column names, checked: none empty, none repeated, no control characters."""
    try:
        # Opening parses the header and the first block; bad rows there are pass 1's job.
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=False),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=lambda row: "skip"
            ),
        )
        names = list(reader.schema.names)
        reader.close()
    except pa.ArrowInvalid as exc:
        if "Empty CSV" in str(exc):
            raise CsvError("the CSV is empty: it needs a header line", 1) from exc
        raise _explain(path, exc, None) from exc
    except UnicodeDecodeError as exc:  # raised while pyarrow hands the names to Python
        raise CsvError("the header is not valid UTF-8", 1) from exc
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name == "":
            raise CsvError(f"column {i} has an empty name", 1)
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise CsvError(f"column {i} name {name!r} contains a control character", 1)
        if name in seen:
            raise CsvError(f"duplicate column name {name!r} (columns {seen[name]} and {i})", 1)
        seen[name] = i
    return names


def _open_strings(path: Path, names: list[str], bad: _BadRow) -> pacsv.CSVStreamingReader:
    """A streaming reader yielding every column as a non-null string."""
    return pacsv.open_csv(
        path,
        # use_threads=False: pyarrow numbers invalid rows only when reading serially
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=bad),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False
        ),
    )


def check_utf8(path: str | os.PathLike[str]) -> None:
    """CsvError naming the first line that is not UTF-8 (a streaming pass, ~1 GB/s).

    Done before pyarrow reads the file: pyarrow can't report where invalid UTF-8 is, and
    fails inside its invalid-row callback when a malformed row is also not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = max(0, exc.start - pending)
                raise CsvError("the CSV is not valid UTF-8", line + chunk.count(b"\n", 0, at)) from exc
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise CsvError("the CSV is not valid UTF-8 (it ends inside a character)", line) from exc


def _explain(path: Path, exc: Exception, bad: _BadRow | None) -> CsvError:
    if bad is not None and bad.first is not None:
        number, message = bad.first
        return CsvError(message, number)
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError) or "utf8" in text.lower() or "utf-8" in text.lower():
        return CsvError("the CSV is not valid UTF-8")  # check_utf8 normally finds it first
    return CsvError(f"malformed CSV: {text}")


def _batches(path: Path, names: list[str], phase: str, progress: Progress | None):  # type: ignore[no-untyped-def]
    bad = _BadRow()
    size = os.path.getsize(path)
    try:
        reader = _open_strings(path, names, bad)
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            if progress is not None:
                progress(phase, rows, size)
            yield batch
    except (pa.ArrowInvalid, pa.ArrowException, UnicodeDecodeError) as exc:
        raise _explain(path, exc, bad) from exc


# -- inference --------------------------------------------------------------------------


@dataclass
class _ColumnState:
    may_int: bool = True
    may_float: bool = True
    may_bool: bool = True
    may_date: bool = True
    values: int = 0

    def observe(self, arr: pa.Array) -> None:
        values = pc.filter(arr, pc.not_equal(arr, ""))
        if len(values) == 0:
            return
        self.values += len(values)
        if self.may_int:
            self.may_int = _all(pc.match_substring_regex(values, _INT_RE)) and _casts(
                values, pa.int64()
            )
        if self.may_float:
            self.may_float = (
                _all(pc.match_substring_regex(values, _FLOAT_RE))
                and _casts(values, pa.float64())
                and _all(pc.is_finite(pc.cast(values, pa.float64())))
            )
        if self.may_bool:
            self.may_bool = _all(pc.is_in(pc.utf8_lower(values), pa.array(["true", "false"])))
        if self.may_date:
            self.may_date = _all(pc.match_substring_regex(values, _DATE_RE)) and _casts(
                values, pa.date32()
            )

    def decide(self) -> pa.DataType:
        if self.values == 0:
            return pa.string()  # no evidence at all: ambiguous
        if self.may_int:
            return pa.int64()
        if self.may_float:
            return pa.float64()
        if self.may_bool:
            return pa.bool_()
        if self.may_date:
            return pa.date32()
        return pa.string()


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(mask).as_py())


def _casts(values: pa.Array, type_: pa.DataType) -> bool:
    try:
        pc.cast(values, type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def infer_schema(path: str | os.PathLike[str], progress: Progress | None = None) -> pa.Schema:
    """Pass 1: read the whole CSV (streaming) and decide each column's type."""
    path = Path(path)
    check_utf8(path)
    names = _header(path)
    states = [_ColumnState() for _ in names]
    for batch in _batches(path, names, "infer", progress):
        for state, column in zip(states, batch.columns, strict=True):
            state.observe(column)
    return pa.schema([pa.field(n, s.decide()) for n, s in zip(names, states, strict=True)])


# -- conversion -------------------------------------------------------------------------


def _convert(column: pa.Array, type_: pa.DataType) -> pa.Array:
    if type_ == pa.string():
        return column
    empty = pc.equal(column, "")
    if type_ == pa.bool_():
        typed = pc.equal(pc.utf8_lower(column), "true")
    else:
        typed = pc.cast(pc.if_else(empty, pa.scalar(None, pa.string()), column), type_)
        return typed
    return pc.if_else(empty, pa.scalar(None, pa.bool_()), typed)


def csv_to_parquet(
    csv_path: str | os.PathLike[str],
    parquet_path: str | os.PathLike[str],
    progress: Progress | None = None,
) -> IngestResult:
    """Infer (pass 1), then stream the CSV into a Snappy Parquet file (pass 2).

    CsvError for a malformed CSV (raised by pass 1, before anything is written).
    """
    csv_path = Path(csv_path)
    schema = infer_schema(csv_path, progress)
    names = schema.names
    rows = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    hasher = hashlib.sha256()
    with pq.ParquetWriter(parquet_path, schema, compression="snappy") as writer:

        def flush() -> None:
            nonlocal pending, pending_rows
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema))
                pending, pending_rows = [], 0

        for batch in _batches(csv_path, names, "write", progress):
            arrays = [
                _convert(col, f.type) for col, f in zip(batch.columns, schema, strict=True)
            ]
            pending.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            pending_rows += batch.num_rows
            rows += batch.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                flush()
        flush()
    with open(parquet_path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    columns = [(f.name, TYPE_NAMES[f.type]) for f in schema]
    return IngestResult(
        columns=columns,
        schema_fingerprint=schema_fingerprint(columns),
        row_count=rows,
        parquet_size=os.path.getsize(parquet_path),
        parquet_sha256=hasher.hexdigest(),
        arrow_schema=schema,
    )
