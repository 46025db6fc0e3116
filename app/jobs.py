"""Enqueue evaluation jobs, read their state, and know which workers serve which models.

The api never imports the worker or torch: jobs are enqueued by function path with RQ's JSON serializer.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from redis import Redis
from rq import Callback, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from app.validation import check_job
from soundcheck.datastore import DATASET_KEY, ManifestStore
from soundcheck.embeddings.registry import SPECS, TEXT_MODELS
from soundcheck.jobspec import CLASS_PROB_METRICS, SIGNAL_METRICS, JobCreate, JobView
from soundcheck.jobstore import CANCEL_KEY, CANCELED, TERMINAL, JobStore
from soundcheck.presets import PRESETS, part_specs
from soundcheck.queueing import FAILURE_CALLBACK, live_workers, queue, worker_alive
from soundcheck.references import ReferenceStore
from soundcheck.settings import Settings

TASK = "worker.tasks.evaluate"


class JobRequestError(ValueError):
    """A job that cannot run as asked (the api answers 422 or 404)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _check_preset(redis: Redis, settings: Settings, spec: JobCreate, manifests: ManifestStore,
                  workers: list[dict[str, Any]]) -> str:
    """Every part of a preset job must be a job that could run; one live worker must hold all its models.
    Returns the queue key (``preset:<name>``: workers with every model of the preset listen there)."""
    try:
        parts = part_specs(spec)
    except ValueError as exc:
        raise JobRequestError(str(exc)) from exc
    unknown = sorted({p.embedding for p, _ in parts} - set(SPECS))
    if unknown:
        raise JobRequestError(f"preset {spec.preset!r} needs model(s) {', '.join(unknown)}, which this soundcheck "
                              "version does not have")
    for _, part in parts:
        check_job(part, manifests, settings, redis)
        _check_models(part, [])
    needed = set(PRESETS[spec.preset].embeddings())
    if workers and not any(needed <= set(w.get("loaded", [])) for w in workers):
        reasons = sorted({r for w in workers for m, r in w.get("unavailable", {}).items() if m in needed})
        why = f": {'; '.join(reasons)}" if reasons else ""
        raise JobRequestError(f"preset {spec.preset!r} needs one worker with {', '.join(sorted(needed))} loaded, "
                              f"and no live worker has them all{why}")
    return f"preset:{spec.preset}"


def _check_models(spec: JobCreate, workers: list[dict[str, Any]]) -> None:
    if spec.embedding not in SPECS:
        raise JobRequestError(f"unknown embedding {spec.embedding!r}; valid: {', '.join(SPECS)}")
    wants_probs = sorted(set(spec.metrics) & CLASS_PROB_METRICS)
    if wants_probs and not SPECS[spec.embedding].n_classes:
        with_classes = [m for m, s in SPECS.items() if s.n_classes]
        raise JobRequestError(f"{', '.join(wants_probs)} need class probabilities: use embedding "
                              f"{' or '.join(with_classes)} (not {spec.embedding!r})")
    logit_metrics = [m for m, activation in (("kl", spec.options.kl.activation), ("is", spec.options.is_.activation))
                     if m in spec.metrics and activation != "model"]
    if logit_metrics and SPECS[spec.embedding].class_scores != "logits":
        with_logits = [m for m, s in SPECS.items() if s.class_scores == "logits"]
        raise JobRequestError(f"{', '.join(logit_metrics)} with a softmax/sigmoid activation need a model that gives "
                              f"logits: use embedding {' or '.join(with_logits)} (not {spec.embedding!r}), or "
                              "activation 'model'")
    if "clap_score" in spec.metrics and spec.embedding not in TEXT_MODELS:
        raise JobRequestError(f"clap_score needs a model with a text encoder: use embedding "
                              f"{' or '.join(sorted(TEXT_MODELS))} (not {spec.embedding!r})")
    if spec.metrics and set(spec.metrics) <= SIGNAL_METRICS:
        return
    if not workers:
        return  # a worker may start later; the job waits in the queue
    if not any(spec.embedding in w.get("loaded", []) for w in workers):
        reasons = {w.get("unavailable", {}).get(spec.embedding) for w in workers} - {None}
        why = f": {'; '.join(sorted(reasons))}" if reasons else ""
        raise JobRequestError(f"no live worker has model {spec.embedding!r} loaded{why}")


