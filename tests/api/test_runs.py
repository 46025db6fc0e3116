"""Runs over the api in-process on our own Redis: what a job may say about its run, and the series read back.

No worker here: a job's result is written by ``JobStore.finish`` exactly as the worker writes it, so the series
is checked against the numbers put in (tests/integration/test_runs.py runs real jobs)."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.jobstore import JobStore
from tests.api.conftest import tone, wav_bytes


def _dataset(api: TestClient, freq: float = 440.0) -> str:
    response = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0, freq=freq))))])
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def _job(api: TestClient, ds: str, **extra: object) -> dict:
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "metrics": ["fad", "prdc"],
                                          "options": {"prdc": {"unit": "frame"}}, **extra})
    assert response.status_code == 202, response.text
    return response.json()


@pytest.mark.parametrize(("extra", "field"), [
    ({"run": "bad/name", "step": 1}, "run"),
    ({"run": "", "step": 1}, "run"),
    ({"run": "-leading", "step": 1}, "run"),
    ({"run": "x" * 101, "step": 1}, "run"),
    ({"run": "ok", "step": -1}, "step"),
    ({"run": "ok", "step": 1.5}, "step"),
    ({"run": "ok", "step": 2.0}, "step"),  # a float is not a step, even a whole one
    ({"run": "ok", "step": "3"}, "step"),
    ({"run": "ok", "step": True}, "step"),
    ({"run": "ok", "step": 2**53 + 1}, "step"),
    ({"run": "ok", "step": 1, "tags": ["x" * 65]}, "tags"),
    ({"run": "ok", "step": 1, "tags": [""]}, "tags"),
    ({"run": "ok", "step": 1, "tags": ["a\nb"]}, "tags"),
    ({"run": "ok", "step": 1, "tags": [str(i) for i in range(21)]}, "tags"),
    ({"run": "ok", "step": 1, "tags": "lr=1e-4"}, "tags"),
])
def test_invalid_run_step_or_tags_are_422_naming_the_field(api: TestClient, extra: dict, field: str) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, **extra})
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


@pytest.mark.parametrize("extra", [{"run": "r"}, {"step": 3}])
def test_run_and_step_come_together(api: TestClient, extra: dict) -> None:
    ds = _dataset(api)
    response = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, **extra})
    assert response.status_code == 422
    assert "run and step go together" in response.json()["detail"]


def test_a_run_keeps_one_reference_and_one_embedding(api: TestClient) -> None:
    ref, other = _dataset(api), _dataset(api, freq=880.0)
    _job(api, ref, run="exp-1", step=0)
    response = api.post("/v1/jobs", json={"reference": other, "candidate": ref, "run": "exp-1", "step": 1})
    assert response.status_code == 422
    assert "exp-1" in response.json()["detail"] and "reference" in response.json()["detail"]
    response = api.post("/v1/jobs", json={"reference": ref, "candidate": other, "run": "exp-1", "step": 1,
                                          "embedding": "vggish"})
    assert response.status_code == 422 and "embedding" in response.json()["detail"]
    # the same reference and embedding with another candidate joins the run
    assert api.post("/v1/jobs", json={"reference": ref, "candidate": other, "run": "exp-1",
                                      "step": 1}).status_code == 202


def test_unknown_run_is_404_and_a_bad_name_422(api: TestClient) -> None:
    assert api.get("/v1/runs").json() == []
    response = api.get("/v1/runs/nope")
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert api.get("/v1/runs/bad%20name").status_code == 422


def _result(fad: float, low: float, high: float, precision: float) -> dict:
    """A result as the worker stores it (soundcheck.evaluation's shapes)."""
    interval = {"low": low, "high": high, "level": 0.95, "resamples": 10, "finite": 10, "bias": 0.0,
                "method": "basic"}
    return {"metrics": {
        "fad": {"value": fad, "interval": interval, "n_reference": 1, "n_candidate": 1},
        "prdc": {"value": None, "interval": None, "k": 5, "unit": "file",
                 "precision": {"value": precision, "interval": None},
                 "recall": {"value": 0.5, "interval": {**interval, "low": 0.4, "high": 0.6}}},
    }, "warnings": []}


def test_run_series_sorted_by_step_with_values_intervals_and_status(api: TestClient, redis_db: Redis) -> None:
    ds = _dataset(api)
    store = JobStore(redis_db)
    # submitted out of order, one step twice, one job still queued, one failed
    jobs = {step: _job(api, ds, run="exp.2:a", step=step, tags=["lr=1e-4"]) for step in (2000, 0, 1000)}
    again = _job(api, ds, run="exp.2:a", step=1000)
    failed = _job(api, ds, run="exp.2:a", step=3000)
    other = _job(api, ds, run="other", step=7)
    plain = _job(api, ds)  # not in any run
    values = {0: (9.0, 8.0, 10.5, 0.1), 1000: (5.0, 4.5, 6.0, 0.4), 2000: (2.5, 2.0, 3.25, 0.7)}
    for step, numbers in values.items():
        assert store.start(jobs[step]["id"], "w") is not None
        assert store.finish(jobs[step]["id"], _result(*numbers))
    assert store.fail(failed["id"], "boom")

    runs = api.get("/v1/runs").json()
    assert [r["name"] for r in runs] == ["exp.2:a", "other"]  # the failure was the last update
    assert runs[0]["steps"] == 4 and runs[0]["last_step"] == 3000
    assert runs[1] == {"name": "other", "steps": 1, "last_step": 7, "updated_at": runs[1]["updated_at"]}
    assert datetime.fromisoformat(runs[0]["updated_at"]) >= datetime.fromisoformat(runs[1]["updated_at"])

    body = api.get("/v1/runs/exp.2:a").json()
    assert body["name"] == "exp.2:a" and body["steps"] == 4 and body["last_step"] == 3000
    assert [(p["step"], p["job_id"]) for p in body["points"]] == [
        (0, jobs[0]["id"]), (1000, jobs[1000]["id"]), (1000, again["id"]), (2000, jobs[2000]["id"]),
        (3000, failed["id"])]
    assert [p["status"] for p in body["points"]] == ["finished", "finished", "queued", "finished", "failed"]
    assert body["metrics"] == ["fad", "prdc.precision", "prdc.recall"]
    by_step = {p["step"]: p for p in body["points"] if p["status"] == "finished"}
    for step, (fad, low, high, precision) in values.items():
        metrics = by_step[step]["metrics"]
        assert metrics["fad"] == {"value": fad, "low": low, "high": high, "confidence": 0.95, "error": None}
        assert metrics["prdc.precision"]["value"] == precision and metrics["prdc.precision"]["low"] is None
        assert (metrics["prdc.recall"]["low"], metrics["prdc.recall"]["high"]) == (0.4, 0.6)
        assert by_step[step]["tags"] == ["lr=1e-4"]
    assert body["points"][2]["metrics"] == {} and body["points"][4]["error"] == "boom"
    assert plain["id"] not in {p["job_id"] for p in body["points"]}
    assert other["id"] not in {p["job_id"] for p in body["points"]}


def test_a_job_removed_by_gc_leaves_its_run_readable(api: TestClient, redis_db: Redis) -> None:
    ds = _dataset(api)
    kept, gone = _job(api, ds, run="r", step=1), _job(api, ds, run="r", step=2)
    redis_db.delete(f"sc:job:{gone['id']}")
    body = api.get("/v1/runs/r").json()
    assert [p["job_id"] for p in body["points"]] == [kept["id"]]
