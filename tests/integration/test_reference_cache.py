"""A repeat job against a cached reference does no reference work (real Redis, real worker): it decodes no
reference file (their blobs are deleted after the first job), recomputes none of KAD's bandwidth and reference
kernel sum, PRDC's radii, NDB's bins or the Gaussian statistics (every ``diagnostics.cache`` entry is a hit and
no reference stage ran), and its numbers equal a cold run's exactly, intervals included."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from redis import Redis

from soundcheck.client import Client
from soundcheck.datastore import BlobStore
from soundcheck.embeddings.base import sha256_file
from soundcheck.evaluation import evaluate_embeddings
from soundcheck.jobspec import MetricOptions
from soundcheck.serve import Service
from tests.integration.test_streaming import in_memory, write_set
from worker.reference_pack import MAGIC as PACK_MAGIC
from worker.reference_pack import unpack

METRICS = ["fad", "kad", "prdc", "ndb"]
TERMS = {"reference_stats", "reference_files", "ndb_bins", "kad_reference", "prdc_reference"}
# per-file PRDC/NDB (the worker keeps file means, KAD still needs every frame) and per-frame PRDC/NDB
OPTIONS = [
    {"bootstrap": 10, "seed": 4, "ndb": {"k": 3}, "prdc": {"k": 3}},
    {"bootstrap": 10, "seed": 5, "ndb": {"k": 4, "unit": "frame"}, "prdc": {"k": 4, "unit": "frame"}},
]


def _run(client: Client, ref: str, cand: str, options: dict) -> dict:
    view = client.evaluate(ref, cand, "mel", METRICS, options, poll_s=0.1, timeout_s=240)
    assert view.status == "finished", view.error
    return view.result


def _reference_stages(result: dict) -> list[str]:
    return [k for k in result["timing_s"]["stages"] if k.startswith(("embedding reference:", "reference side"))]


@pytest.mark.parametrize("options", OPTIONS, ids=["file-unit", "frame-unit"])
def test_repeat_job_does_no_reference_work_and_gives_the_same_numbers(service: Service, tmp_path: Path,
                                                                      options: dict) -> None:
    seed = 3000 + OPTIONS.index(options)
    ref_dir = write_set(tmp_path / "ref", seed, n=12)
    cand_dir = write_set(tmp_path / "cand", seed + 50, n=8)
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        first = _run(client, ref, cand, options)
        assert first["diagnostics"]["cache"] == dict.fromkeys(TERMS, "miss")
        assert "reference side: kad_reference" in first["timing_s"]["stages"]
        # the reference's stored files are gone: any decode of one would fail the job ("... is missing")
        blobs = BlobStore(service.settings.blob_dir)
        for path in sorted(ref_dir.glob("*.wav")):
            blobs.path(sha256_file(path)).unlink()
        again = _run(client, ref, cand, options)
    assert again["diagnostics"]["cache"] == dict.fromkeys(TERMS, "hit")
    # no reference file decoded, embedded or even read from the cache of embeddings, no reference quantity
    # computed: the reference came back as one packed value, in the form its metrics read
    assert _reference_stages(again) == [], again["timing_s"]["stages"]
    for name in METRICS:
        assert "error" not in again["metrics"][name], again["metrics"][name]
    assert again["metrics"] == first["metrics"]
    assert again["metrics"]["kad"]["interval"] is not None and again["metrics"]["prdc"]["recall"]["interval"]
    # the cold run itself equals the in-memory computation that caches nothing
    cold = evaluate_embeddings(METRICS, in_memory(ref_dir), in_memory(cand_dir), MetricOptions(**options),
                               kad_max_frames=service.settings.kad_max_frames)
    for name in METRICS:
        assert first["metrics"][name] == cold["metrics"][name], name


def test_changed_option_misses_only_the_term_it_changes(service: Service, tmp_path: Path) -> None:
    ref_dir = write_set(tmp_path / "ref", 3100, n=12)
    cand_dir = write_set(tmp_path / "cand", 3150, n=8)
    options = {"bootstrap": 0, "ndb": {"k": 3}, "prdc": {"k": 3}}
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        _run(client, ref, cand, options)
        bandwidth = _run(client, ref, cand, {**options, "kad": {"bandwidth": 2.5}})
        radii = _run(client, ref, cand, {**options, "kad": {"bandwidth": 2.5}, "prdc": {"k": 2}})
    assert bandwidth["diagnostics"]["cache"] == {"reference_stats": "hit", "reference_files": "hit", "ndb_bins": "hit",
                                                 "kad_reference": "miss", "prdc_reference": "hit"}
    assert bandwidth["metrics"]["kad"]["bandwidth"] == 2.5
    assert radii["diagnostics"]["cache"] == {"reference_stats": "hit", "reference_files": "hit", "ndb_bins": "hit",
                                             "kad_reference": "hit", "prdc_reference": "miss"}
    assert radii["metrics"]["prdc"]["k"] == 2


def test_reference_terms_are_cached_without_frames(service: Service, tmp_path: Path) -> None:
    """The terms hold no frames or samples (they are checked against a fingerprint of the reference's rows when
    loaded); the rows are in one place, the reference pack. All are entries under the stats cache's byte bound."""
    ref_dir = write_set(tmp_path / "ref", 3200, n=12)
    cand_dir = write_set(tmp_path / "cand", 3250, n=8)
    redis = Redis.from_url(service.settings.redis_url)
    before = set(redis.keys("sc:stats:*"))
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        _run(client, ref, cand, {"bootstrap": 0, "ndb": {"k": 3}, "prdc": {"k": 3}})
    added = set(redis.keys("sc:stats:*")) - before
    redis_values = [redis.get(k) for k in added]
    redis.close()
    assert len(added) == 5  # statistics, reference pack, bins, KAD reference, PRDC radii
    packs = [unpack(v)[0] for v in redis_values if v.startswith(PACK_MAGIC)]
    assert len(packs) == 1 and len(packs[0]) == 12  # the pack: the reference's 12 files, their frames in one array
    arrays = []
    for value in redis_values:
        if value.startswith(PACK_MAGIC):
            continue
        with np.load(io.BytesIO(value), allow_pickle=False) as z:
            arrays.append(set(z.files))
    assert not any({"frames", "samples", "rows"} & names for names in arrays), arrays
    assert sum("within_sum" in names for names in arrays) == 1 and sum("radii_3" in names for names in arrays) == 1