def _check_imported(redis: Redis, settings: Settings, spec: JobCreate) -> None:
    """An imported reference exists and has the dimension of the job's embedding (jobspec already refused the
    metrics it cannot give)."""
    view = ReferenceStore(redis).get(spec.imported_reference or "")
    if view is None or view.kind != "imported":
        raise JobRequestError(f"imported reference {spec.imported_reference!r} not found; POST "
                              "/v1/references/import first", 404)
    model = SPECS.get(spec.embedding)
    if model is not None and model.dim != view.dim:
        raise JobRequestError(f"the imported reference has dimension {view.dim}, but embedding {spec.embedding!r} "
                              f"gives {model.dim}: use the embedding its statistics were computed on")


def create_job(redis: Redis, settings: Settings, spec: JobCreate, manifests: ManifestStore) -> JobView:
    datasets = {"reference": spec.reference_dataset, "candidate": spec.candidate}
    datasets = {role: dataset for role, dataset in datasets.items() if dataset is not None}
    pipe = redis.pipeline(transaction=False)
    for dataset in datasets.values():
        pipe.exists(DATASET_KEY.format(dataset))
    for (role, dataset), present in zip(datasets.items(), pipe.execute(), strict=True):
        # in Redis: no need to read a manifest of 100,000 files; else the mirror on disk may restore it
        if not present and manifests.get(dataset) is None:
            raise JobRequestError(f"{role} dataset {dataset!r} not found; POST /v1/datasets first", 404)
    if spec.preset is not None:
        queue_key: str | None = _check_preset(redis, settings, spec, manifests, live_workers(redis, settings))
    else:
        if spec.imported_reference is not None:
            _check_imported(redis, settings, spec)
        else:
            check_job(spec, manifests, settings, redis)
        _check_models(spec, live_workers(redis, settings))
        queue_key = None if set(spec.metrics) <= SIGNAL_METRICS else spec.embedding
    job_id = uuid.uuid4().hex
    retries = settings.job_max_attempts - 1
    with redis.pipeline() as pipe:  # record and RQ job in one MULTI: neither exists without the other
        pipe.multi()  # RQ wants a pipeline already in MULTI
        view = JobStore(redis).create(job_id, spec, pipeline=pipe)
        queue(redis, settings, queue_key).enqueue_call(
            TASK, args=(job_id, spec.model_dump(mode="json", by_alias=True)), job_id=job_id,
            timeout=settings.job_timeout_s, result_ttl=settings.result_ttl_s, failure_ttl=settings.result_ttl_s,
            description=f"evaluate {spec.embedding} {','.join(spec.metrics)}",
            retry=Retry(max=retries) if retries > 0 else None, on_failure=Callback(FAILURE_CALLBACK),
            pipeline=pipe,
        )
        pipe.execute()
    return view


def get_job(redis: Redis, settings: Settings, job_id: str) -> JobView | None:
    """The job record: one read, no write. Workers keep it true (a dead worker's job is retried or failed by
    the others' maintenance, see soundcheck.queueing), so a read never has to reconcile."""
    return JobStore(redis).get(job_id)


def get_job_json(redis: Redis, job_id: str) -> bytes | None:
    """:func:`get_job` as the JSON body the api sends (no model round trip): the hot path of polling clients."""
    return JobStore(redis).get_json(job_id)


def list_jobs(redis: Redis, settings: Settings, limit: int = 50, offset: int = 0) -> list[JobView]:
    """Recent jobs, newest first (records only, no results): two reads."""
    return JobStore(redis).list(limit, offset)


def cancel_job(redis: Redis, settings: Settings, job_id: str) -> JobView:
    """A queued job is removed from the queue; a running one stops at its next checkpoint (within a second or
    two: its worker polls the cancel key from a thread)."""
    store = JobStore(redis)
    view = store.get(job_id, with_result=False)
    if view is None:
        raise JobRequestError(f"job {job_id!r} not found", 404)
    if view.status in TERMINAL:
        raise JobRequestError(f"job {job_id!r} is already {view.status}", 409)
    redis.set(CANCEL_KEY.format(job_id), "1", ex=settings.job_timeout_s)
    if view.status == "queued":
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
            Job.fetch(job_id, connection=redis, serializer=JSONSerializer).cancel()
        store.fail(job_id, CANCELED)
    elif view.worker and not worker_alive(redis, view.worker):
        store.fail(job_id, CANCELED)  # its worker died: nobody would see the cancel before a maintenance pass
    return store.get(job_id) or view
