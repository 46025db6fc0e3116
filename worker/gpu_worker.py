"""The soundcheck worker: an RQ SimpleWorker that loads its models once and runs jobs in-process.

CUDA does not survive fork, and reloading weights per job would dominate small jobs, so jobs run in the
worker process itself (SimpleWorker) with the models loaded at start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from soundcheck.jobstore import ALIVE_KEY, ALIVE_TTL_S, WORKER_MODELS_FIELD
from soundcheck.queueing import queue
from soundcheck.settings import Settings, get_settings
from worker.runtime import Runtime, load_runtime, set_runtime

log = logging.getLogger("soundcheck.worker")



def configure_torch(threads: int) -> None:
    """Explicit thread count: two workers on one host must not each grab every core."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; mel needs no torch
        return
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(max(1, min(threads, 4)))


class SoundcheckWorker(SimpleWorker):
    """SimpleWorker holding a :class:`Runtime`; describes its models in its RQ worker hash."""

    runtime: Runtime

    def __init__(self, *args: Any, runtime: Runtime, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        self.runtime = runtime

    def register_birth(self) -> None:
        super().register_birth()
        self.connection.hset(self.key, WORKER_MODELS_FIELD, json.dumps(self.runtime.describe()))
        self._pulse_stop = threading.Event()
        self._pulse = threading.Thread(target=self._keep_alive, name="soundcheck-alive", daemon=True)
        self._pulse.start()

    def register_death(self) -> None:
        if getattr(self, "_pulse", None) is not None:
            self._pulse_stop.set()
            self._pulse.join(timeout=5)
        self.connection.delete(ALIVE_KEY.format(self.name))
        super().register_death()

    def _keep_alive(self) -> None:
        """A short-lived key refreshed by a thread, also while a job runs in the main thread: when it lapses
        the api knows the worker died (kill -9, OOM) and fails its job instead of showing it running forever."""
        key = ALIVE_KEY.format(self.name)
        while not self._pulse_stop.is_set():
            with contextlib.suppress(RedisError):
                self.connection.set(key, "1", ex=ALIVE_TTL_S)
            self._pulse_stop.wait(ALIVE_TTL_S / 4)


def build_worker(settings: Settings | None = None, name: str | None = None) -> SoundcheckWorker:
    settings = settings or get_settings()
    configure_torch(settings.effective_threads())
    import worker.fanout  # noqa: F401 - import the task modules (scipy, sklearn) now, not in the first job
    import worker.tasks  # noqa: F401
    runtime = load_runtime(settings)
    from soundcheck.gc import start_periodic  # announce embedding keys; gc every SOUNDCHECK_GC_INTERVAL_S
    start_periodic(settings, runtime.embedding_keys.values())
    set_runtime(runtime)
    redis = Redis.from_url(settings.redis_url)
    # one queue per loaded model (jobs that need it), then the shared one (signal-only jobs)
    queues = [queue(redis, settings, model_id) for model_id in runtime.models] + [queue(redis, settings)]
    return SoundcheckWorker(queues, connection=redis, runtime=runtime, name=name)


def run(burst: bool = False, name: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = build_worker(name=name)
    log.info("worker %s ready: %s", worker.name, worker.runtime.describe())
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
