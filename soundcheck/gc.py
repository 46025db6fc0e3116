"""Garbage collection and retention: what no dataset, job or current worker needs is removed, and said so.

`soundcheck gc` runs :func:`run_gc` once; a worker runs it every ``SOUNDCHECK_GC_INTERVAL_S`` (one worker per
interval, whoever gets there first). It removes

- blobs no dataset references and no upload in flight has claimed (checked under the blob's lock, the same
  one an upload takes before linking a blob in), and upload temp files left by a crashed api;
- cached per-file embeddings under an embedding key no worker has announced for
  ``SOUNDCHECK_EMBEDDING_KEY_TTL_S`` (old model weights, resampler or package versions: never read again),
  and those of files no dataset holds any more;
- finished and failed job records (and results) that ended more than ``SOUNDCHECK_JOB_RETENTION_S`` ago;
- cached statistics beyond ``SOUNDCHECK_STATS_CACHE_MAX_BYTES``, least recently used first.

Files younger than ``SOUNDCHECK_GC_MIN_AGE_S`` are never touched, and nothing a queued or running job reads
can go: its datasets exist (DELETE /v1/datasets answers 409 while a job uses one), so their blobs and
embeddings are referenced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from soundcheck import stats_lru
from soundcheck.datastore import INCOMING_PREFIX, BlobRefs, ManifestStore, blob_shas
from soundcheck.jobspec import JobView
from soundcheck.jobstore import JOB_INDEX, JOB_KEY, RESULT_KEY, TERMINAL, JobStore
from soundcheck.settings import Settings
from soundcheck.storage import INCOMING, ObjectInfo, Storage
from soundcheck.stores import EMBEDDINGS, Stores

log = logging.getLogger("soundcheck.gc")
#: Embedding keys workers use → when one last said so (seconds since the epoch).
EMBEDDING_KEYS = "sc:embedding-keys"
#: Set for one interval by the worker that runs the periodic gc, so N workers run it once.
GC_TURN_KEY = "sc:gc:turn"
GC_LOCK_KEY = "sc:gc:lock"
#: Temp files of writes in progress (uploads, embedding-cache entries) are collected only after this long
#: whatever SOUNDCHECK_GC_MIN_AGE_S says: removing one under a live writer would fail its upload or job.
TEMP_MIN_AGE_S = 24 * 3600.0
#: A worker repeats its embedding keys at least this often (well inside SOUNDCHECK_EMBEDDING_KEY_TTL_S).
ANNOUNCE_EVERY_S = 3600.0


@dataclass
class Freed:
    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass
class GcReport:
    dry_run: bool = False
    blobs: Freed = field(default_factory=Freed)
    blobs_kept: int = 0
    incoming: Freed = field(default_factory=Freed)
    embeddings_stale_key: Freed = field(default_factory=Freed)
    embeddings_unreferenced: Freed = field(default_factory=Freed)
    embedding_keys_current: int = 0
    jobs: Freed = field(default_factory=Freed)
    stats_evicted: Freed = field(default_factory=Freed)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(f.bytes for f in (self.blobs, self.incoming, self.embeddings_stale_key,
                                     self.embeddings_unreferenced, self.jobs, self.stats_evicted))

    def lines(self) -> list[str]:
        verb = "would free" if self.dry_run else "freed"
        rows = [("unreferenced blobs", self.blobs), ("upload temp files", self.incoming),
                ("embeddings of old provenance", self.embeddings_stale_key),
                ("embeddings of files no dataset holds", self.embeddings_unreferenced),
                ("expired job records", self.jobs), ("statistics beyond the cache bound", self.stats_evicted)]
        out = [f"{name}: {verb} {f.count} ({_human(f.bytes)})" for name, f in rows]
        out.append(f"kept {self.blobs_kept} referenced blobs; {self.embedding_keys_current} current embedding keys")
        out.extend(self.notes)
        out.append(f"total: {verb} {_human(self.bytes_freed)}")
        return out


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def announce_keys(redis: Redis, keys: Iterable[str], now: float | None = None) -> None:
    """A worker says which embedding keys it computes (at start and at every gc tick)."""
    mapping = {k: now or time.time() for k in keys}
    if mapping:
        redis.zadd(EMBEDDING_KEYS, mapping)


def current_keys(redis: Redis, settings: Settings, now: float) -> set[str]:
    raw = redis.zrangebyscore(EMBEDDING_KEYS, now - settings.embedding_key_ttl_s, "+inf")
    return {k.decode() if isinstance(k, bytes) else k for k in raw}


def _remove(storage: Storage, obj: ObjectInfo, freed: Freed, dry_run: bool) -> None:
    size = obj.size if dry_run else storage.delete(obj.key)
    if dry_run or size:
        freed.add(size)


def _referenced(manifests: ManifestStore) -> tuple[set[str], set[str]]:
    """(blobs any manifest needs, every file sha256 any manifest holds)."""
    blobs: set[str] = set()
    files: set[str] = set()
    for dataset in manifests.all_ids():
        view = manifests.get(dataset)
        if view is None:
            continue
        blobs |= blob_shas(view)
        files |= {f.sha256 for f in view.files or []}
    return blobs, files


def collect_blobs(settings: Settings, stores: Stores, refs: BlobRefs, needed: set[str], report: GcReport,
                  now: float) -> None:
    """Unreferenced blobs and upload temp files, in the shared storage (a data dir or a bucket)."""
    storage, blobs = stores.storage, stores.blobs()
    cutoff = now - settings.gc_min_age_s
    temp_cutoff = now - max(settings.gc_min_age_s, TEMP_MIN_AGE_S)
    prefix = blobs.prefix
    for obj in storage.list(INCOMING):  # an object store's temp keys of uploads (storage.publish_file)
        if obj.mtime < temp_cutoff:
            _remove(storage, obj, report.incoming, report.dry_run)
    for obj in storage.list(prefix.rstrip("/")):
        rel = obj.key[len(prefix):]
        if rel.startswith(INCOMING_PREFIX):  # a local upload's temp file
            if obj.mtime < temp_cutoff:
                _remove(storage, obj, report.incoming, report.dry_run)
            continue
        parts = rel.split("/")
        if len(parts) != 2 or len(parts[0]) != 2 or not parts[1].startswith(parts[0]):
            continue
        sha = parts[1]
        if sha in needed or obj.mtime >= cutoff:
            report.blobs_kept += 1
            continue
        if report.dry_run:
            if not refs.in_use(sha):
                report.blobs.add(obj.size)
            continue
        freed = refs.remove_if_unused(sha, blobs)  # the authoritative check, under the lock
        if freed:
            report.blobs.add(freed)
        else:
            report.blobs_kept += 1
    # the (at most 256) local fan-out folders stay: removing one could race an upload between mkdir and rename


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone
        path.rmdir()


def collect_embeddings(settings: Settings, stores: Stores, keys: set[str], files: set[str], report: GcReport,
                       now: float) -> None:
    """Cached embeddings of old provenance or of files no dataset holds, in the shared storage."""
    storage, prefix = stores.storage, EMBEDDINGS
    cutoff = now - settings.gc_min_age_s
    temp_cutoff = now - max(settings.gc_min_age_s, TEMP_MIN_AGE_S)
    if not keys:
        report.notes.append("no worker has announced its embedding keys yet: embeddings of old provenance kept")
    stale_dirs: set[str] = set()
    for obj in storage.list(prefix):
        parts = obj.key[len(prefix) + 1:].split("/")
        if len(parts) < 2:
            continue
        name = parts[-1]
        is_temp = name.endswith(".tmp")
        if obj.mtime >= (temp_cutoff if is_temp else cutoff):
            continue
        if keys and parts[0] not in keys:
            stale_dirs.add(parts[0])
            _remove(storage, obj, report.embeddings_stale_key, report.dry_run)
        elif is_temp or (name.endswith(".npz") and name[:-4] not in files):
            _remove(storage, obj, report.embeddings_unreferenced, report.dry_run)
    root = storage.local_path(prefix)
    if root is not None and not report.dry_run:  # folders of a current key stay: a worker may write there
        for key in sorted(stale_dirs):
            key_dir = root / key
            for sub in sorted((p for p in key_dir.rglob("*") if p.is_dir()), reverse=True):
                _rmdir_if_empty(sub)
            _rmdir_if_empty(key_dir)


def _ended(view: JobView) -> datetime | None:
    return view.ended_at or view.created_at


def collect_jobs(redis: Redis, settings: Settings, report: GcReport, now: float) -> None:
    """Finished and failed records (and results) that ended more than the retention ago; never a job that has
    not ended (the api reconciles those)."""
    horizon = now - settings.job_retention_s
    # the index is scored by creation time: a job that ended before the horizon was created before it
    ids = [i.decode() if isinstance(i, bytes) else i for i in redis.zrangebyscore(JOB_INDEX, "-inf", horizon)]
    for job_id in ids:
        raw = redis.get(JOB_KEY.format(job_id))
        if raw is None:
            if not report.dry_run:
                redis.zrem(JOB_INDEX, job_id)
            continue
        try:
            view = JobView.model_validate_json(raw)
        except ValueError:  # unreadable (older schema, corrupt): shown as failed; the index says it is this old
            view = None
        if view is not None:
            ended = _ended(view)
            if view.status not in TERMINAL or ended is None or ended.timestamp() >= horizon:
                continue
        size = len(raw) + int(redis.strlen(RESULT_KEY.format(job_id)) or 0)
        if not report.dry_run:
            pipe = redis.pipeline()
            pipe.delete(JOB_KEY.format(job_id), RESULT_KEY.format(job_id))
            pipe.zrem(JOB_INDEX, job_id)
            JobStore.forget_in_run(pipe, redis, view.spec if view is not None else None, job_id)
            pipe.execute()
        report.jobs.add(size)


def run_gc(settings: Settings, redis: Redis, *, current: Iterable[str] = (), dry_run: bool = False,
           now: float | None = None, stores: Stores | None = None) -> GcReport:
    """One collection pass (see the module docstring). ``current``: embedding keys of the calling worker;
    ``stores``: the caller's storage context (built from the settings when not given)."""
    now = time.time() if now is None else now
    stores = stores or Stores.from_settings(settings)
    report = GcReport(dry_run=dry_run)
    announce_keys(redis, current, now)
    with redis.lock(GC_LOCK_KEY, timeout=3600, blocking_timeout=60):
        manifests = stores.manifests(redis)
        refs = BlobRefs(redis)
        refs.ensure_indexed(manifests)
        needed_blobs, held_files = _referenced(manifests)
        collect_blobs(settings, stores, refs, needed_blobs, report, now)
        keys = current_keys(redis, settings, now)
        report.embedding_keys_current = len(keys)
        collect_embeddings(settings, stores, keys, held_files, report, now)
        if not dry_run:
            stores.cache.remove_stale_staging(TEMP_MIN_AGE_S)
        collect_jobs(redis, settings, report, now)
        if not dry_run:
            evicted = stats_lru.enforce(redis, settings.stats_cache_max_bytes)
            report.stats_evicted = Freed(evicted.count, evicted.bytes)
    return report


