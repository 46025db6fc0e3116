"""README "Multi-host deployment", followed: one Redis, moto's S3 server as the bucket, an api (uvicorn) and two
workers, each with its own data dir, configured by the env lines the README gives. A fanned-out job's metrics
equal those of a one-worker deployment on a local data dir (its own Redis database), also after the workers'
caches are wiped, with one worker's cache bounded so tightly that it evicts on every file; the bucket holds
the blobs, manifests and embeddings, and the data dirs hold only caches."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from soundcheck.serve import Service, spawn, wait_until
from tests.api.conftest import tone, wav_bytes
from tests.conftest import free_port, make_settings
from tests.storage.conftest import AWS_ENV, make_bucket
from worker.fanout import DONE_KEY

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOB = {"metrics": ["fad", "kad", "prdc"], "options": {"bootstrap": 20, "seed": 7}}
TOKEN = "multi-host-test-token"
TINY_CACHE = 400_000  # bytes: one 10 s file; worker B evicts on every fetch


def readme_blocks() -> dict[str, dict[str, str]]:
    """The README section's code blocks: first-line comment → {variable: value} of its `export` lines."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Multi-host deployment", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for body in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines = body.strip().splitlines()
        blocks[lines[0].lstrip("# ").strip()] = dict(re.findall(r"^export (\w+)=(\S+)$", body, re.M))
    return blocks


