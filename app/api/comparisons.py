"""Comparisons: POST candidates against one reference, poll the paired differences (thin; app.comparisons)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from app import quota
from app.api.deps import ClientDep, ManifestsDep, RedisDep, SettingsDep
from app.api.negotiation import csv_doc, csv_response, wants_csv
from app.api.problems import errors
from app.comparisons import create_comparison, get_comparison, list_comparisons
from soundcheck.comparespec import ComparisonCreate, ComparisonView
from soundcheck.export_runs import COMPARISON_CSV_COLUMNS, comparison_csv

router = APIRouter(prefix="/comparisons", tags=["comparisons"])


@router.post("", status_code=202, response_model=ComparisonView, responses=errors(404, 422, 429, 503))
def post_comparison(spec: ComparisonCreate, redis: RedisDep, settings: SettingsDep, response: Response,
                    client: ClientDep, manifests: ManifestsDep) -> ComparisonView:
    view = quota.admit(redis, settings, client, lambda: create_comparison(redis, settings, spec, manifests))  # type: ignore
    response.headers["Location"] = f"/v1/comparisons/{view.id}"
    return view


@router.get("", response_model=list[ComparisonView], responses=errors(503))
def read_comparisons(redis: RedisDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ComparisonView]:
    """Recent comparisons, newest first, without results."""
    return list_comparisons(redis, limit)


@router.get("/{comparison_id}", response_model=ComparisonView,
            responses={**errors(404, 409, 503), **csv_doc(COMPARISON_CSV_COLUMNS)})
def read_comparison(comparison_id: str, redis: RedisDep, request: Request,
                    response: Response) -> ComparisonView | Response:
    """Status and progress; the pairs once finished. With ``Accept: text/csv`` (and no JSON preferred), one row
    per pair and metric: the bytes of ``soundcheck compare ... --format csv``; 409 while there is no result."""
    view = get_comparison(redis, comparison_id)
    if view is None:
        raise HTTPException(404, f"comparison {comparison_id!r} not found")
    if wants_csv(request):
        if view.status != "finished" or view.result is None:
            raise HTTPException(409, f"comparison {comparison_id!r} is {view.status} and has no result to "
                                "export as CSV")
        return csv_response(comparison_csv(view), f"soundcheck-comparison-{comparison_id}.csv")
    response.headers["Vary"] = "Accept"
    return view