def start_periodic(settings: Settings, keys: Iterable[str], stores: Stores | None = None) -> threading.Thread:
    """A worker's daemon thread: announce its embedding keys now and at least hourly (also with gc off, so a
    long-lived worker's cache never looks stale), and run gc every interval when it is this worker's turn (one
    worker per interval). Errors are logged, never fatal to the worker."""
    keys = list(keys)
    redis = Redis.from_url(settings.redis_url, socket_timeout=60)
    interval = settings.gc_interval_s
    tick = min(interval, ANNOUNCE_EVERY_S) if interval > 0 else ANNOUNCE_EVERY_S
    try:
        announce_keys(redis, keys)
    except RedisError as exc:
        log.warning("could not announce embedding keys: %s", exc)

    def loop() -> None:
        wait = min(tick, 60.0)  # the first pass soon after start
        next_gc = 0.0
        while True:
            time.sleep(wait)
            wait = tick
            try:
                announce_keys(redis, keys)
                if interval > 0 and time.monotonic() >= next_gc:
                    next_gc = time.monotonic() + interval
                    if redis.set(GC_TURN_KEY, os.getpid(), nx=True, ex=max(1, int(interval * 0.9))):
                        report = run_gc(settings, redis, current=keys, stores=stores)
                        log.info("gc: %s", "; ".join(report.lines()))
            except Exception:  # noqa: BLE001 - gc must never take a worker down
                log.exception("gc failed; retrying at the next interval")

    thread = threading.Thread(target=loop, name="soundcheck-gc", daemon=True)
    thread.start()
    return thread
