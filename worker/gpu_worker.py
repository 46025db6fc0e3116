"""The soundcheck worker: an RQ SimpleWorker that loads its models once and runs jobs in-process.

CUDA does not survive fork, and reloading weights per job would dominate small jobs, so jobs run in the
worker process itself (SimpleWorker) with the models loaded at start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.registry import clean_registries as rq_clean_registries
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty
from rq.utils import now

from soundcheck.jobstore import MAINTENANCE_KEY, WORKER_MODELS_FIELD
from soundcheck.queueing import queue, reconcile_open_jobs
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


class _NoDeathPenalty(BaseDeathPenalty):
    """RQ guards callbacks with SIGALRM, which only the main thread may use; the maintenance thread runs our
    own short failure callback (a few Redis commands) unguarded."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class SoundcheckWorker(SimpleWorker):
    """SimpleWorker holding a :class:`Runtime`; describes its models in its RQ worker hash.

    Liveness is RQ's: a thread sends RQ's heartbeats with a short TTL (also while a job runs in the main
    thread, which a SimpleWorker does not do by itself: it would set its TTL to the job timeout, hours), so
    a killed worker's hash and its job's StartedJobRegistry entry lapse within ``heartbeat_ttl_s``. The same
    thread runs the detection every ``maintenance_interval_s``: RQ's StartedJobRegistry cleanup, which
    retries abandoned jobs (RQ ``Retry``) or fails them through :func:`soundcheck.queueing.on_job_failure`.
    """

    runtime: Runtime

    def __init__(self, *args: Any, runtime: Runtime, heartbeat_ttl_s: int = 30, maintenance_interval_s: float = 10.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.maintenance_interval_s = maintenance_interval_s
        self._beat_lock = threading.Lock()
        self._running: tuple[Job, Execution] | None = None
        self._pulse_stop = threading.Event()
        self._pulse: threading.Thread | None = None

    def register_birth(self) -> None:
        super().register_birth()
        self.connection.hset(self.key, WORKER_MODELS_FIELD, json.dumps(self.runtime.describe()))
        self._pulse = threading.Thread(target=self._pulse_loop, name="soundcheck-heartbeat", daemon=True)
        self._pulse.start()

    def register_death(self) -> None:
        self._pulse_stop.set()
        if self._pulse is not None:
            self._pulse.join(timeout=5)
        super().register_death()

    # --- RQ's heartbeats with a short TTL -------------------------------------------------------------------

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl_s  # the pulse thread renews it; the job's own timeout is SIGALRM's business

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        super().heartbeat(min(timeout or self.heartbeat_ttl_s, self.heartbeat_ttl_s), pipeline=pipeline)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        with self._beat_lock:
            self._running = (job, execution)
        try:
            return super().perform_job(job, queue, execution)
        finally:
            with self._beat_lock:
                self._running = None

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        with self._beat_lock:  # no job heartbeat may race RQ's bookkeeping of the ended execution
            self._running = None
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def _beat(self) -> None:
        with self._beat_lock:
            if self._running is not None:
                self.maintain_heartbeats(*self._running)
            else:
                self.heartbeat()

    def _pulse_loop(self) -> None:
        every = self.heartbeat_ttl_s / 3
        next_maintenance = time.monotonic() + min(every, self.maintenance_interval_s)
        while not self._pulse_stop.wait(min(every, self.maintenance_interval_s)):
            try:
                self._beat()
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + self.maintenance_interval_s
                    self.find_abandoned_jobs()
            except RedisError as exc:
                log.warning("worker %s: heartbeat/maintenance failed: %s", self.name, exc)
            except Exception:  # noqa: BLE001 - the pulse must outlive any bug in a maintenance step
                log.exception("worker %s: maintenance step failed", self.name)

    def _maintenance_turn(self, what: str) -> bool:
        """One worker per interval and task (the key expires on its own; a dead worker cannot hold it)."""
        ms = max(100, int(self.maintenance_interval_s * 900))
        return bool(self.connection.set(MAINTENANCE_KEY.format(what), self.name, nx=True, px=ms))

    def clean_registries(self) -> None:
        """RQ's own periodic maintenance (main loop, every 10 min), under the same turn key as the pulse's
        cleanup, so two workers (or a worker's two threads) never retry one abandoned job twice."""
        for q in self.queues:
            if self._maintenance_turn(f"queue:{q.name}"):
                rq_clean_registries(q, self._exc_handlers)
                worker_registration.clean_worker_registry(q)
                q.intermediate_queue.cleanup(self, q)
        self.last_cleaned_at = now()

    def find_abandoned_jobs(self) -> None:
        """RQ's abandoned-job handling on our queues (retry or fail), then reconcile open job records."""
        for q in self.queues:
            if self._maintenance_turn(f"queue:{q.name}"):
                StartedJobRegistry(q.name, connection=self.connection, serializer=self.serializer,
                                   death_penalty_class=_NoDeathPenalty).cleanup()
        if self._maintenance_turn("jobs"):
            failed = reconcile_open_jobs(self.connection)
            if failed:
                log.warning("worker %s: failed %d job records whose RQ job ended or vanished", self.name, failed)


def build_worker(settings: Settings | None = None, name: str | None = None) -> SoundcheckWorker:
    settings = settings or get_settings()
    configure_torch(settings.effective_threads())
    import worker.fanout  # noqa: F401 - import the task modules (scipy, sklearn) now, not in the first job
    import worker.tasks  # noqa: F401
    runtime = load_runtime(settings)
    set_runtime(runtime)
    redis = Redis.from_url(settings.redis_url)
    # one queue per loaded model (jobs that need it), then the shared one (signal-only jobs)
    queues = [queue(redis, settings, model_id) for model_id in runtime.models] + [queue(redis, settings)]
    return SoundcheckWorker(queues, connection=redis, runtime=runtime, name=name,
                            heartbeat_ttl_s=settings.worker_heartbeat_ttl_s,
                            maintenance_interval_s=settings.maintenance_interval_s)


def run(burst: bool = False, name: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = build_worker(name=name)
    log.info("worker %s ready: %s", worker.name, worker.runtime.describe())
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
