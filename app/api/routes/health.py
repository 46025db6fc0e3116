"""GET /v1/health: is Redis there, which workers are alive, which models they loaded.

200 while Redis answers (``ok``, or ``no-workers`` when jobs would only queue); 503 ``degraded`` with Retry-After
while Redis is down, so a load balancer takes this api out of rotation until Redis is back. Without a valid token
(when the api has tokens) the body holds only ``status``: no hosts, paths, worker names or errors.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from app.api.deps import AuthorizedDep, RedisDep, SettingsDep
from soundcheck.queueing import live_workers

router = APIRouter(tags=["health"])


#: The degraded answer is a health report (``status: "degraded"``), not a problem: load balancers read it as such.
DEGRADED = {503: {"description": "Redis is down: status `degraded`, with Retry-After",
                  "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                  "content": {"application/json": {"schema": {"type": "object",
                                                               "properties": {"status": {"const": "degraded"}},
                                                               "required": ["status"]}}}}}


@router.get("/health", responses=DEGRADED)
def health(redis: RedisDep, settings: SettingsDep, authorized: AuthorizedDep) -> Any:
    try:
        redis.ping()
        workers = live_workers(redis, settings)
    except RedisError as exc:
        error = f"{type(exc).__name__}: {exc}"
        body: dict[str, Any] = {
            "status": "degraded", "redis": False, "redis_error": error, "workers": 0, "models_loaded": [],
            "worker_details": [], "title": "Service Unavailable",
            "detail": f"Redis is not reachable ({error}); retry in {settings.redis_retry_after_s} s"}
        return JSONResponse(body if authorized else {"status": "degraded"}, status_code=503,
                            headers={"Retry-After": str(settings.redis_retry_after_s)})
    body = {
        "status": "ok" if workers else "no-workers",
        "redis": True,
        "workers": len(workers),
        "models_loaded": sorted({m for w in workers for m in w.get("loaded", [])}),
        "worker_details": workers,
    }
    return body if authorized else {"status": body["status"]}
