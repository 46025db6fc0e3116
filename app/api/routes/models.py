"""GET /v1/models: every model, whether it can run here and on which workers, and what is missing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import RedisDep, SettingsDep
from app.api.problems import errors
from soundcheck.embeddings.models_info import describe_models
from soundcheck.queueing import live_workers

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", responses=errors(503))
def list_models(redis: RedisDep, settings: SettingsDep) -> list[dict[str, Any]]:
    workers = live_workers(redis, settings)
    models = describe_models(settings.models_dir)
    for model in models:
        model["workers"] = [w["name"] for w in workers if model["id"] in w.get("loaded", [])]
        model["usable"] = bool(model["workers"])  # available = weights here; usable = a live worker has it
    return models
