"""Job requests are validated before anything is queued."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
