"""The dataset catalog: manifests by name, ADR-020 idempotent registration, persisted.

ADR-020 (contract section 4): registering a name with the same schema fingerprint again
returns the existing ``dataset_id`` (``existing=True``); a different fingerprint is a
:class:`FingerprintConflict` (409); an empty name or fingerprint is a ValueError (400). The
``dataset_id`` is UUIDv5 of the name in the reference's pinned namespace, so every runtime
issues the same id for the same name.

A re-registration with the same fingerprint may carry new facts (another row count after a
same-schema re-ingest): the manifest is then updated in place and its ``updated_at`` moves
(queryd uses it as an etag); when nothing differs nothing is written.

Manifests are stored through the object store as one-row Parquet files under
``_catalog/manifests/<dataset_id>.parquet`` and reloaded on start. One lock covers lookup,
fingerprint check, storage write and memory update; the write happens before the in-memory
swap, so a failed write changes nothing (candidate-then-swap).
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .storage import ObjectStore, validate_key

__all__ = [
    "DATASET_NAMESPACE",
    "MANIFEST_PREFIX",
    "Catalog",
    "Column",
    "Manifest",
    "FingerprintConflict",
    "ManifestNotFound",
    "dataset_id_for",
    "validate_dataset_name",
]

log = logging.getLogger("lakehouse.data.catalog")

#: contract section 4: "every dataset_id ever issued depends on these bytes"
DATASET_NAMESPACE = uuid.UUID("a8f3c1d2-4e5b-5a6c-9d8e-7f0a1b2c3d4e")
MANIFEST_PREFIX = "_catalog/manifests/"
#: longest dataset name, in characters (names become keys and SQL view names)
MAX_NAME_CHARS = 256
#: the version of the Parquet manifest layout, stored in the file's schema metadata
MANIFEST_FORMAT = "1"

EMPTY_NAME = "catalogd: empty name"
EMPTY_FINGERPRINT = "catalogd: empty schema_fingerprint"


#: the largest row_count or size a manifest can hold (stored as int64)
INT64_MAX = (1 << 63) - 1

class FingerprintConflict(Exception):
    """The name is registered with another schema fingerprint (ADR-020: 409)."""


class ManifestNotFound(KeyError):
    """No manifest under that name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"catalogd: no manifest named {self.name!r}"


def dataset_id_for(name: str) -> str:
    """UUIDv5(DATASET_NAMESPACE, name), the reference's rule."""
    return str(uuid.uuid5(DATASET_NAMESPACE, name))


def validate_dataset_name(name: Any) -> str:
    """Return ``name`` if usable as a dataset name, else raise ValueError saying why."""
    if not isinstance(name, str) or not name:
        raise ValueError(EMPTY_NAME)
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"dataset name is longer than {MAX_NAME_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError("dataset name contains a control character")
    if name.strip() != name:
        raise ValueError("dataset name has leading or trailing whitespace")
    if name in (".", ".."):
        raise ValueError(f"dataset name {name!r} is reserved")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("dataset name is not valid UTF-8") from exc
    return name


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(t: datetime) -> str:
    """RFC 3339, UTC, microseconds: ``2026-05-01T12:00:00.123456Z``."""
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_stamp(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True, slots=True)
class Manifest:
    """One dataset: its id, schema fingerprint, the Parquet object and what we know of it."""

    dataset_id: str
    name: str
    schema_fingerprint: str
    key: str = ""
    row_count: int | None = None
    size: int | None = None
    columns: tuple[Column, ...] = field(default_factory=tuple)
    created_at: str = ""
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "schema_fingerprint": self.schema_fingerprint,
            "key": self.key,
            "row_count": self.row_count,
            "size": self.size,
            "columns": [c.to_json() for c in self.columns],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


# -- the Parquet encoding of a manifest -------------------------------------------------

