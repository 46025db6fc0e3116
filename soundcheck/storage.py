"""Where the shared bytes live: a local directory or an object store, chosen by ``SOUNDCHECK_STORAGE_URL``.

Blobs (uploaded audio, content-addressed), the manifests mirror and the per-file embedding cache are objects
under one root, by key (``blobs/ab/<sha256>``, ``datasets/<id>.json``, ``embeddings/<key>/ab/<sha256>.npz``).
A local path keeps today's layout under the data dir; ``s3://bucket/prefix`` puts them in a bucket (AWS S3,
MinIO, Ceph RGW) through fsspec + s3fs, so workers on other hosts need no shared POSIX filesystem. Callers get
a :class:`Storage` passed in (see :class:`soundcheck.stores.Stores`), never a global.

Writes are atomic on both: a local write goes to a temp file and is renamed; an object-store blob is uploaded
under ``.incoming/<uuid>`` and then published under its content key by a server-side copy, so a torn upload
is never visible under a content key (and a left-over temp key is gc's to remove).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: Temp keys of uploads to an object store (removed by gc once old: TEMP_MIN_AGE_S).
INCOMING = ".incoming"
#: Bytes per ranged GET when an object is streamed.
BLOCK_BYTES = 8 << 20


class CorruptObject(RuntimeError):
    """An object whose bytes do not hash to the sha256 it is stored under (never read as data)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float


def is_url(value: str) -> bool:
    """``s3://...`` and other fsspec URLs (not a local path, not ``file://``)."""
    return "://" in value and not value.startswith("file://")


class Storage(ABC):
    """Objects by key under one root; keys are relative POSIX paths."""

    url: str
    remote: bool = False

    @abstractmethod
    def publish_file(self, local: Path, key: str) -> bool:
        """Make the bytes of ``local`` visible under ``key`` at once, or not at all. ``local`` may be moved away
        (the local store renames it). Returns False when ``key`` already existed (content keys: same bytes)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomic: a reader sees the old object, or none, or all of ``data``."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The whole object, or None when absent."""

    @abstractmethod
    def open(self, key: str, block_size: int | None = None) -> IO[bytes]:
        """A binary reader (ranged GETs of ``block_size`` on an object store); FileNotFoundError when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> int:
        """Remove an object; the bytes freed (0 when it was absent)."""

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursive), with size and modification time."""

    def local_path(self, key: str) -> Path | None:
        """A path the bytes can be read from in place (the local store), else None."""
        return None


class LocalStore(Storage):
    """A directory: ``<root>/<key>``; writes are temp file + rename (the layout of a data dir)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def local_path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def publish_file(self, local: Path, key: str) -> bool:
        final = self.local_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            os.unlink(local)
            return False
        os.replace(local, final)
        return True

    def write_bytes(self, key: str, data: bytes) -> None:
        final = self.local_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.local_path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def open(self, key: str, block_size: int | None = None) -> IO[bytes]:
        return self.local_path(key).open("rb", buffering=block_size or BLOCK_BYTES)

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def delete(self, key: str) -> int:
        path = self.local_path(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.local_path(prefix)
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    st = path.stat()
                    out.append(ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        return out


class FsspecStore(Storage):
    """An fsspec filesystem under ``protocol://bucket/prefix`` (s3fs for S3, MinIO, Ceph; memory:// in tests)."""

    remote = True

    def __init__(self, url: str, fs: Any) -> None:
        self.url = url.rstrip("/")
        self.fs = fs
        self.base = self.url.split("://", 1)[1]

    def _full(self, key: str) -> str:
        return f"{self.base}/{key}" if key else self.base

    def publish_file(self, local: Path, key: str) -> bool:
        final = self._full(key)
        if self.fs.exists(final):
            return False
        tmp = self._full(f"{INCOMING}/{uuid.uuid4().hex}")
        self.fs.put_file(str(local), tmp)
        try:
            self.fs.copy(tmp, final)  # server-side copy: the content key appears whole
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(tmp)
        return True

    def write_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._full(key), data)  # one PUT (or a completed multipart upload): atomic

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._full(key))
        except FileNotFoundError:
            return None

    def open(self, key: str, block_size: int | None = None) -> IO[bytes]:
        return self.fs.open(self._full(key), "rb", block_size=block_size or BLOCK_BYTES, cache_type="readahead")

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._full(key)))

    def delete(self, key: str) -> int:
        full = self._full(key)
        try:
            size = int(self.fs.info(full).get("size") or 0)
            self.fs.rm_file(full)
        except FileNotFoundError:
            return 0
        return size

    def list(self, prefix: str) -> list[ObjectInfo]:
        found = self.fs.find(self._full(prefix), detail=True)
        return [ObjectInfo(path[len(self.base) + 1:], int(info.get("size") or 0), _mtime(info))
                for path, info in sorted(found.items()) if info.get("type", "file") == "file"]


def _mtime(info: dict[str, Any]) -> float:
    """Modification time of an fsspec listing entry (s3fs: LastModified; memory: created)."""
    for field in ("LastModified", "mtime", "created"):
        value = info.get(field)
        if value is None:
            continue
        return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return 0.0


def s3_options(endpoint_url: str | None, region: str | None, addressing_style: str) -> dict[str, Any]:
    """s3fs arguments: credentials come from the usual AWS sources (variables, profile, instance role) through
    botocore; path-style addressing by default (MinIO, Ceph and moto need it; AWS accepts it)."""
    client: dict[str, Any] = {}
    if endpoint_url:
        client["endpoint_url"] = endpoint_url
    if region:
        client["region_name"] = region
    return {"client_kwargs": client, "config_kwargs": {"s3": {"addressing_style": addressing_style}},
            "use_listings_cache": False, "skip_instance_cache": True, "default_block_size": BLOCK_BYTES}


def filesystem(url: str, s3: dict[str, Any] | None = None) -> Any:
    """The fsspec filesystem of a URL (``s3://`` with ``s3`` options)."""
    import fsspec

    protocol = url.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        return fsspec.filesystem("s3", **(s3 or {}))
    return fsspec.filesystem(protocol)


def open_storage(url: str, s3: dict[str, Any] | None = None) -> Storage:
    """A local path (or ``file://``) → :class:`LocalStore`; any fsspec URL → :class:`FsspecStore`."""
    if url.startswith("file://"):
        url = url[len("file://"):]
    if not is_url(url):
        return LocalStore(Path(url).expanduser())
    return FsspecStore(url, filesystem(url, s3))
