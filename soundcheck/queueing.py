"""The RQ queue and the live workers, as the api and the workers both see them (no torch here)."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from soundcheck.jobstore import WORKER_MODELS_FIELD
from soundcheck.settings import Settings


def queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)


def live_workers(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Workers alive on our queue, each with the models it loaded and the ones it could not."""
    out = []
    for worker in Worker.all(queue=queue(redis, settings)):
        raw = redis.hget(worker.key, WORKER_MODELS_FIELD)
        info = json.loads(raw) if raw else {}
        out.append({"name": worker.name, "state": worker.get_state(), "hostname": worker.hostname, **info})
    return out
