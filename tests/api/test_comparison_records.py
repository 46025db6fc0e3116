"""Comparison records are never a 500 and never hang: an unreadable record reads as failed with the reason,
and one whose worker died (its RQ job failed under it) is failed by the workers' maintenance."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job

from soundcheck.comparespec import ComparisonCreate
from soundcheck.comparestore import COMPARISON_KEY, ComparisonStore
from soundcheck.queueing import reconcile_open_comparisons

SPEC = ComparisonCreate(reference="a" * 64, candidates=["b" * 64, "c" * 64])


def test_an_unreadable_record_reads_as_failed_not_500(api: TestClient, redis_db: Redis) -> None:
    redis_db.set(COMPARISON_KEY.format("bad"), b'{"id": "bad", "status": "running", "spec": {"oops": 1}}')
    redis_db.zadd("sc:comparisons", {"bad": time.time()})
    response = api.get("/v1/comparisons/bad")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed" and "cannot be used" in body["error"] and body["spec"] is None


def test_a_comparison_whose_worker_died_is_failed_by_maintenance(redis_db: Redis) -> None:
    store = ComparisonStore(redis_db)
    store.create("dead", SPEC)
    store.start("dead", worker="w1")
    # what RQ's abandoned-job handling leaves of a SIGKILLed worker's job: its hash says failed
    redis_db.hset(Job.key_for("comparison-dead"), mapping={"status": "failed"})
    store.create("waiting", SPEC)  # queued, its RQ job present: left alone
    redis_db.hset(Job.key_for("comparison-waiting"), mapping={"status": "queued"})
    assert reconcile_open_comparisons(redis_db) == 1
    assert store.get("dead").status == "failed" and "submit it again" in store.get("dead").error
    assert store.get("waiting").status == "queued"


def test_a_vanished_queued_comparison_fails_after_the_grace(redis_db: Redis) -> None:
    store = ComparisonStore(redis_db)
    view = store.create("gone", SPEC)
    old = view.model_copy(update={"created_at": datetime.now(UTC) - timedelta(minutes=5)})
    redis_db.set(COMPARISON_KEY.format("gone"), old.model_dump_json(exclude={"result"}))
    assert reconcile_open_comparisons(redis_db) == 1
    assert "vanished" in store.get("gone").error
