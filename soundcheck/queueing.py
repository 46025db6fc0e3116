"""The RQ queue, worker liveness and the failure callback, as the api and the workers both see them (no torch).

Liveness is RQ's own: a worker's hash (``rq:worker:<name>``) carries ``last_heartbeat`` and expires when the
worker stops beating; its running job's entry in RQ's StartedJobRegistry expires the same way, and RQ then
treats the job as abandoned (retried while retries are left). Soundcheck workers beat from a thread, also
while a job runs, with a short TTL (SOUNDCHECK_WORKER_HEARTBEAT_TTL_S), see ``worker.gpu_worker``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import AbandonedJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from soundcheck.jobstore import CANCEL_KEY, CANCELED, OPEN_JOBS, TERMINAL, WORKER_MODELS_FIELD, JobStore
from soundcheck.settings import Settings, get_settings

log = logging.getLogger("soundcheck.queueing")
#: The RQ failure callback of every evaluation job (a path: the api never imports it).
FAILURE_CALLBACK = "soundcheck.queueing.on_job_failure"
#: A record without its RQ job is "vanished" only after this long.
ENQUEUE_GRACE_S = 30.0
_WORKER_FIELDS = ("state", "hostname", "last_heartbeat", "death", WORKER_MODELS_FIELD)


def queue(redis: Redis, settings: Settings, model: str | None = None) -> Queue:
    """The shared queue, or the queue of one model: only workers that loaded the model listen there, so a job
    never lands on a worker that cannot run it."""
    name = settings.queue_name if model is None else f"{settings.queue_name}:{model}"
    return Queue(name, connection=redis, serializer=JSONSerializer)


def worker_key(name: str) -> str:
    return f"{Worker.redis_worker_namespace_prefix}{name}"


def _alive(last_heartbeat: bytes | None, death: bytes | None) -> bool:
    """RQ deletes nothing of a SIGKILLed worker: its hash simply expires when the beats stop. A worker that
    shut down cleanly says so (``death``)."""
    return last_heartbeat is not None and death is None


def worker_alive(redis: Redis, name: str) -> bool:
    return _alive(*redis.hmget(worker_key(name), "last_heartbeat", "death"))


def live_workers(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Workers alive on our queue, with the models they loaded and could not: two round trips, no writes."""
    keys = sorted(k.decode() if isinstance(k, bytes) else k
                  for k in redis.smembers(WORKERS_BY_QUEUE_KEY % settings.queue_name))
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, *_WORKER_FIELDS)
    out = []
    prefix = len(Worker.redis_worker_namespace_prefix)
    for key, (state, hostname, last_heartbeat, death, models) in zip(keys, pipe.execute(), strict=True):
        if not _alive(last_heartbeat, death):
            continue
        info = json.loads(models) if models else {}
        out.append({"name": key[prefix:], "state": state.decode() if state else None,
                    "hostname": hostname.decode() if hostname else None, **info})
    return out


def _attempts_failure(n: int, notes: list[str]) -> str:
    return (f"the job was attempted {n} time{'s' if n != 1 else ''} (SOUNDCHECK_JOB_MAX_ATTEMPTS="
            f"{get_settings().job_max_attempts}) and every attempt ended without a result: {'; '.join(notes)}; "
            "check the worker logs and memory, then submit it again")


