"""The storage backends on a real S3 endpoint (moto on loopback) and on a local directory: atomic publish,
sha256 checks on read, the LRU bound of the read cache, gc and the manifests mirror on a bucket."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from redis import Redis

from soundcheck.datastore import BlobRefs, BlobStore, TooLarge, build_manifest
from soundcheck.embed_cache import EmbeddingCache, arrays_digest
from soundcheck.embeddings.base import Embedded
from soundcheck.gc import run_gc
from soundcheck.jobspec import FileEntry
from soundcheck.pipeline import InputChanged, read_entry
from soundcheck.read_cache import ReadCache
from soundcheck.settings import Settings
from soundcheck.storage import INCOMING, CorruptObject, FsspecStore, LocalStore
from soundcheck.stores import Stores
from tests.conftest import make_settings
from tests.storage.conftest import make_bucket

DAY = 24 * 3600.0


def _settings(redis_url: str, tmp: Path, endpoint: str, bucket: str, **extra: object) -> Settings:
    return make_settings(redis_url, tmp, storage_url=f"s3://{bucket}/sc", s3_endpoint_url=endpoint, **extra)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Torn(io.RawIOBase):
    """A client that sends some bytes, then the connection breaks."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        self.left -= 1
        return os.urandom(1000)


def test_storage_url_chooses_the_backend(redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    local = Stores.from_settings(make_settings(redis_server, tmp_path))
    assert isinstance(local.storage, LocalStore) and local.storage.root == tmp_path / "data"
    remote = Stores.from_settings(_settings(redis_server, tmp_path, s3_endpoint, bucket))
    assert isinstance(remote.storage, FsspecStore) and remote.storage.base == f"{bucket}/sc"


def test_allowed_roots_mix_server_directories_and_s3_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDCHECK_ALLOWED_ROOTS", "/srv/a:/srv/b,s3://lab-audio/sets/")
    s = Settings()
    assert s.allowed_roots == [Path("/srv/a"), Path("/srv/b")]
    assert s.allowed_remote_roots == ["s3://lab-audio/sets"]


def test_a_blob_is_published_under_its_content_key_and_a_torn_upload_is_never_visible(
        redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3fs_client) -> None:
    stores = Stores.from_settings(_settings(redis_server, tmp_path, s3_endpoint, bucket))
    blobs = stores.blobs()
    data = os.urandom(300_000)
    sha, size, local = blobs.put_stream(io.BytesIO(data), 10 << 20)
    assert (sha, size) == (_sha(data), len(data))
    assert s3fs_client.cat_file(f"{bucket}/sc/blobs/{sha[:2]}/{sha}") == data
    assert local.read_bytes() == data and local.is_relative_to(tmp_path / "data" / "cache")
    with pytest.raises(ConnectionResetError):
        blobs.put_stream(_Torn(50), 10 << 20)
    with pytest.raises(TooLarge):
        blobs.put_stream(io.BytesIO(os.urandom(5000)), 4000)
    keys = {p.split(f"{bucket}/sc/", 1)[1] for p in s3fs_client.find(f"{bucket}/sc")}
    assert keys == {f"blobs/{sha[:2]}/{sha}"}  # no temp key, no partial object
    assert not any(stores.cache.staging().iterdir())


def test_publish_failing_after_the_temp_upload_leaves_no_content_key(
        redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3fs_client,
        monkeypatch: pytest.MonkeyPatch) -> None:
    stores = Stores.from_settings(_settings(redis_server, tmp_path, s3_endpoint, bucket))
    storage = stores.storage
    assert isinstance(storage, FsspecStore)

    def broken_copy(*args: object, **kwargs: object) -> None:
        raise OSError("connection dropped during the copy")

    monkeypatch.setattr(storage.fs, "copy", broken_copy)
    src = tmp_path / "x.bin"
    src.write_bytes(os.urandom(1000))
    with pytest.raises(OSError, match="dropped"):
        storage.publish_file(src, "blobs/ab/abcd")
    assert not s3fs_client.exists(f"{bucket}/sc/blobs/ab/abcd")
    assert not s3fs_client.exists(f"{bucket}/sc/{INCOMING}") or not s3fs_client.find(f"{bucket}/sc/{INCOMING}")


def test_local_publish_is_a_rename_and_keeps_the_existing_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first, second = tmp_path / "a.tmp", tmp_path / "b.tmp"
    first.write_bytes(b"one")
    second.write_bytes(b"one")
    assert store.publish_file(first, "blobs/x/y") is True
    assert store.publish_file(second, "blobs/x/y") is False
    assert (tmp_path / "blobs/x/y").read_bytes() == b"one" and not first.exists() and not second.exists()


def test_a_corrupted_blob_in_the_bucket_is_a_clear_error_never_data(
        redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3fs_client) -> None:
    settings = _settings(redis_server, tmp_path, s3_endpoint, bucket)
    data = os.urandom(100_000)
    sha, size, _ = Stores.from_settings(settings).blobs().put_stream(io.BytesIO(data), 1 << 20)
    s3fs_client.pipe_file(f"{bucket}/sc/blobs/{sha[:2]}/{sha}", data[:-1] + bytes([data[-1] ^ 1]))
    other_host = Stores.from_settings(settings.model_copy(update={"data_dir": tmp_path / "host-b"}))
    with pytest.raises(CorruptObject, match=f"not the {sha}"):
        other_host.blobs().read_path(sha)
    assert other_host.cache.get("blobs", sha) is None  # nothing kept
    entry = FileEntry(name="a.wav", sha256=sha, bytes=size, duration_s=1.0, sample_rate=16000, channels=1,
                      format="WAV")
    with pytest.raises(InputChanged, match="a.wav: .*corrupt"):
        read_entry(entry, other_host.blobs())


def test_a_corrupted_embedding_in_the_bucket_is_a_miss(redis_server: str, tmp_path: Path, s3_endpoint: str,
                                                     bucket: str, s3fs_client) -> None:
    settings = _settings(redis_server, tmp_path, s3_endpoint, bucket)
    frames = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache = Stores.from_settings(settings).embeddings("k1")
    cache.put("a" * 64, Embedded(frames, None))
    fresh = Stores.from_settings(settings.model_copy(update={"data_dir": tmp_path / "b"})).embeddings("k1")
    assert np.array_equal(fresh.get("a" * 64).frames, frames)
    buf = io.BytesIO()  # a well-formed npz whose numbers changed but whose checksum is the old one
    np.savez(buf, sha256=np.array(arrays_digest(frames, None)), frames=frames + 1)
    s3fs_client.pipe_file(f"{bucket}/sc/{cache.key('a' * 64)}", buf.getvalue())
    third = Stores.from_settings(settings.model_copy(update={"data_dir": tmp_path / "c"})).embeddings("k1")
    assert third.get("a" * 64) is None


def test_read_cache_stays_within_its_bound_evicting_the_least_recently_used(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path / "cache", max_bytes=3500)
    for i in range(3):
        cache.put_bytes("blobs", f"{i:02d}" * 32, bytes(1000))
        time.sleep(0.01)
    assert cache.get("blobs", "00" * 32) is not None  # used again: now the most recent
    time.sleep(0.01)
    cache.put_bytes("blobs", "03" * 32, bytes(1000))
    assert cache.total_bytes() <= 3500
    assert cache.get("blobs", "01" * 32) is None  # the least recently used went
    assert all(cache.get("blobs", f"{i:02d}" * 32) is not None for i in (0, 2, 3))
    big = cache.put_bytes("blobs", "04" * 32, bytes(5000))  # larger than the bound: kept until the next entry
    assert big.exists() and cache.total_bytes() == 5000


def test_the_manifests_mirror_in_the_bucket_restores_a_lost_redis(
        redis_db: Redis, redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3fs_client) -> None:
    stores = Stores.from_settings(_settings(redis_server, tmp_path, s3_endpoint, bucket))
    entry = FileEntry(name="a.wav", sha256="b" * 64, bytes=10, duration_s=1.0, sample_rate=16000, channels=1,
                      format="WAV")
    saved = stores.manifests(redis_db).save(build_manifest([entry], "upload"))
    assert s3fs_client.exists(f"{bucket}/sc/datasets/{saved.id}.json")
    redis_db.flushdb()
    assert stores.manifests(redis_db).all_ids() == [saved.id]
    assert stores.manifests(redis_db).get(saved.id).files[0].sha256 == "b" * 64


def test_gc_removes_unreferenced_blobs_and_old_temp_keys_from_the_bucket(
        redis_db: Redis, redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3fs_client) -> None:
    settings = _settings(redis_server, tmp_path, s3_endpoint, bucket)
    stores = Stores.from_settings(settings)
    kept, orphan = os.urandom(2000), os.urandom(3000)
    blobs = stores.blobs(BlobRefs(redis_db))
    kept_sha = blobs.put_stream(io.BytesIO(kept), 1 << 20)[0]
    orphan_sha = BlobStore(stores.storage, prefix="blobs", cache=stores.cache).put_stream(
        io.BytesIO(orphan), 1 << 20)[0]
    entry = FileEntry(name="k.wav", sha256=kept_sha, bytes=2000, duration_s=1.0, sample_rate=16000, channels=1,
                      format="WAV")
    stores.manifests(redis_db).save(build_manifest([entry], "upload"))
    blobs.release()
    s3fs_client.pipe_file(f"{bucket}/sc/{INCOMING}/crashed-upload", b"partial")
    report = run_gc(settings, redis_db, now=time.time() + 2 * DAY, stores=stores)
    assert report.blobs.count == 1 and report.blobs.bytes == 3000 and report.incoming.count == 1
    left = {p.split(f"{bucket}/sc/", 1)[1] for p in s3fs_client.find(f"{bucket}/sc")}
    assert f"blobs/{kept_sha[:2]}/{kept_sha}" in left
    assert f"blobs/{orphan_sha[:2]}/{orphan_sha}" not in left and not any(k.startswith(INCOMING) for k in left)


def test_embedding_cache_layout_on_a_local_store_is_the_data_dir_one(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "embeddings", "key")
    cache.put("c" * 64, Embedded(np.ones((2, 3), np.float32), None))
    assert (tmp_path / "embeddings" / "key" / "cc" / f"{'c' * 64}.npz").is_file()


def test_a_large_blob_is_fetched_in_ranged_reads_of_one_block(
        redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs.core

    from soundcheck import read_cache, storage

    monkeypatch.setattr(storage, "BLOCK_BYTES", 1 << 20)
    monkeypatch.setattr(read_cache, "BLOCK_BYTES", 1 << 20)
    settings = _settings(redis_server, tmp_path, s3_endpoint, bucket)
    data = os.urandom(5 * (1 << 20) + 123)
    sha = Stores.from_settings(settings).blobs().put_stream(io.BytesIO(data), 10 << 20)[0]
    ranges: list[tuple[int, int]] = []
    original = s3fs.core.S3File._fetch_range

    def spy(self, start: int, end: int) -> bytes:
        ranges.append((start, end))
        return original(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", spy)
    other = Stores.from_settings(settings.model_copy(update={"data_dir": tmp_path / "host-b"}))
    assert other.blobs().read_path(sha).read_bytes() == data
    assert len(ranges) >= 3 and max(end - start for start, end in ranges) <= 2 << 20  # readahead: 2 blocks at most


def test_compose_minio_profile_runs_api_and_worker_on_the_bucket() -> None:
    import yaml

    services = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())["services"]
    minio = services["minio"]
    assert minio["profiles"] == ["minio"] and "healthcheck" in minio
    assert any(v.startswith("minio-data:") for v in minio["volumes"])
    for name in ("api-minio", "worker-minio"):
        env = services[name]["environment"]
        assert services[name]["profiles"] == ["minio"]
        assert env["SOUNDCHECK_STORAGE_URL"].startswith("s3://") and env["SOUNDCHECK_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert not any(v.startswith("data:") for v in services[name]["volumes"])  # nothing shared but the bucket


def test_blobs_and_gc_on_minio(redis_db: Redis, redis_server: str, tmp_path: Path, minio_endpoint: str) -> None:
    bucket = make_bucket(minio_endpoint)
    settings = _settings(redis_server, tmp_path, minio_endpoint, bucket)
    stores = Stores.from_settings(settings)
    data = os.urandom(50_000)
    sha = stores.blobs().put_stream(io.BytesIO(data), 1 << 20)[0]
    other = Stores.from_settings(settings.model_copy(update={"data_dir": tmp_path / "b"}))
    assert other.blobs().read_path(sha).read_bytes() == data
    report = run_gc(settings, redis_db, now=time.time() + 2 * DAY, stores=stores)
    assert report.blobs.count == 1 and not stores.storage.exists(f"blobs/{sha[:2]}/{sha}")
