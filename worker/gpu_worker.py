"""The soundcheck worker: an RQ SimpleWorker that loads its models once and runs jobs in-process.

CUDA does not survive fork, and reloading weights per job would dominate small jobs, so jobs run in the
worker process itself (SimpleWorker) with the models loaded at start.

A Redis outage never ends the worker process: every command of its connection retries with backoff for
``SOUNDCHECK_WORKER_REDIS_GRACE_S`` (so a job in hand, its progress writes included, rides out a Redis restart),
and where RQ's loop would quit on a connection error the worker logs it, waits and carries on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import Queue, SimpleWorker, worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.registry import clean_registries as rq_clean_registries
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

from soundcheck.jobstore import MAINTENANCE_KEY, WORKER_MODELS_FIELD
from soundcheck.presets import PRESETS
from soundcheck.queueing import queue, reconcile_open_comparisons, reconcile_open_jobs
from soundcheck.settings import Settings, get_settings
from worker.runtime import Runtime, load_runtime, set_runtime

log = logging.getLogger("soundcheck.worker")
T = TypeVar("T")
#: Redis is down, restarting (loading its AOF: BusyLoadingError is a ConnectionError) or paused.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, socket.timeout)
_said_at = -1e9
#: Set by any retried Redis command of this process: Redis went away (and may have come back without our
#: registration, if it had no AOF); the next heartbeat registers again.
OUTAGE_SEEN = threading.Event()


class OutageRetry(Retry):
    """redis-py retry policy bounded by time, not by count: retry connection errors with capped exponential
    backoff until ``grace_s`` after the first failure. (A count would multiply when a reconnect inside a retried
    command retries too; a deadline keeps the whole wait near ``grace_s``.)"""

    def __init__(self, grace_s: float, base_s: float = 0.1, cap_s: float = 2.0) -> None:
        super().__init__(ExponentialBackoff(cap=cap_s, base=base_s), retries=-1, supported_errors=REDIS_DOWN)
        self.grace_s = grace_s

    def _say(self, error: Exception) -> None:
        """One log line per outage (at most every 10 s per process), not one per command or connection."""
        global _said_at
        if time.monotonic() - _said_at > 10:
            _said_at = time.monotonic()
            log.warning("Redis unreachable (%s: %s); retrying for up to %g s", type(error).__name__, error,
                        self.grace_s)

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        deadline, failures = None, 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                fail(error, failures) if with_failure_count else fail(error)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.grace_s
                    OUTAGE_SEEN.set()
                    self._say(error)
                if now >= deadline:
                    raise
                time.sleep(min(self._backoff.compute(failures), deadline - now))


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
    #: RQ's cap on the wait between two dequeue attempts while Redis is down (its default, 60 s, would leave
    #: the worker idle up to a minute after Redis is back).
    max_connection_wait_time = 5.0

    def __init__(self, *args: Any, runtime: Runtime, heartbeat_ttl_s: int = 30, maintenance_interval_s: float = 10.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self._outage = False
        #: Jobs whose end could not be recorded while Redis was down: settled as failed (RQ retries them if
        #: they have retries left) once Redis is back, so none stays "started" for ever.
        self._owed: list[tuple[Job, Queue, Any, str]] = []
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
        cleanup, so two workers (or a worker's two threads) never retry one abandoned job twice. The pulse takes
        that turn every ~10 s, so the registry cleanups that retry nothing (dead workers, the intermediate queue)
        run regardless of it."""
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
            failed = reconcile_open_comparisons(self.connection)
            if failed:
                log.warning("worker %s: failed %d comparison records whose RQ job ended or vanished", self.name,
                            failed)


    # --- Redis outages: where RQ's work loop would quit on a connection error, log it and carry on ---

    @property
    def dequeue_timeout(self) -> int:
        """Wake from the blocking dequeue at least every 15 s (RQ: 405 s): the heartbeat after it registers
        the worker again when Redis came back without its data, within seconds rather than minutes."""
        return min(super().dequeue_timeout, 15)

    def _redis_down(self, during: str, exc: BaseException) -> None:
        if not self._outage:
            log.warning("worker %s: Redis unreachable during %s (%s: %s); waiting for it", self.name, during,
                        type(exc).__name__, exc)
        self._outage = True

    def _redis_back(self) -> None:
        """After an outage: register again (idempotent writes), in case the restarted Redis lost our record."""
        if OUTAGE_SEEN.is_set():  # ridden out inside redis-py's retries, unseen by RQ's loop
            OUTAGE_SEEN.clear()
            self._outage = True
        if not self._outage:
            return
        try:
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping={**self.serialize(), "state": self.get_state(),
                                             WORKER_MODELS_FIELD: json.dumps(self.runtime.describe())})
                pipe.hdel(self.key, "death")
                pipe.expire(self.key, self.worker_ttl + 60)
                worker_registration.register(self, pipe)
                pipe.execute()
        except REDIS_DOWN as exc:
            self._redis_down("registration", exc)
            return
        self._outage = False
        log.info("worker %s: Redis is back", self.name)
        while self._owed:
            job, job_queue, execution, reason = self._owed[0]
            log.info("worker %s: recording the failure of job %s (%s)", self.name, job.id, reason)
            job.ended_at = job.ended_at or now()
            try:  # a retried job is requeued by RQ here; a job whose record already ended keeps that end
                self.handle_job_failure(job, job_queue, started_job_registry=job_queue.started_job_registry,
                                        exc_string=reason, execution=execution)
            except REDIS_DOWN as exc:  # gone again: the next heartbeat after it is back tries again
                self._redis_down("recording a failure", exc)
                return
            self._owed.pop(0)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat with our short TTL (the pulse thread renews it), tolerant of a Redis outage."""
        timeout = min(timeout or self.heartbeat_ttl_s, self.heartbeat_ttl_s)
        if pipeline is not None:  # only queues commands; whoever executes the pipeline handles errors
            super().heartbeat(timeout, pipeline=pipeline)
            return
        try:
            super().heartbeat(timeout)
        except REDIS_DOWN as exc:
            self._redis_down("a heartbeat", exc)
            return
        self._redis_back()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        try:
            super().set_state(state)
        except REDIS_DOWN as exc:
            self._state = state
            self._redis_down("a state change", exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self._redis_down("the suspension check", exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            self._redis_down("registry maintenance", exc)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """A job whose bookkeeping could not reach Redis even after the grace period stays in RQ's started
        registry; RQ's cleanup marks it abandoned when its heartbeat lapses (and it is retried from there). The
        worker itself goes back to the queue."""
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            log.error("worker %s: lost Redis while running job %s (%s: %s); its failure is recorded when Redis "
                      "is back", self.name, job.id, type(exc).__name__, exc)
            execution = next(iter(self.executions.values()), None)
            self.executions.clear()
            reason = (f"Redis was unreachable for longer than SOUNDCHECK_WORKER_REDIS_GRACE_S while the job ran "
                      f"({type(exc).__name__}: {exc})")
            self._owed.append((job, queue, execution, reason))
            self._redis_down("a job", exc)
            self.set_state(WorkerStatus.IDLE)

    def set_shutdown_requested_date(self) -> None:
        try:  # runs in the SIGTERM handler, inside a running job: must not raise into the job
            super().set_shutdown_requested_date()
        except REDIS_DOWN as exc:
            self._redis_down("the shutdown request", exc)

    def teardown(self) -> None:
        try:
            super().teardown()
        except REDIS_DOWN as exc:  # stopping while Redis is down: nothing to deregister from
            log.warning("worker %s: could not deregister (%s)", self.name, exc)


def build_worker(settings: Settings | None = None, name: str | None = None) -> SoundcheckWorker:
    settings = settings or get_settings()
    configure_torch(settings.effective_threads())
    import worker.fanout  # noqa: F401 - import the task modules (scipy, sklearn) now, not in the first job
    import worker.tasks  # noqa: F401
    runtime = load_runtime(settings)
    from soundcheck.gc import start_periodic  # announce embedding keys; gc every SOUNDCHECK_GC_INTERVAL_S
    start_periodic(settings, runtime.embedding_keys.values(), runtime.stores)
    set_runtime(runtime)
    redis = Redis.from_url(settings.redis_url, retry=OutageRetry(settings.worker_redis_grace_s),
                           health_check_interval=30)
    # one queue per loaded model (jobs that need it), then the shared one (signal-only jobs)
    queues = [queue(redis, settings, model_id) for model_id in runtime.models]
    # preset jobs wait on a queue of their own, served by workers that hold every model of the preset
    queues += [queue(redis, settings, f"preset:{name}") for name, preset in PRESETS.items()
               if set(preset.embeddings()) <= set(runtime.models)]
    queues.append(queue(redis, settings))
    return SoundcheckWorker(queues, connection=redis, runtime=runtime, name=name,
                            heartbeat_ttl_s=settings.worker_heartbeat_ttl_s,
                            maintenance_interval_s=settings.maintenance_interval_s)


def run(burst: bool = False, name: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = build_worker(name=name)
    log.info("worker %s ready: %s", worker.name, worker.runtime.describe())
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
    if not burst and worker._shutdown_requested_date is None:  # no SIGINT/SIGTERM asked it to stop
        # RQ's loop ended on an error it does not survive (its log has it): exit non-zero so that
        # `soundcheck serve` (or systemd, docker) restarts the worker and says why
        log.error("worker %s: the work loop ended unexpectedly", worker.name)
        raise SystemExit(1)
