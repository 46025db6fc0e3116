"""Content-addressed audio blobs and dataset manifests (in Redis, mirrored as JSON to the shared Storage).

Shared by the api (writes) and workers (reads). A dataset id is derived from its content only, so the same
files uploaded twice are the same dataset and hit the same cached statistics.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import LockError
from redis.lock import Lock

from soundcheck.jobspec import DatasetView, FileEntry
from soundcheck.manifest_build import CAPTIONS_CSV as CAPTIONS_CSV
from soundcheck.manifest_build import LABELS_CSV as LABELS_CSV  # re-exported: the api's imports
from soundcheck.manifest_build import MAX_CAPTION_CHARS as MAX_CAPTION_CHARS
from soundcheck.manifest_build import DatasetError as DatasetError
from soundcheck.manifest_build import TooLarge
from soundcheck.manifest_build import apply_captions as apply_captions
from soundcheck.manifest_build import build_manifest as build_manifest
from soundcheck.manifest_build import describe as describe
from soundcheck.manifest_build import label_of as label_of
from soundcheck.manifest_build import parse_captions_csv as parse_captions_csv
from soundcheck.manifest_build import parse_labels_csv as parse_labels_csv
from soundcheck.manifest_build import safe_relative_name as safe_relative_name
from soundcheck.read_cache import ReadCache
from soundcheck.storage import LocalStore, Storage, is_url

DATASET_KEY = "sc:dataset:{}"
DATASET_INDEX = "sc:datasets"
DATASET_NAMES = "sc:dataset-names"
#: Per blob: the set of dataset ids whose manifest references it (uploaded entries; registered files are not blobs).
BLOB_REFS_KEY = "sc:blob-refs:{}"
#: Per blob: request tokens that wrote or reused it and have not ended, scored by when the claim expires.
BLOB_PENDING_KEY = "sc:blob-pending:{}"
BLOB_LOCK_KEY = "sc:blob-lock:{}"
#: Set once the reference sets were built from every manifest.
BLOB_REFS_INDEXED = "sc:blob-refs-indexed"
INCOMING_PREFIX = ".incoming-"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".w64", ".caf"}


class BlobRefs:
    """Which datasets use each blob, and which requests are writing it, in Redis.

    Blobs are content-addressed, so two datasets (or two uploads in flight) can share one. A blob is removed
    only under its lock, when no dataset references it and no live request has claimed it; a request claims a
    blob under the same lock before it links the file into place, so a removal can never race an upload.
    """

    def __init__(self, redis: Redis, claim_ttl_s: float = 6 * 3600) -> None:
        self.redis = redis
        self.claim_ttl_s = claim_ttl_s

    def lock(self, sha256: str) -> Lock:
        return self.redis.lock(BLOB_LOCK_KEY.format(sha256), timeout=60, blocking_timeout=30)

    def claim(self, sha256: str, token: str) -> None:
        self.redis.zadd(BLOB_PENDING_KEY.format(sha256), {token: time.time() + self.claim_ttl_s})

    def unclaim(self, sha256: str, token: str) -> None:
        self.redis.zrem(BLOB_PENDING_KEY.format(sha256), token)

    def in_use(self, sha256: str) -> bool:
        """A dataset references it, or a request that has not ended (nor expired) claimed it."""
        pending = BLOB_PENDING_KEY.format(sha256)
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(pending, "-inf", time.time())
        pipe.exists(BLOB_REFS_KEY.format(sha256), pending)
        return bool(pipe.execute()[1])

    def add_dataset(self, manifest: DatasetView, pipe: Pipeline | None = None) -> None:
        target = pipe if pipe is not None else self.redis.pipeline()
        for sha in blob_shas(manifest):
            target.sadd(BLOB_REFS_KEY.format(sha), manifest.id)
        if pipe is None:
            target.execute()

    def remove_dataset(self, manifest: DatasetView) -> None:
        pipe = self.redis.pipeline()
        for sha in blob_shas(manifest):
            pipe.srem(BLOB_REFS_KEY.format(sha), manifest.id)
        pipe.execute()

    def remove_if_unused(self, sha256: str, blobs: BlobStore) -> int:
        """Delete the blob when nothing uses it; the bytes freed (0 when kept or absent)."""
        try:
            with self.lock(sha256):
                if self.in_use(sha256):
                    return 0
                return blobs.delete(sha256)
        except LockError:  # held elsewhere for 30 s: keep the blob (gc comes back)
            return 0

    def ensure_indexed(self, manifests: ManifestStore) -> None:
        """Build the reference sets once from every manifest (datasets created before references existed, or a
        Redis restored without them), before anything relies on them to remove a blob."""
        if self.redis.exists(BLOB_REFS_INDEXED):
            return
        with self.redis.lock(BLOB_REFS_INDEXED + ":lock", timeout=600, blocking_timeout=600):
            if self.redis.exists(BLOB_REFS_INDEXED):
                return
            for dataset in manifests.all_ids():
                view = manifests.get(dataset)
                if view is not None:
                    self.add_dataset(view)
            self.redis.set(BLOB_REFS_INDEXED, "1")


class BlobStore:
    """Blobs under ``<prefix>/ab/<sha256>`` of a :class:`Storage` (a bare directory: ``<root>/ab/<sha256>``).

    Writes are atomic: the bytes are hashed into a local temp file, then published under their content key
    (rename on a local store, temp key + server-side copy on an object store). On an object store the local
    copy goes into this host's :class:`ReadCache`, and reads fetch through it, checking the sha256.

    With ``refs`` (the api), every blob written is claimed for this store's request until :meth:`release`,
    which removes the ones no dataset ended up referencing: a rejected upload leaves nothing behind."""

    def __init__(self, root: Path | Storage, refs: BlobRefs | None = None, prefix: str = "",
                 cache: ReadCache | None = None, remote_open: Callable[[str], IO[bytes]] | None = None) -> None:
        self.storage = root if isinstance(root, Storage) else LocalStore(Path(root))
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.cache = cache
        self.remote_open = remote_open
        self.refs = refs
        self.token = uuid.uuid4().hex
        self.touched: set[str] = set()

    @property
    def root(self) -> Path | None:
        """The local directory of the blobs (None on an object store)."""
        return self.storage.local_path(self.prefix.rstrip("/"))

    def key(self, sha256: str) -> str:
        return f"{self.prefix}{sha256[:2]}/{sha256}"

    def path(self, sha256: str) -> Path:
        """Where a blob is on a local store."""
        path = self.storage.local_path(self.key(sha256))
        if path is None:
            raise TypeError("blobs on an object store have no path: use read_path()")
        return path

    def _cache(self) -> ReadCache:
        if self.cache is None:
            raise TypeError("reading an object store needs a local ReadCache")
        return self.cache

    def read_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes; FileNotFoundError when the store has no such blob, CorruptObject
        when the stored bytes do not hash to ``sha256``."""
        local = self.storage.local_path(self.key(sha256))
        if local is not None:
            if not local.is_file():
                raise FileNotFoundError(local)
            return local
        key = self.key(sha256)
        return self._cache().fetch("blobs", sha256, lambda: self.storage.open(key), f"{self.storage.url}/{key}")

    def read_url(self, url: str, sha256: str) -> Path:
        """A local copy of a registered object-store file, checked against the sha256 it was registered with."""
        if self.remote_open is None:
            raise TypeError("reading a registered URL needs a Stores context")
        opener = self.remote_open
        return self._cache().fetch("blobs", sha256, lambda: opener(url), url)

    def _staging(self) -> Path:
        root = self.root
        if root is None:
            return self._cache().staging()
        root.mkdir(parents=True, exist_ok=True)
        return root

    def put_stream(self, stream: IO[bytes], max_bytes: int, chunk: int = 1 << 20) -> tuple[str, int, Path]:
        """Copy a stream into the store; return (sha256, size, a local path of the bytes). Raises DatasetError
        over max_bytes."""
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self._staging(), prefix=INCOMING_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(chunk):
                    size += len(block)
                    if size > max_bytes:
                        raise TooLarge(f"a file is larger than the limit of {max_bytes} bytes "
                                       "(SOUNDCHECK_MAX_UPLOAD_BYTES)")
                    digest.update(block)
                    out.write(block)
            sha = digest.hexdigest()
            if self.refs is not None:
                # claimed under the blob's lock before it is published: gc's removal (under the same lock)
                # sees the claim and keeps it, however long the upload to an object store takes
                with self.refs.lock(sha):
                    self.refs.claim(sha, self.token)
                    self.touched.add(sha)
            self.storage.publish_file(Path(tmp_name), self.key(sha))
            local = self.storage.local_path(self.key(sha))
            if local is None:
                local = self._cache().adopt("blobs", sha, Path(tmp_name))
            return sha, size, local
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def delete(self, sha256: str) -> int:
        """Remove a blob (and this host's copy of it); the bytes freed in the store."""
        if self.cache is not None and self.storage.remote:
            self.cache.path("blobs", sha256).unlink(missing_ok=True)
        return self.storage.delete(self.key(sha256))

    def release(self) -> int:
        """End of the request: drop its claims and remove the blobs it wrote that no dataset references
        (a rejected upload, files skipped as invalid). Returns the bytes freed."""
        if self.refs is None:
            return 0
        freed = 0
        for sha in sorted(self.touched):
            self.refs.unclaim(sha, self.token)
            freed += self.refs.remove_if_unused(sha, self)
        self.touched.clear()
        return freed


