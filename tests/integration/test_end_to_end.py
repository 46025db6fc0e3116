"""Upload two sets, POST a job, a real worker computes it, poll the result — over real HTTP (uvicorn)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.linalg

from soundcheck import audio
from soundcheck.client import Client
from soundcheck.embeddings import load
from soundcheck.serve import Service


def textbook_fad(ref: np.ndarray, cand: np.ndarray) -> float:
    """Kilgour et al. 2019 with scipy's general sqrtm: the independent reference for FAD."""
    mu1, mu2 = ref.mean(axis=0), cand.mean(axis=0)
    s1, s2 = np.cov(ref, rowvar=False), np.cov(cand, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def embed_directory(directory: Path) -> np.ndarray:
    model = load("mel", Path("/nonexistent"))
    frames = []
    for path in sorted(directory.rglob("*.wav")):
        wave = audio.load_mono(path, model.spec.sample_rate)
        frames.append(model.embed([wave])[0].frames)
    return np.concatenate(frames).astype(np.float64)


def test_fad_job_matches_textbook_formula(service: Service, example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as client:
        ref = client.upload(ref_dir)
        cand = client.upload(cand_dir)
        assert ref.n_files == cand.n_files == 12
        assert ref.labels == ["chords", "noise", "tones"]
        job = client.submit(ref.id, cand.id, "mel", ["fad"], {"bootstrap": 20})
        assert job.status == "queued"
        seen_stages = set()
        done = client.wait(job.id, poll_s=0.1, timeout_s=180, on_progress=lambda v: seen_stages.add(v.progress.stage))
    assert done.status == "finished", done.error
    fad = done.result["metrics"]["fad"]
    expected = textbook_fad(embed_directory(ref_dir), embed_directory(cand_dir))
    assert fad["value"] == pytest.approx(expected, rel=1e-6)
    assert done.progress.done == done.progress.total == 24
    prov = done.result["provenance"]
    assert prov["embedding"]["model"] == "mel"
    assert prov["embedding"]["resampler"].startswith("soxr-")
    assert "numpy" in prov["packages"]


def test_post_job_answers_202_with_location(service: Service, example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir), client.upload(cand_dir)
    response = httpx.post(f"{service.url}/v1/jobs", json={"reference": ref.id, "candidate": cand.id,
                                                         "embedding": "mel", "metrics": ["fad"]})
    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    polled = httpx.get(f"{service.url}{response.headers['location']}")
    assert polled.status_code == 200
    assert polled.json()["status"] in {"queued", "running", "finished"}


def test_same_files_uploaded_twice_are_the_same_dataset(service: Service, example_sets: tuple[Path, Path]) -> None:
    with Client(service.url) as client:
        first = client.upload(example_sets[0])
        second = client.upload(example_sets[0])
    assert first.id == second.id


def test_health_reports_worker_and_models(service: Service) -> None:
    body = httpx.get(f"{service.url}/v1/health").json()
    assert body["redis"] is True
    assert body["workers"] == 1
    assert "mel" in body["models_loaded"]


def test_unknown_job_is_problem_404(service: Service) -> None:
    response = httpx.get(f"{service.url}/v1/jobs/doesnotexist")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "doesnotexist" in response.json()["detail"]
