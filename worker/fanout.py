"""Fan-out of embedding work: chunks of a large set are embedded by every idle worker with the same model.

The job's own worker coordinates. It offers each chunk as a small RQ job and also works through the chunks
itself; a chunk is claimed in Redis (SET NX) by whoever starts it, so no chunk is embedded twice and a job
never waits for a worker that does not exist. Results meet in the shared per-file embedding cache, keyed by
provenance: a helper whose model has other weights computes another key and declines the chunk. A chunk
whose claimer died (its RQ worker hash lapsed: no heartbeat for SOUNDCHECK_WORKER_HEARTBEAT_TTL_S) is
taken back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from redis import Redis

from soundcheck.datastore import BlobStore
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.jobspec import FileEntry
from soundcheck.jobstore import CANCEL_KEY, TERMINAL, JobStore
from soundcheck.pipeline import embed_files
from soundcheck.queueing import live_workers, queue, worker_alive
from soundcheck.settings import get_settings

log = logging.getLogger("soundcheck.worker")
CLAIM_KEY = "sc:chunk:{}:{}:{}"  # job id, dataset id, first file index → the claimer's worker name
DONE_KEY = "sc:chunk-done:{}:{}:{}"
CHUNK_TTL_S = 24 * 3600
TASK = "worker.fanout.embed_chunk"


def chunk_bounds(n_files: int, chunk_files: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_files, n_files)) for start in range(0, n_files, chunk_files)]


def _claim(redis: Redis, key: str, worker: str) -> bool:
    return bool(redis.set(key, worker, nx=True, ex=CHUNK_TTL_S))


def helpers_for(redis: Redis, model_id: str, me: str) -> int:
    """How many other live workers hold this model (0: no point in offering chunks)."""
    return sum(1 for w in live_workers(redis, get_settings()) if w["name"] != me and model_id in w.get("loaded", []))


def embed_dataset_fanned(
    redis: Redis, job_id: str, dataset_id: str, files: Sequence[FileEntry], model: EmbeddingModel, emb_key: str,
    blobs: BlobStore, cache: EmbeddingCache, batch_size: int | None, me: str, chunk_files: int,
    on_files: Callable[[int], None], on_wait: Callable[[], None],
) -> None:
    """Make sure every file of ``files`` is in ``cache``: offer chunks to helpers, embed the unclaimed ones."""
    bounds = chunk_bounds(len(files), chunk_files)
    rq_queue = queue(redis, get_settings(), model.spec.id)
    for start, stop in bounds[1:]:  # the first chunk is ours at once
        rq_queue.enqueue_call(TASK, args=(job_id, dataset_id, model.spec.id, emb_key, start, stop), at_front=True,
                           timeout=get_settings().job_timeout_s, result_ttl=600, failure_ttl=24 * 3600)
    pending = list(bounds)
    while pending:
        progressed = False
        for start, stop in list(pending):
            done_key = DONE_KEY.format(job_id, dataset_id, start)
            claim_key = CLAIM_KEY.format(job_id, dataset_id, start)
            if redis.exists(done_key):
                pending.remove((start, stop))
                on_files(stop - start)
                progressed = True
                continue
            claimer = redis.get(claim_key)
            if claimer is not None and not worker_alive(redis, claimer.decode()):
                redis.delete(claim_key)  # its worker died: take the chunk back
            if _claim(redis, claim_key, me):
                # on_wait checks for a cancel (and refreshes progress) between files; progress counts the chunk
                embed_files(files[start:stop], model, blobs, cache, batch_size, lambda _n: on_wait())
                redis.set(done_key, me, ex=CHUNK_TTL_S)
                pending.remove((start, stop))
                on_files(stop - start)
                progressed = True
        if pending and not progressed:
            on_wait()
            time.sleep(0.2)


def embed_chunk(job_id: str, dataset_id: str, model_id: str, emb_key: str, start: int, stop: int) -> str:
    """RQ task run by a helper worker: embed one chunk into the shared cache, if still unclaimed."""
    from rq import get_current_job

    from worker.runtime import get_runtime

    settings = get_settings()
    rq_job = get_current_job()
    redis: Redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    record = JobStore(redis).get(job_id, with_result=False)
    if redis.exists(CANCEL_KEY.format(job_id)) or record is None or record.status in TERMINAL:
        return "the job has ended"
    runtime = get_runtime(settings)
    if model_id not in runtime.models:
        return "model not loaded here"
    model = runtime.models[model_id]
    if runtime.embedding_keys.get(model_id) != emb_key:
        return "different model provenance here"
    me = rq_job.worker_name if rq_job is not None and rq_job.worker_name else "local"
    if not _claim(redis, CLAIM_KEY.format(job_id, dataset_id, start), me):
        return "claimed by another worker"
    stores = runtime.storage()
    manifest = stores.manifests(redis).get(dataset_id)
    files = (manifest.files or [])[start:stop] if manifest is not None else []
    try:
        embed_files(files, model, stores.blobs(), stores.embeddings(emb_key), settings.batch_size)
    finally:  # also on error: the coordinator's own pass over the cache meets the bad file and says why
        redis.set(DONE_KEY.format(job_id, dataset_id, start), me, ex=CHUNK_TTL_S)
    return f"embedded {stop - start} files"