def on_job_failure(job: Job, connection: Redis, exc_type: type | None, exc_value: BaseException | None,
                   _tb: Any) -> None:
    """RQ failure callback: keeps the job record true when RQ, not the task, ends an attempt.

    RQ calls it when a worker's maintenance finds the job abandoned (its worker died; RQ retries the job
    right after this while ``retries_left``) and when the task raised before it could record anything. A
    canceled job is never retried; a job whose record already says failed is left alone."""
    store = JobStore(connection)
    view = store.get(job.id, with_result=False)
    if view is None or view.status in TERMINAL:
        job.retries_left = 0  # nothing left to run: the record is final
        return
    if exc_type is None or not issubclass(exc_type, AbandonedJobError):
        job.retries_left = 0  # the task itself failed: running it again gives the same answer
        store.fail(job.id, f"the worker could not run the job ({getattr(exc_type, '__name__', 'error')}: "
                           f"{exc_value}); the worker log has the traceback")
        return
    if connection.exists(CANCEL_KEY.format(job.id)):
        job.retries_left = 0
        store.fail(job.id, CANCELED)
        return
    attempt = max(view.attempts, 1)
    where = f" on worker {view.worker}" if view.status == "running" and view.worker else ""
    note = (f"attempt {attempt}{where} ended without a result: the worker stopped responding (killed, out of "
            "memory or crashed)")
    if job.retries_left:
        log.warning("job %s: %s; retrying (%s retries left)", job.id, note, job.retries_left)
        store.requeue(job.id, note)
        return
    store.fail(job.id, _attempts_failure(attempt, [*store.attempt_notes(job.id), note]))


def _rq_failure(job: Job) -> str:
    info = job.exc_info or ""
    if "JobTimeoutException" in info:
        return f"it exceeded the time limit of {job.timeout} s (SOUNDCHECK_JOB_TIMEOUT_S)"
    last = [line for line in info.strip().splitlines() if line.strip()]
    return last[-1] if last else f"RQ status {job.get_status(refresh=False)}"


def _rq_statuses(redis: Redis, rq_ids: list[str]) -> list[bytes | None]:
    """The RQ status field of each job hash, in one round trip (None: the hash is gone)."""
    pipe = redis.pipeline(transaction=False)
    for rq_id in rq_ids:
        pipe.hget(Job.key_for(rq_id), "status")
    return pipe.execute()


def reconcile_open_jobs(redis: Redis) -> int:
    """Fail records whose RQ job ended without the task saying so, or vanished (run by one worker at a time,
    periodically; two round trips for all open jobs). Returns how many records it failed."""
    store = JobStore(redis)
    ids = store.open_ids()
    if not ids:
        return 0
    statuses = _rq_statuses(redis, ids)
    views = {v.id: v for v in store.get_many(ids)}
    failed = 0
    now = datetime.now(UTC)
    for job_id, raw_status in zip(ids, statuses, strict=True):
        view = views.get(job_id)
        if view is None:
            redis.srem(OPEN_JOBS, job_id)
            continue
        if view.status in TERMINAL:
            continue
        status = raw_status.decode() if raw_status else None
        if status is None:
            age = (now - view.created_at).total_seconds() if view.created_at else 1e9
            if age > ENQUEUE_GRACE_S and not redis.exists(Job.key_for(job_id)):
                store.fail(job_id, "the queued job vanished from Redis (lost from the queue); submit it again")
                failed += 1
        elif status == JobStatus.CANCELED.value:
            store.fail(job_id, CANCELED)
            failed += 1
        elif status in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
            rq_job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
            store.fail(job_id, f"the worker stopped without finishing the job ({_rq_failure(rq_job)}); "
                               "submit it again")
            failed += 1
    return failed


def reconcile_open_comparisons(redis: Redis) -> int:
    """Fail comparison records whose RQ job ended without the task saying so (its worker died: RQ's abandoned
    job handling marks it failed) or vanished; a comparison is not retried, its error says to submit it again."""
    from soundcheck.comparestore import ComparisonStore

    store = ComparisonStore(redis)
    ids = store.open_ids()
    if not ids:
        return 0
    failed = 0
    now = datetime.now(UTC)
    views = {v.id: v for v in store.list(500)}
    for cid, raw_status in zip(ids, _rq_statuses(redis, [f"comparison-{c}" for c in ids]), strict=True):
        status = raw_status.decode() if raw_status else None
        view = views.get(cid)
        if view is None or view.status in TERMINAL:
            continue
        if status is None:
            age = (now - view.created_at).total_seconds() if view.created_at else 1e9
            if age > ENQUEUE_GRACE_S and not redis.exists(Job.key_for(f"comparison-{cid}")):
                failed += store.fail(cid, "the queued comparison vanished from Redis; submit it again")
        elif status in (JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value):
            failed += store.fail(cid, "the worker stopped without finishing the comparison; submit it again")
    return failed
