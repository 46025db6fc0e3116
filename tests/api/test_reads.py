"""Reading jobs is cheap and pure: one Redis round trip per GET of a job, and no write at all."""

from __future__ import annotations

from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.jobstore import JobStore
from tests.api.conftest import tone, wav_bytes


def _commandstats(redis: Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in redis.info("commandstats").items()}


def _write_commands(redis: Redis, names: list[str]) -> list[str]:
    """The commands Redis itself flags as writes (COMMAND INFO), not a list of ours."""
    info = redis.execute_command("COMMAND", "INFO", *names)  # redis-py parses it into {name: {"flags": ...}}
    return [name for name in names if "write" in info.get(name, {}).get("flags", [])]


def test_get_and_list_of_jobs_never_write_and_take_one_round_trip(api: TestClient, redis_db: Redis) -> None:
    ds = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0))))]).json()["id"]
    queued = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"]
    done = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"]
    store = JobStore(redis_db)
    store.start(done, "w1")
    store.finish(done, {"metrics": {"fad": {"value": 1.5}}})
    running = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"]
    store.start(running, "a-worker-that-never-existed")  # no live worker: a GET must not "reconcile" it
    before = _commandstats(redis_db)
    for _ in range(20):
        for job_id in (queued, done, running):
            assert api.get(f"/v1/jobs/{job_id}").status_code == 200
    listed = api.get("/v1/jobs").json()
    after = _commandstats(redis_db)
    changed = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    changed.pop("info", None)  # our own measurement
    assert _write_commands(redis_db, ["get", "set", "zadd"]) == ["set", "zadd"]  # the detector detects
    assert _write_commands(redis_db, sorted(changed)) == [], changed
    assert changed.get("mget") == 60 + 1, changed  # one MGET per GET of a job, one for the list
    assert api.get(f"/v1/jobs/{done}").json()["result"] == {"metrics": {"fad": {"value": 1.5}}}
    assert api.get(f"/v1/jobs/{running}").json()["status"] == "running"
    assert {j["id"] for j in listed} == {queued, done, running} and all(j["result"] is None for j in listed)


def test_get_body_is_the_job_view_of_the_stored_record(api: TestClient, redis_db: Redis) -> None:
    from soundcheck.jobspec import JobView

    ds = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0))))]).json()["id"]
    ids = [api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"] for _ in range(3)]
    store = JobStore(redis_db)
    store.start(ids[1], "w1")
    store.start(ids[2], "w1")
    store.finish(ids[2], {"metrics": {"fad": {"value": 2.25, "interval": None}}, "warnings": ["é ✓"]})
    for job_id in ids:
        response = api.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert JobView.model_validate(response.json()) == store.get(job_id)
        assert response.json() == store.get(job_id).model_dump(mode="json", by_alias=True)
    assert api.get(f"/v1/jobs/{ids[2]}").json()["result"]["warnings"] == ["é ✓"]
    missing = api.get("/v1/jobs/" + "0" * 32)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


def test_health_and_models_never_write(api: TestClient, redis_db: Redis) -> None:
    redis_db.sadd(f"rq:workers:{api.app.state.settings.queue_name}", "rq:worker:gone")  # a worker killed long ago
    before = _commandstats(redis_db)
    for _ in range(10):
        assert api.get("/v1/health").json()["workers"] == 0
        assert api.get("/v1/models").status_code == 200
    after = _commandstats(redis_db)
    changed = sorted(name for name in after if after[name] != before.get(name, 0) and name != "info")
    assert changed and _write_commands(redis_db, changed) == [], changed


def test_cancel_of_a_job_whose_worker_is_gone_fails_it_at_once(api: TestClient, redis_db: Redis) -> None:
    ds = api.post("/v1/datasets", files=[("files", ("a.wav", wav_bytes(tone(1.0))))]).json()["id"]
    job_id = api.post("/v1/jobs", json={"reference": ds, "candidate": ds}).json()["id"]
    JobStore(redis_db).start(job_id, "a-worker-killed-with-no-other-left")
    response = api.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["status"] == "failed" and response.json()["error"] == "canceled on request"
