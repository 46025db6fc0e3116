"""On a real deployment (Redis, worker, uvicorn). Long multichannel audio: accepted within the limits and
decoded by a real worker in bounded memory; beyond the decoded-samples limit refused at upload by its header,
leaving no blob. gc while a job runs removes nothing the job needs.

The files are generated here as FLAC of a low-amplitude square wave (FLAC compresses it to a few MB at most), the
shape of the ones that broke main: 600 s x 8 ch x 48 kHz (230 M samples, 0.9 GB as float32, 2.8 GB with the
float64 downmix copy) took a worker from 0.8 to 3.7 GB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from redis import Redis

from soundcheck.gc import EMBEDDING_KEYS, run_gc
from soundcheck.serve import Service
from tests.conftest import free_port, make_settings

pytestmark = pytest.mark.slow
MB = 1 << 20


def write_long_flac(path: Path, seconds: int, rate: int, channels: int, amplitude: float = 0.01) -> Path:
    """A 1 Hz square wave (constant runs: FLAC stores them in a few bytes per block; not silent), written 10 s
    at a time (never the whole signal in memory)."""
    t = np.arange(10 * rate) / rate
    square = np.where((t % 1.0) < 0.5, amplitude, -amplitude)
    block = np.round(square * 32767).astype(np.int16)[:, None].repeat(channels, axis=1)  # int16: 5x faster to write
    with sf.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as fh:
        for _ in range(seconds // 10):
            fh.write(block)
    return path


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def fresh_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Our own deployment (Redis, one real worker, uvicorn), so the worker's peak memory is this module's."""
    root = tmp_path_factory.mktemp("limits")
    svc = Service(make_settings(f"redis://127.0.0.1:{free_port()}/0", root))
    try:
        svc.start(n_workers=1, quiet=True)
        yield svc
    finally:
        svc.stop()
        for log in (root / "data" / "logs").glob("*.log"):
            print(log.name, log.read_text()[-3000:])


