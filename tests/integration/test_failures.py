"""Jobs that cannot finish end as `failed` with a message a person can act on — never hang, never vanish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from soundcheck.embeddings import load
from soundcheck.provenance import embedding_key, embedding_provenance, reference_stats_key
from soundcheck.serve import Service, spawn, wait_until
from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes
from tests.conftest import make_settings
from worker.stats_cache import LOCK_KEY, LOCK_TTL_S


@dataclass
class Deployment:
    settings: Settings
    api: TestClient
    worker: subprocess.Popen
    redis: Redis


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    env = dict(Service(settings).env(), SOUNDCHECK_PRELOAD="mel",
               SOUNDCHECK_JOB_TIMEOUT_S=str(settings.job_timeout_s),
               SOUNDCHECK_JOB_MAX_ATTEMPTS=str(settings.job_max_attempts),
               SOUNDCHECK_WORKER_HEARTBEAT_TTL_S=str(settings.worker_heartbeat_ttl_s),
               SOUNDCHECK_MAINTENANCE_INTERVAL_S=str(settings.maintenance_interval_s))
    return spawn([sys.executable, "-m", "worker"], env, log)


@pytest.fixture()
def deployment(redis_server: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """A worker process of our own on its own queue, and the api in-process; both on our test Redis. A dead
    worker is noticed within ~6 s here (heartbeat TTL 6 s, maintenance every second)."""
    overrides = {"job_timeout_s": 600, "worker_heartbeat_ttl_s": 6, "maintenance_interval_s": 1.0,
                 **getattr(request, "param", {})}
    settings = make_settings(redis_server, tmp_path, **overrides)
    worker = _start_worker(settings, tmp_path / "worker.log")
    with TestClient(create_app(settings)) as api:
        try:
            wait_until(lambda: api.get("/v1/health").json()["workers"] == 1, 120, "worker", worker)
            yield Deployment(settings, api, worker, Redis.from_url(redis_server))
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(15)
                except subprocess.TimeoutExpired:  # warm shutdown waits for a blocked job
                    worker.kill()
                    worker.wait()
            print((tmp_path / "worker.log").read_text()[-4000:])


def _upload(api: TestClient, files: dict[str, bytes]) -> str:
    response = api.post("/v1/datasets", files=[("files", (n, d)) for n, d in files.items()])
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _sets(api: TestClient, salt: float) -> tuple[str, str]:
    ref = _upload(api, {f"r{i}.wav": wav_bytes(tone(1.5, freq=200 + 40 * i + salt)) for i in range(4)})
    cand = _upload(api, {f"c{i}.wav": wav_bytes(tone(1.5, freq=210 + 40 * i + salt)) for i in range(4)})
    return ref, cand


def _wait(api: TestClient, job_id: str, until: set[str], timeout: float = 60, stage: str = "",
          attempts: int = 0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = api.get(f"/v1/jobs/{job_id}").json()
        if view["status"] in until and stage in view["progress"]["stage"] and view["attempts"] >= attempts:
            return view
        time.sleep(0.2)
    pytest.fail(f"job {job_id} still {view['status']} ({view['progress']}) after {timeout} s")


def _stats_key(ref: str) -> str:
    return reference_stats_key(ref, embedding_key(embedding_provenance(load("mel", Path("/x")).provenance())))


def _hold_reference_lock(d: Deployment, ref: str):
    key = _stats_key(ref)
    lock = d.redis.lock(LOCK_KEY.format(key), timeout=120)
    assert lock.acquire(blocking=False)
    return lock


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_killed_worker_job_is_retried_and_finishes_on_the_next_worker(deployment: Deployment, tmp_path: Path) -> None:
    ref, cand = _sets(deployment.api, salt=1.0)
    lock = _hold_reference_lock(deployment, ref)  # parks the job at "waiting for the reference"
    job = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    first = _wait(deployment.api, job["id"], {"running"}, stage="waiting")
    assert first["attempts"] == 1
    _kill(deployment.worker)
    second = _start_worker(deployment.settings, tmp_path / "worker2.log")
    try:
        again = _wait(deployment.api, job["id"], {"running"}, timeout=90, stage="waiting", attempts=2)
        assert again["attempts"] == 2 and again["worker"] != first["worker"]
        lock.release()
        done = _wait(deployment.api, job["id"], {"finished", "failed"}, timeout=60)
        assert done["status"] == "finished", done["error"]
        assert done["attempts"] == 2
        retried = [w for w in done["result"]["warnings"] if w.startswith("retried:")]
        assert len(retried) == 1 and first["worker"] in retried[0] and "stopped responding" in retried[0]
    finally:
        _stop(second)


@pytest.mark.slow
@pytest.mark.parametrize("deployment", [{"job_max_attempts": 2}], indirect=True)
def test_job_fails_naming_its_attempts_when_every_worker_dies(deployment: Deployment, tmp_path: Path) -> None:
    ref, cand = _sets(deployment.api, salt=5.0)
    lock = _hold_reference_lock(deployment, ref)
    job = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    first = _wait(deployment.api, job["id"], {"running"}, stage="waiting")
    _kill(deployment.worker)
    second = _start_worker(deployment.settings, tmp_path / "worker2.log")
    third = None
    try:
        again = _wait(deployment.api, job["id"], {"running"}, timeout=90, stage="waiting", attempts=2)
        assert again["attempts"] == 2
        _kill(second)
        third = _start_worker(deployment.settings, tmp_path / "worker3.log")  # its maintenance finds it
        failed = _wait(deployment.api, job["id"], {"failed", "finished"}, timeout=90)
        assert failed["status"] == "failed" and failed["attempts"] == 2
        assert "attempted 2 times" in failed["error"] and "SOUNDCHECK_JOB_MAX_ATTEMPTS=2" in failed["error"]
        assert first["worker"] in failed["error"] and again["worker"] in failed["error"]
        assert "submit it again" in failed["error"]
    finally:
        lock.release()
        _stop(second)
        if third is not None:
            _stop(third)


@pytest.mark.slow
def test_canceled_job_whose_worker_died_is_not_retried(deployment: Deployment, tmp_path: Path) -> None:
    ref, cand = _sets(deployment.api, salt=6.0)
    lock = _hold_reference_lock(deployment, ref)
    job = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    _wait(deployment.api, job["id"], {"running"}, stage="waiting")
    os.kill(deployment.worker.pid, signal.SIGSTOP)  # frozen: it cannot see the cancel, then dies
    assert deployment.api.delete(f"/v1/jobs/{job['id']}").status_code == 202
    _kill(deployment.worker)
    second = _start_worker(deployment.settings, tmp_path / "worker2.log")
    try:
        failed = _wait(deployment.api, job["id"], {"failed", "finished"}, timeout=90)
        assert failed["status"] == "failed" and failed["error"] == "canceled on request"
        assert failed["attempts"] == 1
    finally:
        lock.release()
        _stop(second)


_HOLDER = """
import sys, time
from redis import Redis
from worker.stats_cache import StatsCache
with StatsCache(Redis.from_url(sys.argv[1])).lock(sys.argv[2]) as held:
    print("held" if held else "not held", flush=True)
    time.sleep(3600)
