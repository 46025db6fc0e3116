"""Job requests are validated before anything is queued."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.jobstore import JOB_INDEX, JOB_KEY, RESULT_KEY
from tests.api.conftest import tone, wav_bytes


def _dataset(api: TestClient) -> str:
    response = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0))))])
    return response.json()["id"]


def test_unknown_metric_is_422_naming_the_valid_ones(api: TestClient) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "metrics": ["fid"]})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert "fid" in str(response.json()["errors"]) and "'fad'" in detail and "'kad'" in detail


def test_unknown_option_is_422(api: TestClient) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "options": {"kad": {"bandwith": 1}}})
    assert response.status_code == 422
    assert "bandwith" in response.json()["detail"]


def test_unknown_embedding_is_422(api: TestClient) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "embedding": "clap"})
    assert response.status_code == 422
    assert "mel" in response.json()["detail"]


def test_missing_dataset_is_404(api: TestClient) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": "f" * 64})
    assert response.status_code == 404
    assert "candidate" in response.json()["detail"]


def test_valid_job_is_queued_with_location(api: TestClient) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "metrics": ["fad", "kad"]})
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_metrics_catalogue_lists_every_metric(api: TestClient) -> None:
    from soundcheck.jobspec import METRIC_NAMES

    body = api.get("/v1/metrics").json()
    assert [m["name"] for m in body] == list(METRIC_NAMES)
    assert {m["better"] for m in body} <= {"lower", "higher"}


def _store_record(redis: Redis, job_id: str, raw: bytes | str, result: bytes | str | None = None) -> None:
    redis.set(JOB_KEY.format(job_id), raw)
    redis.zadd(JOB_INDEX, {job_id: 1_700_000_000.0})
    if result is not None:
        redis.set(RESULT_KEY.format(job_id), result)


def _old_record(job_id: str, status: str, **spec_options: object) -> str:
    """A record as an older version stored it, whose request this version no longer accepts."""
    return json.dumps({"id": job_id, "status": status, "progress": {"done": 3, "total": 3, "stage": status},
                       "created_at": "2026-01-02T03:04:05Z", "error": None, "worker": "w1",
                       "spec": {"reference": "a" * 64, "candidate": "b" * 64, "metrics": ["fad"],
                                "options": spec_options}})


UNREADABLE = {
    "binary": b"\x00\xffnot json at all",
    "truncated": '{"id": "x", "status": "queu',
    "not_an_object": "[1, 2, 3]",
    "unknown_status": json.dumps({"id": "x", "status": "paused", "spec": {}, "progress": {}}),
}


def test_unreadable_records_show_as_failed_in_get_list_and_delete(api: TestClient, redis_db: Redis) -> None:
    ds = _dataset(api)
    good = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"]
    for job_id, raw in UNREADABLE.items():
        _store_record(redis_db, job_id, raw)
    _store_record(redis_db, "old_finished", _old_record("old_finished", "finished", bootstrap=10_000),
                  result=json.dumps({"metrics": {"fad": {"value": 1.5}}}))
    _store_record(redis_db, "old_queued", _old_record("old_queued", "queued", seed=-1))
    _store_record(redis_db, "bad_result", _old_record("bad_result", "finished"), result=b"{broken")

    listed = api.get("/v1/jobs")
    assert listed.status_code == 200, listed.text
    by_id = {job["id"]: job for job in listed.json()}
    assert by_id[good]["status"] == "queued" and by_id[good]["spec"]["reference"] == ds
    for job_id in [*UNREADABLE, "old_queued"]:
        job = by_id[job_id]
        assert job["status"] == "failed" and job["spec"] is None, job
        assert "cannot be read" in job["error"] and "submit the job again" in job["error"]
        one = api.get(f"/v1/jobs/{job_id}")
        assert one.status_code == 200 and one.json()["status"] == "failed"
        gone = api.delete(f"/v1/jobs/{job_id}")
        assert gone.status_code == 409 and "already failed" in gone.json()["detail"]
    assert "options.seed" in by_id["old_queued"]["error"]
    # a finished job of an older schema keeps its result; only its request cannot be shown
    old = api.get("/v1/jobs/old_finished").json()
    assert old["status"] == "finished" and old["result"] == {"metrics": {"fad": {"value": 1.5}}}
    assert old["spec"] is None and "options.bootstrap" in old["error"]
    assert old["created_at"].startswith("2026-01-02T03:04:05")
    broken = api.get("/v1/jobs/bad_result").json()
    assert broken["status"] == "failed" and "stored result of this job cannot be read" in broken["error"]
    assert api.delete("/v1/jobs/old_finished").status_code == 409