def test_without_its_pack_the_reference_is_read_from_the_embedding_cache(service: Service, tmp_path: Path) -> None:
    """A reference with no pack (evicted, or over 1/16 of the stats cache's bound) is read file by file from the
    cache of embeddings: still no blob read, no term recomputed, the same numbers."""
    ref_dir = write_set(tmp_path / "ref", 3300, n=12)
    cand_dir = write_set(tmp_path / "cand", 3350, n=8)
    options = {"bootstrap": 5, "ndb": {"k": 3}, "prdc": {"k": 3}}
    redis = Redis.from_url(service.settings.redis_url)
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        first = _run(client, ref, cand, options)
        for key in redis.keys("sc:stats:*"):  # drop the pack only
            value = redis.get(key)
            if value is not None and value.startswith(PACK_MAGIC):
                redis.delete(key)
        blobs = BlobStore(service.settings.blob_dir)
        for path in sorted(ref_dir.glob("*.wav")):
            blobs.path(sha256_file(path)).unlink()
        again = _run(client, ref, cand, options)
    redis.close()
    assert again["diagnostics"]["cache"]["reference_files"] == "miss"
    assert {k: v for k, v in again["diagnostics"]["cache"].items() if k != "reference_files"} == \
        dict.fromkeys(TERMS - {"reference_files"}, "hit")
    assert "embedding reference: decode" not in again["timing_s"]["stages"]
    assert again["metrics"] == first["metrics"]


def test_two_workers_compute_the_reference_side_once(redis_server: str, tmp_path: Path) -> None:
    """Two jobs against one cold reference at once, on two workers: one computes every reference quantity under
    the reference's lock, the other waits and reads them all; both give the same numbers."""
    import signal
    import subprocess
    import sys
    import time

    from fastapi.testclient import TestClient

    from app.main import create_app
    from soundcheck.serve import spawn, wait_until
    from tests.conftest import make_settings

    settings = make_settings(redis_server, tmp_path)
    env = dict(Service(settings).env(), SOUNDCHECK_PRELOAD="mel", SOUNDCHECK_TORCH_THREADS="1")
    workers = [spawn([sys.executable, "-m", "worker"], env, tmp_path / f"w{i}.log") for i in range(2)]
    ref_dir = write_set(tmp_path / "allowed" / "ref", 3400, n=30)
    cand_dir = write_set(tmp_path / "allowed" / "cand", 3450, n=8)
    options = {"bootstrap": 5, "ndb": {"k": 3}, "prdc": {"k": 3}}
    try:
        with TestClient(create_app(settings)) as api:
            wait_until(lambda: api.get("/v1/health").json()["workers"] == 2, 120, "workers", workers[0])
            ids = []
            for folder in (ref_dir, cand_dir):
                files = [("files", (p.name, p.read_bytes())) for p in sorted(folder.glob("*.wav"))]
                ids.append(api.post("/v1/datasets", files=files).json()["id"])
            jobs = [api.post("/v1/jobs", json={"reference": ids[0], "candidate": ids[1], "embedding": "mel",
                                               "metrics": METRICS, "options": options}).json()["id"]
                    for _ in range(2)]
            deadline = time.monotonic() + 180
            views = []
            for job in jobs:
                while (view := api.get(f"/v1/jobs/{job}").json())["status"] not in ("finished", "failed"):
                    assert time.monotonic() < deadline, view
                    time.sleep(0.2)
                views.append(view)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert all(v["status"] == "finished" for v in views), [v["error"] for v in views]
    caches = [v["result"]["diagnostics"]["cache"] for v in views]
    if len({v.get("worker") for v in views} - {None}) < 2:
        pytest.skip("one worker took both jobs in turn (the other was not idle yet)")
    for term in TERMS:  # each quantity computed by exactly one of the two jobs
        assert sorted(c[term] for c in caches) == ["hit", "miss"], caches
    assert views[0]["result"]["metrics"] == views[1]["result"]["metrics"]
