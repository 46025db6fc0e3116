"""A large set is embedded by every worker that has the model; the numbers do not depend on who did what."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from soundcheck.serve import Service, spawn, wait_until
from tests.api.conftest import tone, wav_bytes
from tests.conftest import make_settings
from worker.fanout import DONE_KEY


def test_two_workers_share_the_embedding_of_a_large_set(redis_server: str, tmp_path: Path) -> None:
    settings = make_settings(redis_server, tmp_path, fanout_chunk_files=4)
    env = dict(Service(settings).env(), SOUNDCHECK_PRELOAD="mel", SOUNDCHECK_FANOUT_CHUNK_FILES="4",
               SOUNDCHECK_TORCH_THREADS="1")
    workers = [spawn([sys.executable, "-m", "worker"], env, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        with TestClient(create_app(settings)) as api:
            wait_until(lambda: api.get("/v1/health").json()["workers"] == 2, 120, "workers", workers[0])
            rng = [wav_bytes(tone(30.0, freq=150 + 37 * i) + 0.01 * (i % 3)) for i in range(24)]
            ref = api.post("/v1/datasets", files=[("files", (f"{i}.wav", b)) for i, b in enumerate(rng)]).json()
            cand = api.post("/v1/datasets", files=[("files", (f"{i}.wav", b)) for i, b in enumerate(rng[:6])]).json()
            job = api.post("/v1/jobs", json={"reference": ref["id"], "candidate": cand["id"],
                                             "options": {"bootstrap": 0}}).json()
            deadline = time.monotonic() + 120
            while (view := api.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("finished", "failed"):
                assert time.monotonic() < deadline, view
                time.sleep(0.2)
        assert view["status"] == "finished", view["error"]
        assert view["progress"]["done"] == view["progress"]["total"] == 30
        redis = Redis.from_url(redis_server)
        doers = {redis.get(DONE_KEY.format(job["id"], ref["id"], start)) for start in range(0, 24, 4)}
        assert None not in doers and len(doers) == 2  # both workers embedded chunks of the reference
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
