"""Runs: the jobs of one training run (``spec.run``, ``spec.step``) as series over steps. Thin routes over
``soundcheck.jobstore.JobStore.runs``/``run``; the models are ``soundcheck.jobspec.RunSummary``/``RunView``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from app.api.deps import RedisDep
from app.api.negotiation import csv_doc, csv_response, wants_csv
from app.api.problems import errors
from soundcheck.export_runs import RUN_CSV_COLUMNS, run_csv
from soundcheck.jobspec import RUN_NAME, RUN_NAME_MAX, RunSummary, RunView
from soundcheck.jobstore import JobStore

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", response_model=list[RunSummary], responses=errors(503))
def read_runs(redis: RedisDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[RunSummary]:
    """Runs, most recently updated first: name, number of steps, last step, last update."""
    return JobStore(redis).runs(limit)


@router.get("/{name}", response_model=RunView, responses={**errors(404, 503), **csv_doc(RUN_CSV_COLUMNS)})
def read_run(name: Annotated[str, Path(pattern=RUN_NAME, max_length=RUN_NAME_MAX)], redis: RedisDep,
             request: Request, response: Response) -> RunView | Response:
    """Every job of the run sorted by step, each with its metrics' values and intervals (a job not finished yet
    has its status and no metrics). With ``Accept: text/csv`` (and no JSON preferred), one row per step and
    metric: the bytes of ``soundcheck runs show NAME --format csv``."""
    view = JobStore(redis).run(name)
    if view is None:
        raise HTTPException(404, f"run {name!r} not found; a job joins a run with 'run' and 'step' in POST /v1/jobs")
    if wants_csv(request):
        return csv_response(run_csv(view), f"soundcheck-run-{name}.csv")
    response.headers["Vary"] = "Accept"
    return view
