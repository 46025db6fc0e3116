"""The storage context of one process: the shared :class:`Storage` and this host's :class:`ReadCache`.

Built once from the settings (the api at app start, a worker with its runtime) and passed to whatever reads
or writes shared bytes, so a test can hold two workers' contexts side by side (different data dirs, one
bucket) and nothing reaches for a global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from redis import Redis

from soundcheck import storage
from soundcheck.datastore import BlobRefs, BlobStore, ManifestStore
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.read_cache import ReadCache
from soundcheck.settings import Settings
from soundcheck.storage import Storage, filesystem, open_storage, s3_options

BLOBS = "blobs"
MANIFESTS = "datasets"
EMBEDDINGS = "embeddings"


@dataclass
class Stores:
    storage: Storage
    cache: ReadCache
    s3: dict[str, Any]
    _filesystems: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Stores:
        s3 = s3_options(settings.s3_endpoint_url, settings.s3_region, settings.s3_addressing_style)
        return cls(open_storage(settings.storage, s3), ReadCache(settings.read_cache_dir,
                                                                  settings.local_cache_max_bytes), s3)

    @property
    def remote(self) -> bool:
        return self.storage.remote

    def blobs(self, refs: BlobRefs | None = None) -> BlobStore:
        return BlobStore(self.storage, refs=refs, prefix=BLOBS, cache=self.cache, remote_open=self.open_url)

    def manifests(self, redis: Redis) -> ManifestStore:
        return ManifestStore(redis, self.storage, prefix=MANIFESTS)

    def embeddings(self, emb_key: str) -> EmbeddingCache:
        return EmbeddingCache(self.storage, emb_key, prefix=EMBEDDINGS, local=self.cache)

    def filesystem(self, url: str) -> Any:
        """The fsspec filesystem of a registered dataset's URL (same endpoint and credentials as the storage),
        one per protocol for the life of this context."""
        protocol = url.split("://", 1)[0]
        if protocol not in self._filesystems:
            self._filesystems[protocol] = filesystem(url, self.s3)
        return self._filesystems[protocol]

    def open_url(self, url: str) -> IO[bytes]:
        """A ranged reader of one object of a registered dataset (GETs of storage.BLOCK_BYTES)."""
        return self.filesystem(url).open(url, "rb", block_size=storage.BLOCK_BYTES, cache_type="readahead")


def local_stores(data_dir: Path, cache_max_bytes: int = 1 << 30) -> Stores:
    """The default layout on one disk (tests, benchmarks)."""
    return Stores(open_storage(str(data_dir)), ReadCache(Path(data_dir) / "cache", cache_max_bytes), {})