"""


@pytest.mark.slow
def test_lock_of_a_killed_holder_delays_the_next_job_by_at_most_its_ttl(deployment: Deployment) -> None:
    ref, cand = _sets(deployment.api, salt=7.0)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, deployment.settings.redis_url, _stats_key(ref)],
                              stdout=subprocess.PIPE, text=True, env=Service(deployment.settings).env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        job = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
        _wait(deployment.api, job["id"], {"running"}, stage="waiting")
        time.sleep(LOCK_TTL_S * 0.5)  # the holder's thread keeps the lock past its TTL while it lives
        assert _wait(deployment.api, job["id"], {"running"})["progress"]["stage"].startswith("waiting")
        _kill(holder)
        killed = time.monotonic()
        done = _wait(deployment.api, job["id"], {"finished", "failed"}, timeout=LOCK_TTL_S + 30)
        assert done["status"] == "finished", done["error"]
        assert time.monotonic() - killed < LOCK_TTL_S + 10
        # it waited ~30 s, five times the 6 s heartbeat TTL here: the beats kept its one attempt alive
        assert done["attempts"] == 1 and not any(w.startswith("retried") for w in done["result"]["warnings"])
    finally:
        _stop(holder)


@pytest.mark.parametrize("deployment", [{"job_timeout_s": 3}], indirect=True)
def test_job_over_the_time_limit_fails_with_the_limit(deployment: Deployment) -> None:
    ref, cand = _sets(deployment.api, salt=2.0)
    lock = _hold_reference_lock(deployment, ref)
    job = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    failed = _wait(deployment.api, job["id"], {"failed"}, timeout=60)
    assert "time limit of 3 s" in failed["error"]
    lock.release()
    # the worker carries on with the next job
    again = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    assert _wait(deployment.api, again["id"], {"finished", "failed"}, 60)["status"] == "finished"


def test_changed_registered_file_fails_the_job_and_worker_carries_on(deployment: Deployment) -> None:
    root = deployment.settings.allowed_roots[0] / "reg"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.wav").write_bytes(wav_bytes(tone(1.2, freq=300 + 50 * i)))
    ref = deployment.api.post("/v1/datasets/register", json={"path": str(root)}).json()["id"]
    cand = _upload(deployment.api, {f"{i}.wav": wav_bytes(tone(1.2, freq=310 + 50 * i)) for i in range(3)})
    (root / "1.wav").write_bytes(wav_bytes(tone(1.2, freq=999)))
    job = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    failed = _wait(deployment.api, job["id"], {"failed", "finished"})
    assert failed["status"] == "failed"
    assert "1.wav" in failed["error"] and "changed since the dataset was registered" in failed["error"]
    ok = deployment.api.post("/v1/jobs", json={"reference": cand, "candidate": cand}).json()
    assert _wait(deployment.api, ok["id"], {"finished", "failed"})["status"] == "finished"


def test_model_without_weights_is_refused_with_the_file_to_put_where(deployment: Deployment) -> None:
    ref, cand = _sets(deployment.api, salt=3.0)
    response = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand, "embedding": "vggish"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "vggish-10086976.pth" in detail and str(deployment.settings.models_dir) in detail


def test_cancel_stops_a_running_job_and_a_queued_one(deployment: Deployment) -> None:
    ref, cand = _sets(deployment.api, salt=4.0)
    lock = _hold_reference_lock(deployment, ref)
    running = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    _wait(deployment.api, running["id"], {"running"}, stage="waiting")
    queued = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand}).json()
    assert deployment.api.delete(f"/v1/jobs/{queued['id']}").json()["status"] == "failed"
    assert deployment.api.delete(f"/v1/jobs/{running['id']}").status_code == 202
    failed = _wait(deployment.api, running["id"], {"failed"}, timeout=20)
    assert failed["error"] == "canceled on request"
    assert deployment.api.delete(f"/v1/jobs/{running['id']}").status_code == 409
    lock.release()


def _upload_dir(api: TestClient, root: Path) -> str:
    files = [("files", (str(p.relative_to(root)), p.read_bytes())) for p in sorted(root.rglob("*.wav"))]
    response = api.post("/v1/datasets", files=files)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.slow
def test_cancel_in_the_metric_stage_ends_the_job_within_5_s(deployment: Deployment,
                                                             example_sets: tuple[Path, Path]) -> None:
    ref, cand = (_upload_dir(deployment.api, root) for root in example_sets)
    job = deployment.api.post("/v1/jobs", json={  # the api's largest bootstrap, on several metrics
        "reference": ref, "candidate": cand, "metrics": ["fad", "kad", "prdc", "fad_inf"],
        "options": {"bootstrap": 2000, "fad_inf": {"repeats": 100}}}).json()
    running = _wait(deployment.api, job["id"], {"running"}, timeout=120, stage="computing")
    asked = time.monotonic()
    assert deployment.api.delete(f"/v1/jobs/{job['id']}").status_code == 202
    failed = _wait(deployment.api, job["id"], {"failed", "finished"}, timeout=60)
    took = time.monotonic() - asked
    assert failed["status"] == "failed" and failed["error"] == "canceled on request", running["progress"]
    assert took < 5.0, f"cancel took {took:.1f} s in stage {running['progress']['stage']!r}"
    # the worker is free again at once
    ok = deployment.api.post("/v1/jobs", json={"reference": ref, "candidate": cand,
                                               "options": {"bootstrap": 0}}).json()
    assert _wait(deployment.api, ok["id"], {"finished", "failed"}, timeout=60)["status"] == "finished"