_SCHEMA = pa.schema(
    [
        pa.field("dataset_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("schema_fingerprint", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("row_count", pa.int64()),
        pa.field("size", pa.int64()),
        pa.field(
            "columns",
            pa.list_(pa.struct([pa.field("name", pa.string()), pa.field("type", pa.string())])),
        ),
        pa.field("created_at", pa.string(), nullable=False),
        pa.field("updated_at", pa.string(), nullable=False),
    ],
    metadata={"lakehouse.manifest_format": MANIFEST_FORMAT},
)


def encode_manifest(m: Manifest) -> bytes:
    """A manifest as a one-row Parquet file."""
    row = m.to_json()
    table = pa.Table.from_pylist([row], schema=_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def decode_manifest(data: bytes) -> Manifest:
    """The inverse of :func:`encode_manifest`; ValueError for anything else."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"not a Parquet manifest: {exc}") from exc
    rows = table.to_pylist()
    if len(rows) != 1:
        raise ValueError(f"a manifest file holds one row, this one {len(rows)}")
    row = rows[0]
    try:
        return Manifest(
            dataset_id=str(row["dataset_id"]),
            name=str(row["name"]),
            schema_fingerprint=str(row["schema_fingerprint"]),
            key=str(row.get("key") or ""),
            row_count=row.get("row_count"),
            size=row.get("size"),
            columns=tuple(Column(c["name"], c["type"]) for c in row.get("columns") or ()),
            created_at=str(row["created_at"]),
            updated_at=str(row["updated_at"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"manifest is missing a field: {exc}") from exc


def manifest_key(dataset_id: str) -> str:
    return f"{MANIFEST_PREFIX}{dataset_id}.parquet"


# -- the catalog ------------------------------------------------------------------------


class Catalog:
    """Manifests by name over an object store. Synchronous and thread-safe."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._by_name: dict[str, Manifest] = {}

    def load(self) -> list[str]:
        """(Re)load every stored manifest; returns the problems met (a bad file is skipped)."""
        loaded: dict[str, Manifest] = {}
        problems: list[str] = []
        for info in self.store.iter_list(MANIFEST_PREFIX):
            if not info.key.endswith(".parquet"):
                continue
            try:
                m = decode_manifest(self.store.get_bytes(info.key))
            except Exception as exc:  # one poison file must not keep the catalog down
                problems.append(f"{info.key}: {exc}")
                log.error("catalog: skipping unreadable manifest %s: %s", info.key, exc)
                continue
            loaded[m.name] = m
        with self._lock:  # swap under a brief lock
            self._by_name = loaded
        return problems

    def get(self, name: str) -> Manifest:
        with self._lock:
            m = self._by_name.get(name)
        if m is None:
            raise ManifestNotFound(name)
        return m

    def list(self) -> list[Manifest]:
        """Every manifest, by name."""
        with self._lock:
            return sorted(self._by_name.values(), key=lambda m: m.name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_name)

    def register(
        self,
        name: str,
        schema_fingerprint: str,
        *,
        key: str = "",
        row_count: int | None = None,
        size: int | None = None,
        columns: list[Column] | tuple[Column, ...] | None = None,
    ) -> tuple[Manifest, bool]:
        """Register (ADR-020); returns ``(manifest, existing)``.

        ValueError for an empty name or fingerprint or a bad key; FingerprintConflict when
        the name is registered with another fingerprint.
        """
        if not name:
            raise ValueError(EMPTY_NAME)
        if not schema_fingerprint:
            raise ValueError(EMPTY_FINGERPRINT)
        validate_dataset_name(name)
        if key:
            validate_key(key)
        for field_name, value in (("row_count", row_count), ("size", size)):
            # the manifest stores both as int64 (Parquet); a larger number is no real count
            if value is not None and not 0 <= value <= INT64_MAX:
                raise ValueError(f"{field_name} must be between 0 and {INT64_MAX}, got {value}")
        cols = tuple(columns) if columns is not None else None
        with self._lock:
            old = self._by_name.get(name)
            if old is not None:
                if old.schema_fingerprint != schema_fingerprint:
                    raise FingerprintConflict(
                        f"catalogd: dataset {name!r} is registered with schema_fingerprint "
                        f"{old.schema_fingerprint}, not {schema_fingerprint}"
                    )
                changes: dict[str, Any] = {}
                if key and key != old.key:
                    changes["key"] = key
                if row_count is not None and row_count != old.row_count:
                    changes["row_count"] = row_count
                if size is not None and size != old.size:
                    changes["size"] = size
                if cols is not None and cols != old.columns:
                    changes["columns"] = cols
                if not changes:
                    return old, True
                # updated_at must move even within one clock tick: it is queryd's etag
                now = max(_now(), _parse_stamp(old.updated_at) + timedelta(microseconds=1))
                candidate = replace(old, updated_at=_stamp(now), **changes)
                existing = True
            else:
                stamp = _stamp(_now())
                candidate = Manifest(
                    dataset_id=dataset_id_for(name),
                    name=name,
                    schema_fingerprint=schema_fingerprint,
                    key=key,
                    row_count=row_count,
                    size=size,
                    columns=cols or (),
                    created_at=stamp,
                    updated_at=stamp,
                )
                existing = False
            self.store.put_bytes(manifest_key(candidate.dataset_id), encode_manifest(candidate))
            self._by_name[name] = candidate
            return candidate, existing

    def delete(self, name: str) -> Manifest:
        """Remove a manifest (not its data object); ManifestNotFound when absent."""
        with self._lock:
            m = self._by_name.get(name)
            if m is None:
                raise ManifestNotFound(name)
            self.store.delete(manifest_key(m.dataset_id))
            del self._by_name[name]
            return m
