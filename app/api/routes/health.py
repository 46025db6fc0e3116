"""GET /v1/health: is Redis there, which workers are alive, which models they loaded."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from redis.exceptions import RedisError

from app.api.deps import AuthorizedDep, RedisDep, SettingsDep
from soundcheck.queueing import live_workers

router = APIRouter(tags=["health"])


@router.get("/health")
def health(redis: RedisDep, settings: SettingsDep, authorized: AuthorizedDep) -> dict[str, Any]:
    """Without a valid token (when the api has tokens) only `status`: no hosts, paths, worker names or errors."""
    details = _details(redis, settings)
    return details if authorized else {"status": details["status"]}


def _details(redis: RedisDep, settings: SettingsDep) -> dict[str, Any]:
    try:
        redis.ping()
    except RedisError as exc:
        return {"status": "degraded", "redis": False, "redis_error": str(exc), "workers": 0, "worker_details": []}
    workers = live_workers(redis, settings)
    return {
        "status": "ok" if workers else "no-workers",
        "redis": True,
        "workers": len(workers),
        "models_loaded": sorted({m for w in workers for m in w.get("loaded", [])}),
        "worker_details": workers,
    }
