"""Jobs: POST an evaluation, poll its status, progress and result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from app import quota
from app.api.deps import ClientDep, ManifestsDep, RedisDep, SettingsDep
from app.api.negotiation import csv_doc, csv_response, wants_csv
from app.api.problems import errors
from app.jobs import cancel_job, create_job, get_job_json, list_jobs
from soundcheck import export
from soundcheck.jobspec import JobCreate, JobView
from soundcheck.jobstore import JobStore
from soundcheck.results import job_result

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=JobView, responses=errors(404, 429, 503))
def post_job(spec: JobCreate, redis: RedisDep, settings: SettingsDep, response: Response, client: ClientDep,
             manifests: ManifestsDep) -> JobView:
    view = quota.admit(redis, settings, client, lambda: create_job(redis, settings, spec, manifests))
    response.headers["Location"] = f"/v1/jobs/{view.id}"
    return view


@router.get("", response_model=list[JobView], responses=errors(503))
def read_jobs(redis: RedisDep, settings: SettingsDep, response: Response,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[JobView]:
    """Newest first, a page of ``limit`` after ``offset``; ``X-Total-Count`` says how many jobs are stored."""
    response.headers["X-Total-Count"] = str(JobStore(redis).count())
    return list_jobs(redis, settings, limit, offset)


@router.get("/{job_id}", response_model=JobView, responses={**errors(404, 409, 503), **csv_doc(export.CSV_COLUMNS)})
def read_job(job_id: str, redis: RedisDep, request: Request) -> Response:
    """The stored record as is (written by JobView itself): one Redis read, no re-validation of a large result.
    With ``Accept: text/csv`` (and no JSON preferred), the result's table as CSV, the bytes of
    ``soundcheck eval --format csv``; 409 while the job has no result."""
    body = get_job_json(redis, job_id)
    if body is None:
        raise HTTPException(404, f"job {job_id!r} not found")
    if wants_csv(request):
        view = JobView.model_validate_json(body)
        if view.status != "finished" or view.result is None:
            raise HTTPException(409, f"job {job_id!r} is {view.status} and has no result to export as CSV")
        return csv_response(export.to_csv(job_result(view)), f"soundcheck-{job_id}.csv")
    return Response(body, media_type="application/json", headers={"Vary": "Accept"})


@router.delete("/{job_id}", status_code=202, response_model=JobView, responses=errors(404, 409, 503))
def delete_job(job_id: str, redis: RedisDep, settings: SettingsDep) -> JobView:
    """Cancel: a queued job fails at once, a running one at its next progress update (within a second)."""
    return cancel_job(redis, settings, job_id)
