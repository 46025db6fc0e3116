"""Jobs: POST an evaluation, poll its status, progress and result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from app import quota
from app.api.deps import ClientDep, ManifestsDep, RedisDep, SettingsDep
from app.api.problems import errors
from app.jobs import cancel_job, create_job, get_job_json, list_jobs
from soundcheck.jobspec import JobCreate, JobView

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=JobView, responses=errors(404, 429, 503))
def post_job(spec: JobCreate, redis: RedisDep, settings: SettingsDep, response: Response, client: ClientDep,
             manifests: ManifestsDep) -> JobView:
    view = quota.admit(redis, settings, client, lambda: create_job(redis, settings, spec, manifests))
    response.headers["Location"] = f"/v1/jobs/{view.id}"
    return view


@router.get("", response_model=list[JobView], responses=errors(503))
def read_jobs(redis: RedisDep, settings: SettingsDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[JobView]:
    return list_jobs(redis, settings, limit)


@router.get("/{job_id}", response_model=JobView, responses=errors(404, 503))
def read_job(job_id: str, redis: RedisDep) -> Response:
    """The stored record as is (written by JobView itself): one Redis read, no re-validation of a large result."""
    body = get_job_json(redis, job_id)
    if body is None:
        raise HTTPException(404, f"job {job_id!r} not found")
    return Response(body, media_type="application/json")


@router.delete("/{job_id}", status_code=202, response_model=JobView, responses=errors(404, 409, 503))
def delete_job(job_id: str, redis: RedisDep, settings: SettingsDep) -> JobView:
    """Cancel: a queued job fails at once, a running one at its next progress update (within a second)."""
    return cancel_job(redis, settings, job_id)
