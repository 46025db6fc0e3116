"""Enqueue paired comparisons and read them back (the api side of POST/GET /v1/comparisons).

Checks what the request makes knowable (datasets exist, the model is served, at least two files per set) and
enqueues ``worker.compare.compare`` on the model's queue with the record in one MULTI, like ``app.jobs``."""

from __future__ import annotations

import uuid

from redis import Redis

from app.jobs import JobRequestError, _check_models
from soundcheck.comparespec import ComparisonCreate, ComparisonView
from soundcheck.comparestore import ComparisonStore
from soundcheck.datastore import ManifestStore
from soundcheck.jobspec import JobCreate
from soundcheck.queueing import live_workers, queue
from soundcheck.settings import Settings

TASK = "worker.compare.compare"


def create_comparison(redis: Redis, settings: Settings, spec: ComparisonCreate, manifests: ManifestStore
                      ) -> ComparisonView:
    roles = [("reference", spec.reference)] + [(f"candidate {label}", c) for label, c in
                                                zip(spec.candidate_labels(), spec.candidates, strict=True)]
    for role, dataset in roles:
        view = manifests.get(dataset)
        if view is None:
            raise JobRequestError(f"{role} dataset {dataset!r} not found; POST /v1/datasets first", 404)
        if view.files is not None and len(view.files) < 2:
            raise JobRequestError(f"{role} dataset {dataset!r} has {len(view.files)} file; a bootstrap over "
                                  "files needs at least 2")
    # the model checks of a job (known embedding, a live worker that loaded it) hold for a comparison as is
    _check_models(JobCreate(reference=spec.reference, candidate=spec.candidates[0], embedding=spec.embedding,
                            metrics=list(spec.metrics)), live_workers(redis, settings))
    comparison_id = uuid.uuid4().hex
    with redis.pipeline() as pipe:
        pipe.multi()
        view = ComparisonStore(redis).create(comparison_id, spec, pipeline=pipe)
        queue(redis, settings, spec.embedding).enqueue_call(
            TASK, args=(comparison_id, spec.model_dump(mode="json")), job_id=f"comparison-{comparison_id}",
            timeout=settings.job_timeout_s, result_ttl=settings.result_ttl_s, failure_ttl=settings.result_ttl_s,
            description=f"compare {spec.embedding} {','.join(spec.metrics)} x{len(spec.candidates)}", pipeline=pipe)
        pipe.execute()
    return view


def get_comparison(redis: Redis, comparison_id: str) -> ComparisonView | None:
    return ComparisonStore(redis).get(comparison_id)


def list_comparisons(redis: Redis, limit: int = 50) -> list[ComparisonView]:
    return ComparisonStore(redis).list(limit)
