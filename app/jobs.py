"""Enqueue evaluation jobs, read their state, and know which workers serve which models.

The api never imports the worker or torch: jobs are enqueued by function path with RQ's JSON serializer.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from app.validation import check_job
from soundcheck.datastore import ManifestStore
from soundcheck.embeddings.registry import SPECS
from soundcheck.jobspec import CLASS_PROB_METRICS, SIGNAL_METRICS, JobCreate, JobView
from soundcheck.jobstore import ALIVE_KEY, CANCEL_KEY, CANCELED, TERMINAL, JobStore
from soundcheck.queueing import live_workers, queue
from soundcheck.settings import Settings

TASK = "worker.tasks.evaluate"
#: A job record without its RQ job is "vanished" only after this long (the two are written one after the other).
ENQUEUE_GRACE_S = 30.0


class JobRequestError(ValueError):
    """A job that cannot run as asked (the api answers 422 or 404)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _check_models(spec: JobCreate, workers: list[dict[str, Any]]) -> None:
    if spec.embedding not in SPECS:
        raise JobRequestError(f"unknown embedding {spec.embedding!r}; valid: {', '.join(SPECS)}")
    wants_probs = sorted(set(spec.metrics) & CLASS_PROB_METRICS)
    if wants_probs and not SPECS[spec.embedding].n_classes:
        with_classes = [m for m, s in SPECS.items() if s.n_classes]
        raise JobRequestError(f"{', '.join(wants_probs)} need class probabilities: use embedding "
                              f"{' or '.join(with_classes)} (not {spec.embedding!r})")
    if spec.metrics and set(spec.metrics) <= SIGNAL_METRICS:
        return
    if not workers:
        return  # a worker may start later; the job waits in the queue
    if not any(spec.embedding in w.get("loaded", []) for w in workers):
        reasons = {w.get("unavailable", {}).get(spec.embedding) for w in workers} - {None}
        why = f": {'; '.join(sorted(reasons))}" if reasons else ""
        raise JobRequestError(f"no live worker has model {spec.embedding!r} loaded{why}")


def create_job(redis: Redis, settings: Settings, spec: JobCreate) -> JobView:
    manifests = ManifestStore(redis, settings.data_dir / "datasets")
    for role in ("reference", "candidate"):
        if manifests.get(getattr(spec, role)) is None:
            raise JobRequestError(f"{role} dataset {getattr(spec, role)!r} not found; POST /v1/datasets first", 404)
    check_job(redis, settings, spec)
    _check_models(spec, live_workers(redis, settings))
    job_id = uuid.uuid4().hex
    view = JobStore(redis).create(job_id, spec)
    needs_model = not set(spec.metrics) <= SIGNAL_METRICS
    queue(redis, settings, spec.embedding if needs_model else None).enqueue_call(
        TASK, args=(job_id, spec.model_dump(mode="json", by_alias=True)), job_id=job_id,
        timeout=settings.job_timeout_s, result_ttl=settings.result_ttl_s, failure_ttl=settings.result_ttl_s,
        description=f"evaluate {spec.embedding} {','.join(spec.metrics)}",
    )
    return view


def get_job(redis: Redis, settings: Settings, job_id: str) -> JobView | None:
    """The job record, reconciled with RQ so a job whose worker died shows as failed, never hangs."""
    store = JobStore(redis)
    view = store.get(job_id)
    if view is None or view.status in TERMINAL:
        return view
    try:
        rq_job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        StartedJobRegistry(rq_job.origin, connection=redis, serializer=JSONSerializer).cleanup()
        status = rq_job.get_status()
    except NoSuchJobError:
        rq_job, status = None, None
        age = (datetime.now(UTC) - view.created_at).total_seconds() if view.created_at else 1e9
        if age < ENQUEUE_GRACE_S:  # the record is written just before the job is enqueued
            return view
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED) or rq_job is None:
        detail = _rq_failure(rq_job) if rq_job is not None else "the queued job vanished from Redis"
        store.fail(job_id, f"the worker stopped without finishing the job ({detail}); submit it again")
        return store.get(job_id)
    if view.status == "running" and view.worker and not redis.exists(ALIVE_KEY.format(view.worker)):
        view = store.get(job_id)  # the worker may have finished between the two reads
        if view is not None and view.status == "running":
            store.fail(job_id, f"worker {view.worker} stopped responding while running the job (killed, out of "
                               "memory or crashed); submit it again")
            return store.get(job_id)
    return view


def _rq_failure(job: Job) -> str:
    info = job.exc_info or ""
    if "JobTimeoutException" in info:
        return f"it exceeded the time limit of {job.timeout} s (SOUNDCHECK_JOB_TIMEOUT_S)"
    last = [line for line in info.strip().splitlines() if line.strip()]
    return last[-1] if last else f"RQ status {job.get_status()}"


def list_jobs(redis: Redis, settings: Settings, limit: int = 50) -> list[JobView]:
    """Recent jobs; unfinished ones are reconciled like a single read, so none shows running forever."""
    views = JobStore(redis).list(limit)
    return [get_job(redis, settings, v.id) or v if v.status in ("queued", "running") else v for v in views]


def cancel_job(redis: Redis, settings: Settings, job_id: str) -> JobView:
    """A queued job is removed from the queue; a running one stops at its next progress update."""
    view = get_job(redis, settings, job_id)
    if view is None:
        raise JobRequestError(f"job {job_id!r} not found", 404)
    if view.status in TERMINAL:
        raise JobRequestError(f"job {job_id!r} is already {view.status}", 409)
    redis.set(CANCEL_KEY.format(job_id), "1", ex=settings.job_timeout_s)
    if view.status == "queued":
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(job_id, connection=redis, serializer=JSONSerializer).cancel()
        JobStore(redis).fail(job_id, CANCELED)
    return get_job(redis, settings, job_id) or view
