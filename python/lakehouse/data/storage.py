"""The object store: one module, two backends, used by every daemon that persists objects.

storaged serves it over HTTP; catalogd, ingestd and vectord use it in-process. The API is
synchronous and thread-safe (vectord calls it from a C++ save thread; async code wraps calls
in ``asyncio.to_thread``)::

    store = open_store(config)                 # [storaged].backend: "local" or "s3"
    info = store.put_bytes("a/b.bin", data)    # ObjectInfo(key, size, sha256)
    with store.open_writer("big.bin") as w:    # streaming; atomic on close,
        w.write(chunk)                         # nothing visible if the block raises
    with store.open_reader("big.bin") as r:    # streaming read; ObjectNotFound if absent
        for chunk in r.iter_chunks(): ...
    store.head(key) -> ObjectInfo | None       store.delete(key) -> bool
    store.list(prefix, after, limit) -> ListPage(items, truncated, next_after)
    store.uri(key)   # what DuckDB reads: a local path, or s3://bucket/key

Keys follow the reference's ``validateKey`` table (contract section 3): empty, longer than
1024 bytes, NUL, a leading ``/``, a ``..`` segment, CR / LF / TAB are rejected. We also reject
the other ASCII control characters, empty and ``.`` segments (``a//b``, ``a/./b``: URL
normalisation would silently change them) and segments starting with ``.lh-tmp-`` (the local
backend's temporary files), so that one key set is valid on both backends.

Local backend: ``<root>/<key>``, "/" maps to directories. A write goes to a temporary file
in the destination directory, is fsynced, renamed over the destination and the directory is
fsynced: a crash mid-write leaves the previous object intact and a stray temporary file that
listings never show. The sha256 travels in the ``user.lakehouse.sha256`` extended attribute,
set before the rename (None on a filesystem without user xattrs). A key can't be both an
object and a prefix of others on a filesystem ("a" and "a/b"): that write raises
:class:`KeyConflict`.

S3 backend (boto3, any endpoint: AWS, MinIO, moto): a writer spools to a temporary file
(in memory up to 8 MiB, then on disk under ``<data_dir>/tmp``) while hashing, and uploads on
commit (multipart for large objects) with the sha256 as object metadata; S3 makes the object
visible atomically when the upload completes, and nothing is uploaded if the writer aborts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from ..config import Config, S3Config, StoragedConfig

__all__ = [
    "MAX_KEY_BYTES",
    "VECTORS_PREFIX",
    "StorageError",
    "InvalidKey",
    "KeyConflict",
    "ObjectNotFound",
    "ObjectTooLarge",
    "ObjectInfo",
    "ListPage",
    "ObjectWriter",
    "ObjectReader",
    "ObjectStore",
    "LocalStore",
    "S3Store",
    "open_store",
    "validate_key",
    "put_limit",
]

#: the reference's key length limit, in UTF-8 bytes
MAX_KEY_BYTES = 1024
#: keys under this prefix get the larger PUT cap (ADR-002)
VECTORS_PREFIX = "_vectors/"
#: name prefix of the local backend's temporary files (reserved: no key segment may use it)
TMP_PREFIX = ".lh-tmp-"
#: the extended attribute carrying a local object's sha256
SHA_XATTR = "user.lakehouse.sha256"
#: default chunk size for streaming reads and copies
CHUNK = 1 << 20
#: default page size of list()
DEFAULT_LIST_LIMIT = 1000


class StorageError(Exception):
    """The backend failed (disk error, S3 unreachable or refusing): not the caller's fault."""


class InvalidKey(ValueError):
    """A key the store refuses; the message says why."""


class KeyConflict(ValueError):
    """Local backend: the key collides with the directory structure ("a" vs "a/b")."""


