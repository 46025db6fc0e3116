"""The pieces that keep jobs alive or end them, on a real Redis: lock refresh, vanished-job reconciliation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from redis import Redis

from soundcheck.jobspec import JobCreate
from soundcheck.jobstore import JOB_KEY, OPEN_JOBS, JobStore
from soundcheck.queueing import reconcile_open_jobs, worker_alive
from worker.stats_cache import LOCK_KEY, StatsCache


def test_held_lock_outlives_its_ttl_and_is_gone_after_release(redis_db: Redis) -> None:
    cache = StatsCache(redis_db, lock_timeout_s=1.5)
    other = redis_db.lock(LOCK_KEY.format("ref"), timeout=10)
    with cache.lock("ref") as held:
        assert held
        for _ in range(8):  # 4 s: well past the 1.5 s TTL
            time.sleep(0.5)
            assert 0 < redis_db.pttl(LOCK_KEY.format("ref")) <= 1500
            assert not other.acquire(blocking=False)
    assert not redis_db.exists(LOCK_KEY.format("ref"))
    assert other.acquire(blocking=False)


def test_waiter_takes_a_lock_whose_holder_stopped_refreshing(redis_db: Redis) -> None:
    redis_db.set(LOCK_KEY.format("ref"), "a-dead-holder", px=1200)  # what a SIGKILLed holder leaves
    started = time.monotonic()
    waits = []
    with StatsCache(redis_db).lock("ref", on_wait=lambda: waits.append(1)) as held:
        assert held
    assert time.monotonic() - started < 3.0 and waits


def test_queued_record_whose_rq_job_vanished_is_failed_by_maintenance(redis_db: Redis) -> None:
    store = JobStore(redis_db)
    spec = JobCreate(reference="a" * 64, candidate="b" * 64)
    old, fresh = store.create("old", spec), store.create("fresh", spec)
    assert old.status == fresh.status == "queued"
    aged = store.get("old", with_result=False).model_copy(update={"created_at": datetime.now(UTC) - timedelta(60)})
    redis_db.set(JOB_KEY.format("old"), aged.model_dump_json())
    assert reconcile_open_jobs(redis_db) == 1
    failed = store.get("old")
    assert failed.status == "failed" and "vanished" in failed.error and "submit it again" in failed.error
    assert store.get("fresh").status == "queued"  # within the grace period: maybe being enqueued now
    assert {m.decode() for m in redis_db.smembers(OPEN_JOBS)} == {"fresh"}


def test_worker_is_alive_while_its_rq_hash_beats(redis_db: Redis) -> None:
    redis_db.hset("rq:worker:w1", mapping={"last_heartbeat": "2026-01-01T00:00:00Z"})
    redis_db.hset("rq:worker:w2", mapping={"last_heartbeat": "2026-01-01T00:00:00Z", "death": "x"})
    assert worker_alive(redis_db, "w1")
    assert not worker_alive(redis_db, "w2") and not worker_alive(redis_db, "w3")


def test_progress_of_a_superseded_attempt_is_refused(redis_db: Redis) -> None:
    store = JobStore(redis_db)
    store.create("j", JobCreate(reference="a" * 64, candidate="b" * 64))
    assert store.start("j", "w1").attempts == 1
    assert store.progress("j", 1, 4, "embedding", attempt=1)
    store.requeue("j", "attempt 1 on worker w1 ended without a result")
    assert not store.progress("j", 2, 4, "embedding", attempt=1)  # queued again: attempt 1 is over
    assert store.start("j", "w2").attempts == 2
    assert not store.progress("j", 3, 4, "embedding", attempt=1)
    assert store.progress("j", 3, 4, "embedding", attempt=2)
    view = store.get("j")
    assert view.worker == "w2" and view.progress.done == 3
    assert store.attempt_notes("j") == ["attempt 1 on worker w1 ended without a result"]


def _spin(seconds: float) -> float:
    """Pure computation with no checkpoint (what a long metric without checkpoints looks like)."""
    end, x = time.monotonic() + seconds, 0.0
    while time.monotonic() < end:
        x += 1.0
    return x


def test_cancel_interrupts_a_computation_stage_without_checkpoints(redis_db: Redis) -> None:
    import pytest

    from soundcheck.jobstore import CANCEL_KEY
    from worker.tasks import CancelWatch, JobCanceled

    redis_db.set(CANCEL_KEY.format("j"), "1")
    started = time.monotonic()
    with pytest.raises(JobCanceled, match="canceled on request"), CancelWatch(redis_db, "j", grace_s=0.5) as watch:
        watch.set_stage("computing kad")
        _spin(20)
    assert time.monotonic() - started < 3.0


def test_cancel_never_interrupts_a_stage_that_holds_resources(redis_db: Redis) -> None:
    from soundcheck.jobstore import CANCEL_KEY
    from worker.tasks import CancelWatch

    redis_db.set(CANCEL_KEY.format("j"), "1")
    with CancelWatch(redis_db, "j", grace_s=0.2) as watch:
        watch.set_stage("embedding reference")  # holds the reference lock, writes the cache: checkpoints only
        _spin(1.5)
        assert watch.canceled.is_set()
    _spin(0.5)  # nothing pending after the watch ended


def test_failure_before_the_task_ran_fails_the_record_and_is_not_retried(redis_db: Redis) -> None:
    from rq import Queue, Retry
    from rq.exceptions import AbandonedJobError
    from rq.serializers import JSONSerializer

    from soundcheck.queueing import on_job_failure

    store = JobStore(redis_db)
    spec = JobCreate(reference="a" * 64, candidate="b" * 64)
    q = Queue("sc-liveness", connection=redis_db, serializer=JSONSerializer)  # as the api enqueues
    for job_id in ("broken", "abandoned"):
        store.create(job_id, spec)
        q.enqueue_call("worker.tasks.evaluate", args=(job_id, {}), job_id=job_id, retry=Retry(max=2))
    broken = q.fetch_job("broken")
    on_job_failure(broken, redis_db, ImportError, ImportError("no module named worker.tasks"), None)
    assert broken.retries_left == 0
    assert "could not run the job (ImportError: no module named worker.tasks)" in store.get("broken").error
    abandoned = q.fetch_job("abandoned")
    store.start("abandoned", "w1")
    on_job_failure(abandoned, redis_db, AbandonedJobError, AbandonedJobError(), None)
    view = store.get("abandoned")
    assert abandoned.retries_left == 2 and view.status == "queued" and view.attempts == 1
    assert "w1" in view.progress.stage and store.attempt_notes("abandoned")[0].startswith("attempt 1 on worker w1")
