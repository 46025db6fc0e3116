"""GET /v1/jobs pages with limit/offset, GET /v1/jobs/{id} answers CSV only to a client that asks for it first,
and GET /v1/metrics carries what the dashboard used to hard-code."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.jobstore import JobStore
from tests.api.conftest import tone, wav_bytes


def test_jobs_are_paged_newest_first(api: TestClient, redis_db: Redis) -> None:
    ds = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0))))]).json()["id"]
    ids = [api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"] for _ in range(5)]
    everything = api.get("/v1/jobs", params={"limit": 50})
    assert everything.headers["x-total-count"] == "5"
    newest_first = [j["id"] for j in everything.json()]
    assert sorted(newest_first) == sorted(ids)
    pages = [api.get("/v1/jobs", params={"limit": 2, "offset": o}).json() for o in (0, 2, 4, 6)]
    assert [[j["id"] for j in p] for p in pages] == [newest_first[0:2], newest_first[2:4], newest_first[4:], []]
    assert api.get("/v1/jobs", params={"offset": -1}).status_code == 422


def test_csv_is_served_to_who_asks_for_it(api: TestClient, redis_db: Redis) -> None:
    ds = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0))))]).json()["id"]
    job = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"]
    assert api.get(f"/v1/jobs/{job}", headers={"Accept": "text/csv"}).status_code == 409  # queued: no result
    store = JobStore(redis_db)
    store.start(job, "w1")
    store.finish(job, {"metrics": {"fad": {"value": 2.25, "interval": {"low": 1.0, "high": 3.5, "confidence": 0.9,
                                                                        "method": "basic"}, "n_reference": 1,
                                           "n_candidate": 1}}})
    answer = api.get(f"/v1/jobs/{job}", headers={"Accept": "text/csv"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert list(csv.reader(io.StringIO(answer.text))) == [
        ["metric", "value", "low", "high", "confidence", "method", "n_reference", "n_candidate", "error"],
        ["fad", "2.25", "1.0", "3.5", "0.9", "basic", "1", "1", ""]]
    for accept in ("application/json", "*/*", "application/json, text/csv", "text/html,*/*;q=0.8", ""):
        plain = api.get(f"/v1/jobs/{job}", headers={"Accept": accept} if accept else {})
        assert plain.headers["content-type"] == "application/json", accept
    assert api.get(f"/v1/jobs/{job}", headers={"Accept": "text/csv, application/json;q=0.5"}).headers[
        "content-type"].startswith("text/csv")


def test_metric_catalogue_has_labels_directions_and_result_fields(api: TestClient) -> None:
    body = {m["name"]: m for m in api.get("/v1/metrics").json()}
    assert body["fad_inf"]["label"] == "FAD-∞" and body["fad"]["better"] == "lower"
    assert body["prdc"]["parts"] == ["precision", "recall", "density", "coverage"]
    assert "bin_files" in body["ndb"]["result_fields"] and "worst" in body["fad_per_file"]["result_fields"]
