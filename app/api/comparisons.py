"""Comparisons: POST candidates against one reference, poll the paired differences (thin; app.comparisons)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from app import quota
from app.api.deps import ClientDep, ManifestsDep, RedisDep, SettingsDep
from app.api.problems import errors
from app.comparisons import create_comparison, get_comparison, list_comparisons
from soundcheck.comparespec import ComparisonCreate, ComparisonView

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


@router.get("/{comparison_id}", response_model=ComparisonView, responses=errors(404, 503))
def read_comparison(comparison_id: str, redis: RedisDep) -> ComparisonView:
    view = get_comparison(redis, comparison_id)
    if view is None:
        raise HTTPException(404, f"comparison {comparison_id!r} not found")
    return view
