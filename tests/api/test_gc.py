"""Garbage collection and retention on real Redis and a real data dir (datasets made through the api)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from redis import Redis

from soundcheck import stats_lru
from soundcheck.datastore import BlobRefs, BlobStore
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.embeddings.base import Embedded
from soundcheck.gc import announce_keys, run_gc
from soundcheck.jobspec import JobCreate
from soundcheck.jobstore import JOB_INDEX, JOB_KEY, RESULT_KEY, JobStore
from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes
from worker.stats_cache import STATS_KEY, StatsCache

DAY = 24 * 3600.0


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _age_tree(root: Path, seconds: float) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            _age(p, seconds)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _orphan_blob(settings: Settings, data: bytes) -> Path:
    """A blob no dataset references (as an api that crashed mid-upload would leave)."""
    path = BlobStore(settings.blob_dir).path(_sha(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_gc_frees_unreferenced_blobs_and_keeps_referenced_claimed_and_young_ones(
        api: TestClient, api_settings: Settings, redis_db: Redis) -> None:
    kept = wav_bytes(tone(freq=300))
    assert api.post("/v1/datasets", files=[("files", ("kept.wav", kept))]).status_code == 201
    orphan = _orphan_blob(api_settings, os.urandom(4000))
    claimed = _orphan_blob(api_settings, os.urandom(3000))  # an upload in flight holds it
    BlobRefs(redis_db).claim(claimed.name, "request-token")
    young = _orphan_blob(api_settings, os.urandom(2000))
    stale_tmp = api_settings.blob_dir / ".incoming-crashed"
    stale_tmp.write_bytes(b"x" * 1000)
    writing_tmp = api_settings.blob_dir / ".incoming-slow-client"  # past the min age, but a write in progress
    writing_tmp.write_bytes(b"y" * 10)
    _age_tree(api_settings.blob_dir, 2 * DAY)
    _age(young, 10)
    _age(writing_tmp, 2 * 3600)

    report = run_gc(api_settings, redis_db)

    assert not orphan.exists() and not stale_tmp.exists()
    assert BlobStore(api_settings.blob_dir).path(_sha(kept)).exists()
    assert claimed.exists() and young.exists() and writing_tmp.exists()
    assert (report.blobs.count, report.blobs.bytes) == (1, 4000)
    assert (report.incoming.count, report.incoming.bytes) == (1, 1000)
    assert report.blobs_kept == 3
    BlobRefs(redis_db).unclaim(claimed.name, "request-token")
    assert run_gc(api_settings, redis_db).blobs.count == 1 and not claimed.exists()


def test_gc_never_removes_blobs_of_a_dataset_a_job_is_running_on(api: TestClient, api_settings: Settings,
                                                                 redis_db: Redis) -> None:
    data = {"a.wav": wav_bytes(tone(freq=440)), "b.wav": wav_bytes(tone(freq=660))}
    ds = api.post("/v1/datasets", files=[("files", (n, b)) for n, b in data.items()]).json()["id"]
    job = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()
    JobStore(redis_db).start(job["id"], worker="w")
    redis_db.delete("sc:blob-refs-indexed", *[f"sc:blob-refs:{_sha(b)}" for b in data.values()])  # lost refs
    _age_tree(api_settings.blob_dir, 2 * DAY)
    report = run_gc(api_settings.model_copy(update={"gc_min_age_s": 0.0}), redis_db)
    assert report.blobs.count == 0
    assert all(BlobStore(api_settings.blob_dir).path(_sha(b)).exists() for b in data.values())
    assert redis_db.sismember(f"sc:blob-refs:{_sha(data['a.wav'])}", ds)  # rebuilt from the manifests


def test_gc_removes_embeddings_of_old_provenance_and_of_files_no_dataset_holds(
        api: TestClient, api_settings: Settings, redis_db: Redis) -> None:
    held = wav_bytes(tone(freq=550))
    assert api.post("/v1/datasets", files=[("files", ("held.wav", held))]).status_code == 201
    emb = Embedded(np.ones((3, 8), np.float32), None)
    current, old = "c" * 64, "0" * 64
    for key in (current, old):
        cache = EmbeddingCache(api_settings.embedding_cache_dir, key)
        cache.put(_sha(held), emb)
        cache.put("f" * 64, emb)  # a file of a deleted dataset
    _age_tree(api_settings.embedding_cache_dir, 2 * DAY)
    size = (api_settings.embedding_cache_dir / current / _sha(held)[:2] / f"{_sha(held)}.npz").stat().st_size

    untouched = run_gc(api_settings, redis_db)  # no worker announced a key yet: old provenance is not known
    assert untouched.embeddings_stale_key.count == 0 and untouched.embeddings_unreferenced.count == 2
    assert any("announced" in n for n in untouched.notes)
    assert EmbeddingCache(api_settings.embedding_cache_dir, old).get(_sha(held)) is not None

    report = run_gc(api_settings, redis_db, current=[current])
    assert (report.embeddings_stale_key.count, report.embeddings_stale_key.bytes) == (1, size)
    assert not (api_settings.embedding_cache_dir / old).exists()
    assert EmbeddingCache(api_settings.embedding_cache_dir, current).get(_sha(held)) is not None
    assert EmbeddingCache(api_settings.embedding_cache_dir, current).get("f" * 64) is None

    # a key announced long ago by a worker that is gone is old provenance too
    announce_keys(redis_db, [current], now=time.time() - 2 * api_settings.embedding_key_ttl_s)
    announce_keys(redis_db, ["d" * 64])
    assert run_gc(api_settings, redis_db).embeddings_stale_key.count == 1
    assert not (api_settings.embedding_cache_dir / current).exists()


def _job(store: JobStore, job_id: str, spec: JobCreate, ended_days_ago: float | None, status: str) -> None:
    store.create(job_id, spec)
    if status == "finished":
        store.finish(job_id, {"metrics": {}})
    elif status == "failed":
        store.fail(job_id, "bad input")
    if ended_days_ago is not None:
        then = datetime.now(UTC) - timedelta(days=ended_days_ago)
        view = store.get(job_id, with_result=False)
        update = {"created_at": then} if view.ended_at is None else {"created_at": then, "ended_at": then}
        store.redis.set(JOB_KEY.format(job_id), view.model_copy(update=update).model_dump_json(exclude={"result"}))
        store.redis.zadd(JOB_INDEX, {job_id: then.timestamp()})


def test_expired_job_records_are_removed_and_others_kept(api_settings: Settings, redis_db: Redis) -> None:
    store = JobStore(redis_db)
    spec = JobCreate(reference="a" * 64, candidate="b" * 64)
    _job(store, "old-finished", spec, 40, "finished")
    _job(store, "old-failed", spec, 31, "failed")
    _job(store, "recent-finished", spec, 29, "finished")
    _job(store, "old-queued", spec, 40, "queued")  # not ended: never collected
    redis_db.set(JOB_KEY.format("old-unreadable"), b"\xff not a job record")  # shown as failed; indexed 40 d ago
    redis_db.zadd(JOB_INDEX, {"old-unreadable": time.time() - 40 * DAY})
    report = run_gc(api_settings, redis_db)
    assert report.jobs.count == 3 and report.jobs.bytes > 0
    assert not redis_db.exists(JOB_KEY.format("old-unreadable"))
    assert store.get("old-finished") is None and not redis_db.exists(RESULT_KEY.format("old-finished"))
    assert store.get("old-failed") is None
    assert store.get("recent-finished").result == {"metrics": {}}
    assert store.get("old-queued").status == "queued"
    assert {j.id for j in store.list()} == {"recent-finished", "old-queued"}


def test_expired_jobs_leave_their_run_and_an_emptied_run_goes(api_settings: Settings, redis_db: Redis) -> None:
    store = JobStore(redis_db)

    def spec(run: str, step: int) -> JobCreate:
        return JobCreate(reference="a" * 64, candidate="b" * 64, run=run, step=step)

    _job(store, "r-old-0", spec("r", 0), 40, "finished")
    _job(store, "r-old-1", spec("r", 1), 40, "finished")
    _job(store, "r-new-1", spec("r", 1), 1, "finished")  # step 1 keeps a job
    _job(store, "r-new-2", spec("r", 2), 1, "finished")
    _job(store, "gone-0", spec("gone", 0), 40, "failed")
    assert run_gc(api_settings, redis_db).jobs.count == 3
    assert [(r.name, r.steps, r.last_step) for r in store.runs()] == [("r", 2, 2)]
    assert [p.job_id for p in store.run("r").points] == ["r-new-1", "r-new-2"]
    assert store.run("gone") is None


def test_stats_cache_evicts_the_least_recently_used_beyond_the_bound(redis_db: Redis) -> None:
    cache = StatsCache(redis_db)
    cache.max_bytes = 2500
    cache.put("a", b"a" * 1000)
    cache.put("b", b"b" * 1000)
    assert cache.get("a") == b"a" * 1000  # a is now more recent than b
    cache.put("c", b"c" * 1000)  # 3000 > 2500: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert stats_lru.total_bytes(redis_db) == 2000
    cache.put("c", b"c" * 2000)  # a replaced value counts once, at its new size: a goes
    assert cache.get("a") is None and stats_lru.total_bytes(redis_db) == 2000
    cache.max_bytes = 100
    cache.put("huge", b"h" * 5000)  # larger than the bound alone: kept (just written), all else evicted
    assert cache.get("huge") is not None and cache.get("c") is None
    assert sorted(redis_db.scan_iter(match="sc:stats:*")) == [STATS_KEY.format("huge").encode()]


def test_gc_bounds_statistics_written_before_the_bound_existed(api_settings: Settings, redis_db: Redis) -> None:
    for i in range(5):
        redis_db.set(STATS_KEY.format(f"legacy{i}"), b"x" * 1000)  # no bookkeeping
    StatsCache(redis_db).put("fresh", b"y" * 1000)
    report = run_gc(api_settings.model_copy(update={"stats_cache_max_bytes": 2500}), redis_db)
    assert (report.stats_evicted.count, report.stats_evicted.bytes) == (4, 4000)
    left = sorted(k.decode() for k in redis_db.scan_iter(match="sc:stats:*"))
    assert STATS_KEY.format("fresh") in left and len(left) == 2


def test_gc_command_prints_what_it_freed(api: TestClient, api_settings: Settings, redis_db: Redis,
                                         redis_server: str) -> None:
    orphan = _orphan_blob(api_settings, os.urandom(5000))
    _age(orphan, 2 * DAY)
    env = {**os.environ, "SOUNDCHECK_REDIS_URL": redis_server, "SOUNDCHECK_DATA_DIR": str(api_settings.data_dir)}
    dry = subprocess.run([sys.executable, "-m", "soundcheck.cli", "gc", "--dry-run"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert dry.returncode == 0, dry.stderr
    assert "unreferenced blobs: would free 1 (4.9 KiB)" in dry.stdout and orphan.exists()
    done = subprocess.run([sys.executable, "-m", "soundcheck.cli", "gc"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "unreferenced blobs: freed 1 (4.9 KiB)" in done.stdout and not orphan.exists()


def test_a_claim_of_a_request_that_died_expires(api_settings: Settings, redis_db: Redis) -> None:
    """An api killed mid-upload never releases its claim; the claim's expiry lets gc collect the blob."""
    blob = _orphan_blob(api_settings, os.urandom(1000))
    refs = BlobRefs(redis_db, claim_ttl_s=-1.0)  # a claim that has already expired
    refs.claim(blob.name, "dead-request")
    _age(blob, 2 * DAY)
    assert not refs.in_use(blob.name)
    assert run_gc(api_settings, redis_db).blobs.count == 1 and not blob.exists()


def test_dry_run_reports_and_removes_nothing(api_settings: Settings, redis_db: Redis) -> None:
    blob = _orphan_blob(api_settings, os.urandom(2048))
    _age(blob, 2 * DAY)
    store = JobStore(redis_db)
    _job(store, "old", JobCreate(reference="a" * 64, candidate="b" * 64), 40, "finished")
    report = run_gc(api_settings, redis_db, dry_run=True)
    assert (report.blobs.count, report.blobs.bytes, report.jobs.count) == (1, 2048, 1)
    assert blob.exists() and store.get("old") is not None
    assert "unreferenced blobs: would free 1 (2.0 KiB)" in report.lines()
