"""Through the real service (uvicorn + worker over real HTTP): a metric that fails only at run time keeps the
others, and the door checks and tolerant record reading hold over the wire."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from redis import Redis

from soundcheck.client import Client
from soundcheck.jobstore import JOB_INDEX, JOB_KEY
from soundcheck.serve import Service


@pytest.fixture(scope="module")
def ids(service: Service, example_sets: tuple[Path, Path]) -> tuple[str, str]:
    with Client(service.url) as client:
        return client.upload(example_sets[0]).id, client.upload(example_sets[1]).id


def test_metric_that_fails_at_run_time_keeps_the_others(service: Service, ids: tuple[str, str]) -> None:
    """NDB on frames with K=500 passes the door (frames are unknown before embedding: 12 files may have 1000
    frames), then cannot be fitted on the ~80 reference frames; FAD is still computed, with the same value as a
    job that asks for FAD alone."""
    ref, cand = ids
    with Client(service.url) as client:
        both = client.evaluate(ref, cand, metrics=["fad", "ndb"], poll_s=0.1, timeout_s=240,
                               options={"bootstrap": 0, "ndb": {"k": 500, "unit": "frame"}})
        alone = client.evaluate(ref, cand, metrics=["fad"], poll_s=0.1, timeout_s=240, options={"bootstrap": 0})
    assert both.status == "finished", both.error
    assert alone.status == "finished", alone.error
    metrics = both.result["metrics"]
    assert np.isfinite(metrics["fad"]["value"]) and metrics["fad"]["value"] > 0
    assert metrics["fad"]["value"] == alone.result["metrics"]["fad"]["value"]
    assert "error" not in metrics["fad"]
    assert metrics["ndb"]["value"] is None
    assert "NDB with K=500 bins needs at least 1000 reference frames" in metrics["ndb"]["error"]
    assert any(w.startswith("ndb was not computed") for w in both.result["warnings"])


def test_door_checks_and_unreadable_records_over_http(service: Service, ids: tuple[str, str]) -> None:
    ref, cand = ids
    redis = Redis.from_url(service.settings.redis_url)
    try:
        before = redis.zcard(JOB_INDEX)
        with httpx.Client(base_url=service.url, timeout=30) as http:
            raw = json.dumps({"reference": ref, "candidate": cand, "options": {"kad": {"scale": "X"}}})
            response = http.post("/v1/jobs", content=raw.replace('"X"', "1e309"),
                                 headers={"content-type": "application/json"})
            assert response.status_code == 422 and response.headers["content-type"].startswith(
                "application/problem+json")
            assert response.json()["errors"][0]["field"] == "options.kad.scale"
            response = http.post("/v1/jobs", json={"reference": ref, "candidate": cand, "metrics": ["is"],
                                                   "embedding": "yamnet", "options": {"is": {"splits": 20}}})
            assert response.status_code == 422
            assert "is with 20 splits needs at least 20 candidate files, the candidate has 12" in response.text
            assert redis.zcard(JOB_INDEX) == before  # nothing stored or queued

            redis.set(JOB_KEY.format("corrupt"), b"\x00garbage")
            redis.zadd(JOB_INDEX, {"corrupt": 9e9})  # newest: first in the list
            listed = http.get("/v1/jobs")
            assert listed.status_code == 200
            first = listed.json()[0]
            assert first["id"] == "corrupt" and first["status"] == "failed" and "cannot be read" in first["error"]
            assert http.get("/v1/jobs/corrupt").json()["status"] == "failed"
            assert http.delete("/v1/jobs/corrupt").status_code == 409
    finally:
        redis.delete(JOB_KEY.format("corrupt"))
        redis.zrem(JOB_INDEX, "corrupt")
        redis.close()