class ManifestStore:
    """Dataset manifests in Redis, mirrored as JSON objects in the storage (``datasets/<id>.json`` under the data
    dir or in the bucket) so a Redis loss does not lose a dataset."""

    def __init__(self, redis: Redis, mirror: Path | Storage, prefix: str = "") -> None:
        self.redis = redis
        self.storage = mirror if isinstance(mirror, Storage) else LocalStore(Path(mirror))
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def _key(self, dataset: str) -> str:
        return f"{self.prefix}{dataset}.json"

    def save(self, manifest: DatasetView, name: str | None = None) -> DatasetView:
        """Store a manifest; an existing one with the same id (same content) is kept and returned.

        The name is metadata, not content: the last name given to a dataset is the one shown."""
        if name:
            self.redis.hset(DATASET_NAMES, manifest.id, name[:200])
        existing = self.get(manifest.id)
        if existing is not None and not _replaces(manifest, existing):
            BlobRefs(self.redis).add_dataset(existing)  # idempotent; repairs references a lost Redis dropped
            return existing
        payload = manifest.model_dump_json()
        self.storage.write_bytes(self._key(manifest.id), payload.encode())
        pipe = self.redis.pipeline()
        pipe.set(DATASET_KEY.format(manifest.id), payload)
        pipe.zadd(DATASET_INDEX, {manifest.id: manifest.created_at.timestamp()})
        BlobRefs(self.redis).add_dataset(manifest, pipe)
        pipe.execute()
        return manifest.model_copy(update={"name": name[:200] if name else None})

    def delete(self, dataset: str) -> DatasetView | None:
        """Remove a manifest (Redis, mirror, name, blob references); the blobs themselves are the caller's."""
        view = self.get(dataset)
        if view is None:
            return None
        pipe = self.redis.pipeline()
        pipe.delete(DATASET_KEY.format(dataset))
        pipe.zrem(DATASET_INDEX, dataset)
        pipe.hdel(DATASET_NAMES, dataset)
        pipe.execute()
        self.storage.delete(self._key(dataset))
        BlobRefs(self.redis).remove_dataset(view)
        return view

    def all_ids(self) -> list[str]:
        """Every dataset id, in Redis or only in the mirror (a Redis that lost its data)."""
        ids = {i.decode() if isinstance(i, bytes) else i for i in self.redis.zrange(DATASET_INDEX, 0, -1)}
        for obj in self.storage.list(self.prefix.rstrip("/")):
            name = obj.key.rsplit("/", 1)[-1]
            if name.endswith(".json") and _is_hex_id(name[:-5]):
                ids.add(name[:-5])
        return sorted(ids)

    def get(self, dataset: str) -> DatasetView | None:
        raw = self.redis.get(DATASET_KEY.format(dataset))
        if raw is None:
            data = self.storage.read_bytes(self._key(dataset)) if _is_hex_id(dataset) else None
            if data is None:
                return None
            raw = data.decode()
            self.redis.set(DATASET_KEY.format(dataset), raw)
        view = DatasetView.model_validate_json(raw)
        name = self.redis.hget(DATASET_NAMES, dataset)
        view.name = name.decode() if isinstance(name, bytes) else name
        return view

    def list(self, limit: int = 100) -> list[DatasetView]:
        ids = self.redis.zrevrange(DATASET_INDEX, 0, limit - 1)
        views = [self.get(i.decode() if isinstance(i, bytes) else i) for i in ids]
        return [v.model_copy(update={"files": None}) for v in views if v is not None]


def _replaces(new: DatasetView, old: DatasetView) -> bool:
    """Same content, better manifest: uploaded bytes (durable blobs) over a registered directory, or new
    labels or captions (they are not content: they change no embedding, statistics or cache entry)."""
    if new.source != old.source:
        return new.source == "upload"
    new_meta = {f.name: (f.label, f.caption) for f in new.files or []}
    return any(new_meta.get(f.name) != (f.label, f.caption) for f in old.files or [])


def _is_hex_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def blob_shas(manifest: DatasetView) -> set[str]:
    """Blobs a manifest needs: its uploaded entries (registered entries are read from their own path)."""
    return {f.sha256 for f in manifest.files or [] if not f.path}


def file_location(entry: FileEntry, blobs: BlobStore) -> Path:
    """Where a manifest entry's bytes are on this host: its registered path (a local copy of a registered
    object-store file), else its blob (fetched through the read cache from an object store)."""
    if entry.path and is_url(entry.path):
        return blobs.read_url(entry.path, entry.sha256)
    return Path(entry.path) if entry.path else blobs.read_path(entry.sha256)
