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

METRICS = ["fad", "kad", "prdc", "ndb"]
TERMS = {"reference_stats", "ndb_bins", "kad_reference", "prdc_reference"}
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
    # no reference file decoded or embedded, no reference quantity computed: the reference was only read from
    # the cache of embeddings (and folded into the file means or frames the metrics read)
    assert set(_reference_stages(again)) <= {"embedding reference: cache", "embedding reference: statistics"}, \
        again["timing_s"]["stages"]
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
    assert bandwidth["diagnostics"]["cache"] == {"reference_stats": "hit", "ndb_bins": "hit",
                                                 "kad_reference": "miss", "prdc_reference": "hit"}
    assert bandwidth["metrics"]["kad"]["bandwidth"] == 2.5
    assert radii["diagnostics"]["cache"] == {"reference_stats": "hit", "ndb_bins": "hit",
                                             "kad_reference": "hit", "prdc_reference": "miss"}
    assert radii["metrics"]["prdc"]["k"] == 2


def test_reference_terms_are_cached_without_frames(service: Service, tmp_path: Path) -> None:
    """The terms hold no frames or samples (the cache of embeddings has those; they are checked against a
    fingerprint when loaded), so they are small entries under the stats cache's LRU byte bound."""
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
    assert len(added) == 4  # statistics, bins, KAD reference, PRDC radii
    arrays = []
    for value in redis_values:
        with np.load(io.BytesIO(value), allow_pickle=False) as z:
            arrays.append(set(z.files))
    assert not any({"frames", "samples"} & names for names in arrays), arrays
    assert sum("within_sum" in names for names in arrays) == 1 and sum("radii_3" in names for names in arrays) == 1