def _fill(values: dict[str, str], tokens: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        for token, real in tokens.items():
            value = value.replace(token, real)
        assert "<" not in value, f"README placeholder left in {key}={value}"
        out[key] = value
    return out


def _sets() -> tuple[dict[str, bytes], dict[str, bytes]]:
    ref = {f"r{i:02d}.wav": wav_bytes(tone(10.0, freq=150 + 37 * i) + 0.01 * (i % 3)) for i in range(16)}
    cand = {f"c{i}.wav": wav_bytes(tone(10.0, freq=170 + 53 * i)) for i in range(6)}
    return ref, cand


def _wait_job(client: httpx.Client | TestClient, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (view := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("finished", "failed"):
        assert time.monotonic() < deadline, view
        time.sleep(0.3)
    assert view["status"] == "finished", view.get("error")
    return view


def _one_worker_metrics(redis_server: str, tmp_path: Path, ref: dict[str, bytes], cand: dict[str, bytes]) -> dict:
    """The same job on one worker with the default local storage, in Redis database 1."""
    url = redis_server.rsplit("/", 1)[0] + "/1"
    Redis.from_url(url).flushdb()
    settings = make_settings(url, tmp_path / "single")
    env = dict(Service(settings).env(), SOUNDCHECK_PRELOAD="mel", SOUNDCHECK_TORCH_THREADS="1")
    worker = spawn([sys.executable, "-m", "worker"], env, tmp_path / "single.log")
    try:
        with TestClient(create_app(settings)) as api:
            wait_until(lambda: api.get("/v1/health").json()["workers"] == 1, 120, "the single worker", worker)
            ref_id = api.post("/v1/datasets", files=[("files", (n, b)) for n, b in ref.items()]).json()["id"]
            cand_id = api.post("/v1/datasets", files=[("files", (n, b)) for n, b in cand.items()]).json()["id"]
            job = api.post("/v1/jobs", json={"reference": ref_id, "candidate": cand_id, **JOB}).json()
            return {"ids": (ref_id, cand_id), "metrics": _wait_job(api, job["id"])["result"]["metrics"]}
    finally:
        _stop([worker])


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _files(root: Path) -> list[Path]:
    return [p.relative_to(root) for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_two_hosts_sharing_only_redis_and_the_bucket_equal_one_worker(
        redis_server: str, s3_endpoint: str, s3fs_client, tmp_path: Path) -> None:
    ref, cand = _sets()
    single = _one_worker_metrics(redis_server, tmp_path, ref, cand)

    Redis.from_url(redis_server).flushdb()
    bucket = make_bucket(s3_endpoint)
    blocks = readme_blocks()
    tokens = {"<redis>": redis_server.split("://", 1)[1].rsplit("/", 1)[0], "<bucket>": bucket,
              "<minio>": s3_endpoint.split("://", 1)[1], "<access-key>": AWS_ENV["AWS_ACCESS_KEY_ID"],
              "<secret-key>": AWS_ENV["AWS_SECRET_ACCESS_KEY"], "<token>": TOKEN}
    common = _fill(blocks["all hosts (api and every worker)"], tokens)
    api_vars = _fill(blocks["the api host"], tokens)
    worker_vars = _fill(blocks["each GPU worker host"], tokens)
    assert common["SOUNDCHECK_STORAGE_URL"].startswith(f"s3://{bucket}/")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOUNDCHECK_", "AWS_"))}
    hosts = {name: tmp_path / name for name in ("api-host", "worker-a", "worker-b")}
    # what differs from the README here: one machine stands for three (own data dirs, loopback, CPU, mel)
    api_port = free_port()
    api_env = {**base, **common, **api_vars, "SOUNDCHECK_DATA_DIR": str(hosts["api-host"]),
               "SOUNDCHECK_API_HOST": "127.0.0.1", "SOUNDCHECK_API_PORT": str(api_port)}
    worker_env = {**base, **common, **worker_vars, "SOUNDCHECK_DEVICE": "cpu", "SOUNDCHECK_PRELOAD": "mel",
                  "SOUNDCHECK_FANOUT_CHUNK_FILES": "4", "SOUNDCHECK_TORCH_THREADS": "1"}
    envs = {"worker-a": {**worker_env, "SOUNDCHECK_DATA_DIR": str(hosts["worker-a"]),
                         "SOUNDCHECK_MODEL_DIR": str(tmp_path / "models-a")},
            "worker-b": {**worker_env, "SOUNDCHECK_DATA_DIR": str(hosts["worker-b"]),
                         "SOUNDCHECK_MODEL_DIR": str(tmp_path / "models-b"),
                         "SOUNDCHECK_LOCAL_CACHE_MAX_BYTES": str(TINY_CACHE)}}
    procs = [spawn([sys.executable, "-m", "worker"], env, tmp_path / f"{name}.log") for name, env in envs.items()]
    procs.append(spawn([sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory", "--host",
                        api_env["SOUNDCHECK_API_HOST"], "--port", api_env["SOUNDCHECK_API_PORT"],
                        "--log-level", "warning"], api_env, tmp_path / "api.log"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            def two_workers() -> bool:
                try:
                    return api.get("/v1/health").json()["workers"] == 2
                except httpx.HTTPError:
                    return False

            wait_until(two_workers, 180, "the api and two workers", procs[-1])
            ref_id = api.post("/v1/datasets", files=[("files", (n, b)) for n, b in ref.items()]).json()["id"]
            # the candidate is registered from the bucket (README: s3:// under SOUNDCHECK_ALLOWED_ROOTS)
            for name, data in cand.items():
                s3fs_client.pipe_file(f"{bucket}/datasets/cand/{name}", data)
            reg = api.post("/v1/datasets/register", json={"path": f"s3://{bucket}/datasets/cand"})
            assert reg.status_code == 201, reg.text
            cand_id = reg.json()["id"]
            assert (ref_id, cand_id) == single["ids"]  # same content, same ids
            body = {"reference": ref_id, "candidate": cand_id, **JOB}
            first = _wait_job(api, api.post("/v1/jobs", json=body).json()["id"])
            assert first["result"]["metrics"] == single["metrics"]
            redis = Redis.from_url(redis_server)
            doers = {redis.get(DONE_KEY.format(first["id"], ref_id, start)) for start in range(0, 16, 4)}
            assert None not in doers and len(doers) == 2  # both hosts embedded chunks of the reference

            b_cache = hosts["worker-b"] / "cache"
            b_bytes = sum((b_cache / p).stat().st_size for p in _files(b_cache) if p.parts[0] != ".incoming")
            assert b_bytes <= TINY_CACHE + max(len(b) for b in ref.values())  # the bound, plus the newest entry
            for host in ("worker-a", "worker-b"):  # every local copy gone: results come from the bucket
                shutil.rmtree(hosts[host] / "cache", ignore_errors=True)
            for key in redis.scan_iter("sc:stats:*"):
                redis.delete(key)
            again = _wait_job(api, api.post("/v1/jobs", json=body).json()["id"])
            assert again["result"]["metrics"] == single["metrics"]

        stored = {p.split(f"{bucket}/soundcheck/", 1)[1] for p in s3fs_client.find(f"{bucket}/soundcheck")}
        shas = {hashlib.sha256(b).hexdigest() for b in ref.values()}
        assert {k for k in stored if k.startswith("blobs/")} == {f"blobs/{s[:2]}/{s}" for s in shas}
        assert {f"datasets/{ref_id}.json", f"datasets/{cand_id}.json"} <= stored
        embedded = {k.rsplit("/", 1)[1][:-4] for k in stored if k.startswith("embeddings/")}
        assert embedded == shas | {hashlib.sha256(b).hexdigest() for b in cand.values()}
        for host, root in hosts.items():  # a data dir holds only its cache
            assert all(p.parts[0] == "cache" for p in _files(root)), (host, _files(root))
    finally:
        _stop(procs)
        for name in ("worker-a", "worker-b", "api"):
            log = tmp_path / f"{name}.log"
            if log.exists():
                print(name, log.read_text()[-2000:])
