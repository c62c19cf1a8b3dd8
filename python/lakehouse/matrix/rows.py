"""Source rows -> corpus items: the one place a row becomes ``(id, text, metadata)``.

Both corpus builds use it: matrixd's in-process build (:mod:`.corpus`, embedding through
embedd) and the Ray Data build (:mod:`lakehouse.scale.pipeline`, embedding on a cluster), so
the same rows give the same ids, texts and metadata whichever engine embeds them.

- :class:`RowShape`: which column is the id, how the text is made (a template with
  ``{column}`` placeholders, or the listed columns as ``column: value`` lines) and which
  columns are kept as metadata (None: the whole row). A row without an id or whose text is
  empty (or only blanks) is skipped.
- :func:`chunk_rows`: one page of rows -> the batches (:class:`Chunk`) that are embedded and
  added together, numbered in order, plus the count of skipped rows.
- :class:`Embedded` / :class:`EmbedFailed`: what embedding one chunk gave.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

__all__ = [
    "Chunk",
    "EmbedFailed",
    "Embedded",
    "RowShape",
    "chunk_rows",
    "render_template",
    "template_fields",
    "text_value",
]

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def template_fields(template: str) -> list[str]:
    """The column names a template uses; ValueError for a malformed template.

    Only plain names are allowed in braces (no attribute access, indexing or format
    specs: a template is data from a client, not code)."""
    names: list[str] = []
    for m in _FIELD.finditer(template):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        if token in ("{", "}"):
            raise ValueError(f"text_template: unmatched {token!r} at {m.start()} (write {token * 2})")
        name = m.group(1).strip()
        if not _NAME.match(name):
            raise ValueError(f"text_template: {{{m.group(1)}}} is not a column name")
        if name not in names:
            names.append(name)
    return names


def text_value(value: Any) -> str:
    """A column value as text: None is empty, booleans are true/false, numbers as Python
    prints them, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def render_template(template: str, row: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return text_value(row.get(m.group(1).strip()))

    return _FIELD.sub(sub, template)


def _columns_text(columns: Sequence[str], row: Mapping[str, Any]) -> str:
    lines = []
    for c in columns:
        value = text_value(row.get(c)).strip()
        if value:
            lines.append(f"{c}: {value}")
    return "\n".join(lines)


@dataclass(frozen=True)
class RowShape:
    """How a source row becomes a corpus item (see the module docstring). Build it with
    :meth:`of`, which checks it (ValueError)."""

    id_column: str
    text_template: str = ""
    text_columns: tuple[str, ...] = ()
    #: None: the whole row is the metadata
    metadata_columns: tuple[str, ...] | None = None
    #: the columns the text uses (the template's, or text_columns)
    fields: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def of(
        cls,
        id_column: str,
        *,
        text_template: str = "",
        text_columns: Sequence[str] = (),
        metadata_columns: Sequence[str] | None = None,
    ) -> RowShape:
        if not id_column:
            raise ValueError("id_column must not be empty")
        if bool(text_template) == bool(text_columns):
            raise ValueError("give exactly one of text_template and text_columns")
        fields = template_fields(text_template) if text_template else list(text_columns)
        if text_template and not fields:
            raise ValueError("text_template uses no column: every row would embed the same text")
        return cls(
            id_column,
            text_template,
            tuple(text_columns),
            None if metadata_columns is None else tuple(metadata_columns),
            tuple(fields),
        )

    def columns(self) -> list[str]:
        """Every column a row must have: the id, the text's, the metadata's (in that order,
        each once)."""
        return list(dict.fromkeys([self.id_column, *self.fields, *(self.metadata_columns or ())]))

    def item(self, row: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
        """``(id, text, metadata)`` of ``row``, or None when it is skipped (no id, or a
        text that is empty or blank)."""
        rid = row.get(self.id_column)
        text = render_template(self.text_template, row) if self.text_template else _columns_text(self.fields, row)
        if rid is None or text_value(rid) == "" or not text.strip():
            return None
        if self.metadata_columns is None:
            meta = dict(row)
        else:
            meta = {c: row.get(c) for c in self.metadata_columns}
        return text_value(rid), text, meta


@dataclass
class Chunk:
    """One batch of items, embedded and added together. ``number`` counts batches from 0
    in source order; ``first_row`` is the index of the batch's first row in the source."""

    number: int
    first_row: int
    ids: list[str]
    texts: list[str]
    metadata: list[dict[str, Any]]

    def report(self) -> dict[str, Any]:
        """The batch as a failed-batch report names it."""
        return {"batch": self.number, "first_row": self.first_row, "rows": len(self.ids)}


def chunk_rows(
    rows: Iterable[Mapping[str, Any]], shape: RowShape, batch: int, *, first_row: int, first_number: int
) -> tuple[list[Chunk], int, int]:
    """One page of source rows (the first at index ``first_row``) as chunks of at most
    ``batch`` items, numbered from ``first_number``; ``(chunks, rows, skipped)``."""
    items: list[tuple[str, str, dict[str, Any]]] = []
    n = skipped = 0
    for row in rows:
        n += 1
        item = shape.item(row)
        if item is None:
            skipped += 1
        else:
            items.append(item)
    chunks = []
    for lo in range(0, len(items), batch):
        part = items[lo : lo + batch]
        chunks.append(
            Chunk(
                first_number + len(chunks),
                first_row + lo,
                [i for i, _, _ in part],
                [t for _, t, _ in part],
                [m for _, _, m in part],
            )
        )
    return chunks, n, skipped


@dataclass(frozen=True)
class Embedded:
    """A chunk's vectors (float32, one row per item) and the model that made them."""

    model: str
    vectors: np.ndarray


@dataclass(frozen=True)
class EmbedFailed:
    """A chunk the embedder refused or failed on: its own message."""

    error: str
