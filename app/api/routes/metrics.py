"""GET /v1/metrics: the metric names a job accepts, what each needs and which direction is better."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from soundcheck.jobspec import METRIC_INFO, METRIC_NAMES

router = APIRouter(prefix="/metrics", tags=["metrics"])


@router.get("")
def list_metrics() -> list[dict[str, Any]]:
    return [{"name": name, **METRIC_INFO[name]} for name in METRIC_NAMES]