class ObjectNotFound(KeyError):
    """No object under that key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object under key {self.key!r}"


class ObjectTooLarge(ValueError):
    """A write went past its size cap; nothing was stored."""

    def __init__(self, key: str, limit: int) -> None:
        super().__init__(f"object {key!r} is larger than the {limit}-byte cap")
        self.key = key
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object's key and size; ``sha256`` (hex) when known (always after a write)."""

    key: str
    size: int
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing, in key order. ``next_after`` continues it when truncated."""

    items: list[ObjectInfo]
    truncated: bool
    next_after: str | None


def validate_key(key: Any) -> str:
    """Return ``key`` if the store accepts it, else raise :class:`InvalidKey` with the reason."""
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidKey("key is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKey("key is not valid UTF-8") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"key is {size} bytes, longer than {MAX_KEY_BYTES}")
    if "\x00" in key:
        raise InvalidKey("key contains a NUL byte")
    for ch, name in (("\r", "CR"), ("\n", "LF"), ("\t", "TAB")):
        if ch in key:
            raise InvalidKey(f"key contains a {name} control character")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidKey("key contains a control character")
    if key.startswith("/"):
        raise InvalidKey("key starts with '/'")
    for segment in key.split("/"):
        if segment == "..":
            raise InvalidKey("key has a '..' path segment")
        if segment == ".":
            raise InvalidKey("key has a '.' path segment")
        if segment == "":
            raise InvalidKey("key has an empty path segment ('//' or a trailing '/')")
        if segment.startswith(TMP_PREFIX):
            raise InvalidKey(f"key segments starting with {TMP_PREFIX!r} are reserved")
    return key


def put_limit(section: StoragedConfig, key: str) -> int:
    """The PUT cap for ``key`` (ADR-002): larger under ``_vectors/``."""
    if key.startswith(VECTORS_PREFIX):
        return section.max_put_bytes_vectors
    return section.max_put_bytes


# -- streaming handles -----------------------------------------------------------------


class ObjectWriter(ABC):
    """Write chunks, then :meth:`commit` (atomic); :meth:`abort` leaves nothing behind.

    As a context manager it commits on a clean exit and aborts when the block raises.
    After commit, :attr:`info` holds the stored object's ObjectInfo.
    """

    def __init__(self, key: str, max_bytes: int | None) -> None:
        self.key = key
        self.max_bytes = max_bytes
        self.size = 0
        self.info: ObjectInfo | None = None
        self._hash = hashlib.sha256()
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; ObjectTooLarge (and an abort) past ``max_bytes``."""
        if self._done:
            raise ValueError("writer is closed")
        if self.max_bytes is not None and self.size + len(data) > self.max_bytes:
            self.abort()
            raise ObjectTooLarge(self.key, self.max_bytes)
        self._write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> ObjectInfo:
        """Make the object visible under its key; return its ObjectInfo."""
        if self._done:
            if self.info is None:
                raise ValueError("writer was aborted")
            return self.info
        digest = self._hash.hexdigest()
        try:
            self._commit(digest)
        except BaseException:
            self.abort()
            raise
        self._done = True
        self.info = ObjectInfo(self.key, self.size, digest)
        return self.info

    def abort(self) -> None:
        """Discard everything written; idempotent, never raises."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._abort()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    @abstractmethod
    def _write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def _commit(self, sha256: str) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class ObjectReader:
    """A streaming read of one object: ``read(n)``, ``iter_chunks()``, ``size``."""

    def __init__(self, key: str, size: int, sha256: str | None, stream: Any) -> None:
        self.key = key
        self.size = size
        self.sha256 = sha256
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read() if n is None or n < 0 else self._stream.read(n)
        except OSError as exc:
            raise StorageError(f"reading {self.key!r}: {exc}") from exc
        except Exception as exc:  # botocore's streaming errors are not OSErrors
            if type(exc).__module__.startswith(("botocore", "urllib3")):
                raise StorageError(f"reading {self.key!r}: {exc}") from exc
            raise

    def iter_chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        while chunk := self.read(chunk_size):
            yield chunk

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- the store interface ---------------------------------------------------------------


class ObjectStore(ABC):
    """Objects by key; see the module docstring. Every method is thread-safe."""

    backend: str = ""

    def validate_key(self, key: Any) -> str:
        """Return ``key`` if valid, else raise :class:`InvalidKey` (a ValueError)."""
        return validate_key(key)

    @abstractmethod
    def open_writer(self, key: str, *, max_bytes: int | None = None) -> ObjectWriter:
        """A streaming writer for ``key`` (InvalidKey at once for a bad key)."""

    @abstractmethod
    def open_reader(self, key: str) -> ObjectReader:
        """A streaming reader; ObjectNotFound when absent."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None when absent."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; False when there was none."""

    @abstractmethod
    def list(self, prefix: str = "", after: str = "", limit: int = DEFAULT_LIST_LIMIT) -> ListPage:
        """Keys starting with ``prefix`` and greater than ``after``, in order, at most ``limit``."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where DuckDB reads ``key``: a local file path or ``s3://bucket/key``."""

    def local_path(self, key: str) -> Path | None:
        """The object's file on the local disk (local backend only; else None)."""
        return None

    @abstractmethod
    def uri_prefix(self, prefix: str) -> str:
        """The location of a key prefix, in :meth:`uri`'s form (DuckDB's allowed_directories)."""

    def put_bytes(self, key: str, data: bytes, *, max_bytes: int | None = None) -> ObjectInfo:
        """Store ``data`` under ``key`` atomically."""
        writer = self.open_writer(key, max_bytes=max_bytes)
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def put_file(self, key: str, fileobj: BinaryIO, *, max_bytes: int | None = None) -> ObjectInfo:
        """Stream an open binary file into ``key`` atomically."""
        writer = self.open_writer(key, max_bytes=max_bytes)
        try:
            while chunk := fileobj.read(CHUNK):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def get_bytes(self, key: str) -> bytes:
        """The whole object (ObjectNotFound when absent)."""
        with self.open_reader(key) as r:
            return r.read()

    def iter_list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, following continuation pages."""
        after = ""
        while True:
            page = self.list(prefix, after, DEFAULT_LIST_LIMIT)
            yield from page.items
            if not page.truncated or page.next_after is None:
                return
            after = page.next_after

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing
        """Release backend resources."""


# -- local directory -------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _LocalWriter(ObjectWriter):
    def __init__(self, store: LocalStore, key: str, max_bytes: int | None) -> None:
        super().__init__(key, max_bytes)
        self._path = store._path(key)
        self._root = store.root
        self._fd, self._tmp = self._create_temp()

    def _create_temp(self) -> tuple[int, str]:
        parent = self._path.parent
        # A concurrent delete may prune the directory we just made: retry a few times.
        for _ in range(8):
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise self._conflict() from exc
            try:
                fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=parent)
            except FileNotFoundError:
                continue
            except NotADirectoryError as exc:
                raise self._conflict() from exc
            except OSError as exc:
                if exc.errno == errno.ENAMETOOLONG:
                    raise InvalidKey("a key segment is too long for the local filesystem") from exc
                raise StorageError(f"creating a temporary file for {self.key!r}: {exc}") from exc
            os.fchmod(fd, 0o644)
            return fd, tmp
        raise StorageError(f"could not create the directory for {self.key!r}")

    def _conflict(self) -> KeyConflict:
        # Find the segment that exists as an object, for a useful message.
        probe = self._root
        for part in Path(self.key).parts[:-1]:
            probe = probe / part
            if probe.is_file():
                return KeyConflict(
                    f"cannot store {self.key!r}: {probe.relative_to(self._root).as_posix()!r} "
                    "is an object, so it cannot also be a prefix"
                )
        return KeyConflict(f"cannot store {self.key!r}: its path collides with another key")

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise StorageError(f"writing {self.key!r}: {exc}") from exc

    def _commit(self, sha256: str) -> None:
        try:
            os.fsync(self._fd)
            with contextlib.suppress(OSError):  # filesystems without user xattrs
                os.setxattr(self._fd, SHA_XATTR, sha256.encode())
            os.close(self._fd)
            self._fd = -1
            if self._path.is_dir():
                raise KeyConflict(f"cannot store {self.key!r}: it is a prefix of other keys")
            os.replace(self._tmp, self._path)
        except OSError as exc:
            raise StorageError(f"committing {self.key!r}: {exc}") from exc
        _fsync_dir(self._path.parent)

    def _abort(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (see the module docstring)."""

    backend = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the store root {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def open_writer(self, key: str, *, max_bytes: int | None = None) -> ObjectWriter:
        validate_key(key)
        return _LocalWriter(self, key, max_bytes)

    def open_reader(self, key: str) -> ObjectReader:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - owned by the reader
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"opening {key!r}: {exc}") from exc
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            fh.close()
            raise ObjectNotFound(key)
        return ObjectReader(key, st.st_size, self._sha(path), fh)

    @staticmethod
    def _sha(path: Path) -> str | None:
        try:
            return os.getxattr(path, SHA_XATTR).decode()
        except OSError:
            return None

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"stat {key!r}: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, self._sha(path))

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            if not path.is_file():
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise StorageError(f"deleting {key!r}: {exc}") from exc
        # The removal survives a power loss once the directory is synced (as a write's
        # rename does), so a deleted object does not come back.
        _fsync_dir(path.parent)
        # Prune directories the delete emptied, so prefixes don't linger as "a/" after "a/b".
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def list(self, prefix: str = "", after: str = "", limit: int = DEFAULT_LIST_LIMIT) -> ListPage:
        if limit <= 0:
            raise ValueError("limit must be positive")
        items: list[ObjectInfo] = []
        truncated = False
        for info in self._walk(self.root, "", prefix, after):
            if len(items) == limit:
                truncated = True
                break
            items.append(info)
        return ListPage(items, truncated, items[-1].key if truncated else None)

    def _walk(self, directory: Path, base: str, prefix: str, after: str) -> Iterator[ObjectInfo]:
        """Objects under ``directory`` in key order (what S3 returns: UTF-8 byte order).

        Entries are sorted by ``name + "/"`` for directories and ``name`` for files: every
        key below directory ``d`` starts with ``d/``, so this order is the order of the
        full keys. Subtrees that can't hold a key > ``after`` with ``prefix`` are skipped.
        """
        try:
            with os.scandir(directory) as it:
                entries = []
                for e in it:
                    if e.name.startswith(TMP_PREFIX):
                        continue
                    try:
                        e.name.encode("utf-8")
                        is_dir = e.is_dir(follow_symlinks=False)
                    except (UnicodeEncodeError, OSError):
                        continue  # foreign files: not ours, never listed
                    entries.append((e.name + "/" if is_dir else e.name, e, is_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"listing {directory}: {exc}") from exc
        entries.sort(key=lambda t: t[0])
        for sort_name, entry, is_dir in entries:
            key = base + sort_name
            if is_dir:
                # keys below are key + something: skip when incompatible with prefix / after
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after and not after.startswith(key) and after > key:
                    continue
                yield from self._walk(Path(entry.path), key, prefix, after)
                continue
            if not key.startswith(prefix) or key <= after:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # deleted while listing
            if stat.S_ISREG(st.st_mode):
                yield ObjectInfo(key, st.st_size)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def uri_prefix(self, prefix: str) -> str:
        """The location of a key prefix (for DuckDB's allowed_directories)."""
        return str(self.root) + "/" + prefix


# -- S3 ---------------------------------------------------------------------------------

#: objects up to this size are spooled in memory before upload, larger ones on disk
SPOOL_MEMORY = 8 << 20


def _client_error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _S3Writer(ObjectWriter):
    def __init__(self, store: S3Store, key: str, max_bytes: int | None) -> None:
        super().__init__(key, max_bytes)
        self._store = store
        self._spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed on commit/abort
            max_size=SPOOL_MEMORY, dir=store.spool_dir
        )

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._spool.write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(f"spooling {self.key!r}: {exc}") from exc

    def _commit(self, sha256: str) -> None:
        try:
            self._spool.seek(0)
            self._store._upload(self.key, self._spool, self.size, sha256)
        finally:
            self._spool.close()

    def _abort(self) -> None:
        self._spool.close()


