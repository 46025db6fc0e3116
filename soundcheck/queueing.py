"""The RQ queue and the live workers, as the api and the workers both see them (no torch here)."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from soundcheck.jobstore import ALIVE_KEY, WORKER_MODELS_FIELD
from soundcheck.settings import Settings


def queue(redis: Redis, settings: Settings, model: str | None = None) -> Queue:
    """The shared queue, or the queue of one model: only workers that loaded the model listen there, so a job
    never lands on a worker that cannot run it."""
    name = settings.queue_name if model is None else f"{settings.queue_name}:{model}"
    return Queue(name, connection=redis, serializer=JSONSerializer)


def live_workers(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Workers alive on our queue (their liveness key is fresh), with the models they loaded and could not."""
    out = []
    for worker in Worker.all(queue=queue(redis, settings)):
        if not redis.exists(ALIVE_KEY.format(worker.name)):
            continue  # killed mid-job: RQ keeps its record for the job's timeout, we do not count it
        raw = redis.hget(worker.key, WORKER_MODELS_FIELD)
        info = json.loads(raw) if raw else {}
        out.append({"name": worker.name, "state": worker.get_state(), "hostname": worker.hostname, **info})
    return out