def _blobs(svc: Service) -> set[str]:
    root = svc.settings.blob_dir
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_600s_8ch_48k_flac_is_accepted_and_embedded_in_bounded_worker_memory(fresh_service: Service,
                                                                              tmp_path: Path) -> None:
    path = write_long_flac(tmp_path / "long.flac", 600, 48000, 8)
    assert path.stat().st_size < 8 * MB
    pid = fresh_service.workers[0].pid
    idle_kb = status_kb(pid, "VmRSS")
    with httpx.Client(base_url=fresh_service.url, timeout=120) as client:
        with path.open("rb") as fh:
            response = client.post("/v1/datasets", files=[("files", ("long.flac", fh, "audio/flac"))])
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert dataset["channels"] == [8] and dataset["sample_rates"] == [48000]
        assert abs(dataset["total_duration_s"] - 600.0) < 1e-6
        job = client.post("/v1/jobs", json={"reference": dataset["id"], "candidate": dataset["id"],
                                            "embedding": "mel", "metrics": ["fad"]}).json()
        deadline = time.monotonic() + 300
        while (view := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("finished", "failed"):
            assert time.monotonic() < deadline, view
            time.sleep(0.5)
    assert view["status"] == "finished", view.get("error")
    # the whole file reached the model: 600 s at 16 kHz in 25 ms / 10 ms STFT frames, 96-frame patches, hop 48
    stft_frames = 1 + (600 * 16000 - 400) // 160
    assert view["result"]["diagnostics"]["reference"]["frames"] == 1 + (stft_frames - 96) // 48
    peak_kb = status_kb(pid, "VmHWM")
    grew_mb = (peak_kb - idle_kb) / 1024
    print(f"worker memory: idle {idle_kb / 1024:.0f} MB, peak {peak_kb / 1024:.0f} MB, grew {grew_mb:.0f} MB")
    assert grew_mb < 300, f"worker peak grew {grew_mb:.0f} MB over its idle {idle_kb / 1024:.0f} MB"


def test_3600s_8ch_192k_flac_is_refused_at_upload_by_the_decoded_samples_limit(fresh_service: Service,
                                                                              tmp_path: Path) -> None:
    path = write_long_flac(tmp_path / "huge.flac", 3600, 192000, 8, amplitude=0.0)  # silence: ~6 MB
    assert path.stat().st_size < 16 * MB  # small on disk, 5.5e9 samples (22 GB as float32) decoded
    before = _blobs(fresh_service)
    with httpx.Client(base_url=fresh_service.url, timeout=120) as client, path.open("rb") as fh:
        response = client.post("/v1/datasets", files=[("files", ("huge.flac", fh, "audio/flac"))])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert "huge.flac" in detail and "SOUNDCHECK_MAX_DECODED_SAMPLES" in detail
    assert f"{3600 * 192000 * 8:,} samples" in detail
    assert _blobs(fresh_service) == before


def test_gc_while_a_job_runs_removes_nothing_it_needs(fresh_service: Service, tmp_path: Path) -> None:
    settings = fresh_service.settings.model_copy(update={"gc_min_age_s": 0.0})  # everything is old enough
    redis = Redis.from_url(settings.redis_url)
    announced = {k.decode() for k in redis.zrange(EMBEDDING_KEYS, 0, -1)}
    assert announced, "the worker announces its embedding keys at start"
    t = np.arange(30 * 48000) / 48000
    files = []
    for i in range(12):
        buf = tmp_path / f"{i}.flac"
        sf.write(buf, np.stack([0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)] * 2, axis=1), 48000)
        files.append(("files", (f"set/{i}.flac", buf.read_bytes(), "audio/flac")))
    orphan = settings.blob_dir / "00" / ("00" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crashed api")
    with httpx.Client(base_url=fresh_service.url, timeout=120) as client:
        dataset = client.post("/v1/datasets", files=files).json()
        job = client.post("/v1/jobs", json={"reference": dataset["id"], "candidate": dataset["id"],
                                            "metrics": ["fad", "kad"]}).json()
        during_run, freed_blobs = 0, 0
        deadline = time.monotonic() + 300
        while (status := client.get(f"/v1/jobs/{job['id']}").json()["status"]) not in ("finished", "failed"):
            assert time.monotonic() < deadline
            report = run_gc(settings, redis)
            during_run += status == "running"
            freed_blobs += report.blobs.count
            assert report.embeddings_stale_key.count == 0 and report.embeddings_unreferenced.count == 0
        view = client.get(f"/v1/jobs/{job['id']}").json()
    assert view["status"] == "finished", view.get("error")
    assert during_run >= 1
    assert freed_blobs == 1 and not orphan.exists()  # only the orphan
    manifest = httpx.get(f"{fresh_service.url}/v1/datasets/{dataset['id']}").json()
    for entry in manifest["files"]:
        assert (settings.blob_dir / entry["sha256"][:2] / entry["sha256"]).is_file()
    key = view["result"]["provenance"]["embedding_key"]
    assert key in announced
    cached = {p.stem for p in (settings.embedding_cache_dir / key).rglob("*.npz")}
    assert {entry["sha256"] for entry in manifest["files"]} <= cached


def test_concurrent_uploads_failures_and_deletes_never_lose_a_referenced_blob(fresh_service: Service) -> None:
    """Threads on real uvicorn: uploads that share a blob, rejected uploads holding the same blob, and deletes
    of other datasets holding it, interleaved. Afterwards every surviving dataset has all its blobs, and the
    blob folder holds nothing else."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.api.conftest import tone, wav_bytes

    shared = wav_bytes(tone(0.5, freq=1000))
    before = _blobs(fresh_service)

    def good(i: int) -> str:
        files = [("files", ("shared.wav", shared)), ("files", (f"own{i}.wav", wav_bytes(tone(0.5, freq=300 + i))))]
        response = httpx.post(f"{fresh_service.url}/v1/datasets", files=files, timeout=60)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def bad(i: int) -> None:
        files = [("files", ("shared.wav", shared)), ("files", (f"junk{i}.wav", b"junk" * 100))]
        assert httpx.post(f"{fresh_service.url}/v1/datasets", files=files, timeout=60).status_code == 422

    def delete(dataset: str) -> None:
        assert httpx.delete(f"{fresh_service.url}/v1/datasets/{dataset}", timeout=60).status_code == 204

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(good, range(8)))
        jobs = [pool.submit(bad, i) for i in range(8)] + [pool.submit(good, 100 + i) for i in range(8)]
        jobs += [pool.submit(delete, d) for d in first]
        for job in jobs:
            job.result()
    survivors = [d["id"] for d in httpx.get(f"{fresh_service.url}/v1/datasets", params={"limit": 500}).json()]
    needed = set()
    for dataset in survivors:
        view = httpx.get(f"{fresh_service.url}/v1/datasets/{dataset}").json()
        needed |= {f["sha256"] for f in view["files"] if not f.get("path")}
    assert len(needed) >= 9  # the shared blob and 8 own ones
    on_disk = _blobs(fresh_service)
    assert needed <= on_disk
    assert len(on_disk - before) == 9
    assert on_disk - before <= needed  # nothing new that no dataset needs (the deleted ones' own blobs went)