class S3Store(ObjectStore):
    """Objects in an S3 bucket (any endpoint boto3 reaches), keys under ``[s3].prefix``."""

    backend = "s3"

    def __init__(self, s3: S3Config, spool_dir: str | os.PathLike[str] | None = None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config as BotoConfig

        self.bucket = s3.bucket
        self.prefix = s3.prefix
        self.endpoint = s3.endpoint
        self.region = s3.region
        self.access_key = s3.access_key
        self.secret_key = s3.secret_key
        self.url_style = s3.url_style
        self.spool_dir = str(spool_dir) if spool_dir else None
        if self.spool_dir:
            Path(self.spool_dir).mkdir(parents=True, exist_ok=True)
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=s3.endpoint or None,
            region_name=s3.region or None,
            aws_access_key_id=s3.access_key or None,
            aws_secret_access_key=s3.secret_key or None,
            config=BotoConfig(
                s3={"addressing_style": "path" if s3.url_style == "path" else "virtual"},
                max_pool_connections=32,
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=120,
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=64 << 20, multipart_chunksize=16 << 20, max_concurrency=4
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self.endpoint!r}, prefix={self.prefix!r})"

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _error(self, what: str, exc: Exception) -> StorageError:
        return StorageError(f"s3 {what}: {exc}")

    def _upload(self, key: str, fileobj: BinaryIO, size: int, sha256: str) -> None:
        extra = {"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"}
        try:
            if size <= SPOOL_MEMORY:
                self._client.put_object(
                    Bucket=self.bucket, Key=self._full(key), Body=fileobj.read(), **extra
                )
            else:
                self._client.upload_fileobj(
                    fileobj, self.bucket, self._full(key), ExtraArgs=extra, Config=self._transfer
                )
        except Exception as exc:
            raise self._error(f"upload of {key!r}", exc) from exc

    def open_writer(self, key: str, *, max_bytes: int | None = None) -> ObjectWriter:
        validate_key(key)
        return _S3Writer(self, key, max_bytes)

    def open_reader(self, key: str) -> ObjectReader:
        full = self._full(key)
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            if _client_error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(key) from exc
            raise self._error(f"get of {key!r}", exc) from exc
        return ObjectReader(
            key,
            int(resp.get("ContentLength", 0)),
            (resp.get("Metadata") or {}).get("sha256"),
            resp["Body"],
        )

    def head(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            if _client_error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error(f"head of {key!r}", exc) from exc
        return ObjectInfo(
            key, int(resp.get("ContentLength", 0)), (resp.get("Metadata") or {}).get("sha256")
        )

    def delete(self, key: str) -> bool:
        # S3 deletes are idempotent and don't say whether the key existed: ask first.
        if self.head(key) is None:
            return False
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:
            raise self._error(f"delete of {key!r}", exc) from exc
        return True

    def list(self, prefix: str = "", after: str = "", limit: int = DEFAULT_LIST_LIMIT) -> ListPage:
        if limit <= 0:
            raise ValueError("limit must be positive")
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.prefix + prefix,
            "MaxKeys": min(limit, 1000),
        }
        if after:
            kwargs["StartAfter"] = self.prefix + after
        items: list[ObjectInfo] = []
        truncated = False
        try:
            while True:
                resp = self._client.list_objects_v2(**kwargs)
                for obj in resp.get("Contents", []):
                    items.append(ObjectInfo(obj["Key"][len(self.prefix) :], int(obj["Size"])))
                truncated = bool(resp.get("IsTruncated"))
                if not truncated or len(items) >= limit:
                    break
                kwargs["MaxKeys"] = min(limit - len(items), 1000)
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]
                kwargs.pop("StartAfter", None)
        except Exception as exc:
            raise self._error("list", exc) from exc
        if len(items) > limit:
            items, truncated = items[:limit], True
        return ListPage(items, truncated, items[-1].key if truncated and items else None)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def uri_prefix(self, prefix: str) -> str:
        """The location of a key prefix (for DuckDB's allowed_directories)."""
        return f"s3://{self.bucket}/{self.prefix}{prefix}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


# -- construction ----------------------------------------------------------------------


def open_store(config: Config) -> ObjectStore:
    """The store ``config`` describes: ``[storaged].backend`` "local" (rooted at
    ``[storaged].root``, default ``<data_dir>/objects``) or "s3" (settings in ``[s3]``)."""
    section = config.storaged
    if section.backend == "s3":
        return S3Store(config.s3, spool_dir=Path(config.data_dir) / "tmp" / "s3-spool")
    root = config.path(section.root) or Path(config.data_dir) / "objects"
    return LocalStore(root)
