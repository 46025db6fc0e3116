"""Streamed reference statistics through the real service (real Redis, real worker): the numbers equal the
in-memory computation, and a FAD-only job against a cached reference never decodes a reference file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import soundfile as sf

from soundcheck import audio
from soundcheck.client import Client
from soundcheck.datastore import BlobStore
from soundcheck.embeddings import load
from soundcheck.embeddings.base import sha256_file
from soundcheck.evaluation import FileEmbedding, evaluate_embeddings
from soundcheck.jobspec import MetricOptions
from soundcheck.serve import Service


def write_set(folder: Path, seed: int, n: int = 10) -> Path:
    """``n`` short files of noise + a tone (different lengths), unique to ``seed`` (so every run starts cold)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        seconds = rng.uniform(1.0, 3.0)
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + rng.uniform(0.01, 0.2) * rng.standard_normal(
            len(t))
        sf.write(folder / f"f{i:02d}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    return folder


def in_memory(folder: Path) -> list[FileEmbedding]:
    """Every frame of every file, embedded one file at a time (no batching, no cache): the old path's input."""
    model = load("mel", Path("/nonexistent"))
    files = []
    for path in sorted(folder.rglob("*.wav")):
        wave = audio.load_mono(path, model.spec.sample_rate)
        files.append(FileEmbedding(name=path.name, frames=model.embed([wave])[0].frames, sample_rate=16000))
    return files


def textbook_fad(ref: np.ndarray, cand: np.ndarray) -> float:
    mu1, mu2 = ref.mean(axis=0), cand.mean(axis=0)
    s1, s2 = np.cov(ref, rowvar=False), np.cov(cand, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _run(client: Client, ref: str, cand: str, metrics: list[str], options: dict) -> dict:
    view = client.evaluate(ref, cand, "mel", metrics, options, poll_s=0.1, timeout_s=240)
    assert view.status == "finished", view.error
    return view.result


# (metrics, options, what the worker keeps of the reference)
JOBS = [
    (["fad", "fad_inf", "fad_per_file"], {"bootstrap": 10, "fad_inf": {"sizes": [6, 12, 18]}}, "stats"),
    (["fad", "ndb", "prdc"], {"bootstrap": 10, "ndb": {"k": 3}, "prdc": {"k": 2}}, "means"),
    (["kad", "prdc"], {"bootstrap": 10, "prdc": {"k": 3, "unit": "frame"}}, "frames"),
]


@pytest.mark.parametrize(("metrics", "options", "kept"), JOBS, ids=[k for *_, k in JOBS])
def test_streamed_job_equals_in_memory_computation(service: Service, tmp_path: Path, metrics: list[str],
                                                   options: dict, kept: str) -> None:
    seed = 1000 + JOBS.index((metrics, options, kept))
    ref_dir = write_set(tmp_path / "ref", seed)
    cand_dir = write_set(tmp_path / "cand", seed + 50, n=8)
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        result = _run(client, ref, cand, metrics, options)
    assert result["diagnostics"]["cache"]["reference_stats"] == "miss"  # cold: the reference was streamed
    assert result["diagnostics"]["reference_kept"] == kept
    expected = evaluate_embeddings(metrics, in_memory(ref_dir), in_memory(cand_dir), MetricOptions(**options))
    for name in metrics:
        ours, old = result["metrics"][name], expected["metrics"][name]
        assert "error" not in ours, ours
        # per-file folding in set order: the same float64 sums as the in-memory path, so equal, not just close
        assert ours == old, name
    if "fad" in metrics:
        ref_frames = np.concatenate([f.frames for f in in_memory(ref_dir)]).astype(np.float64)
        cand_frames = np.concatenate([f.frames for f in in_memory(cand_dir)]).astype(np.float64)
        assert result["metrics"]["fad"]["value"] == pytest.approx(textbook_fad(ref_frames, cand_frames), rel=1e-6)
    stages = result["timing_s"]["stages"]
    for part in ("decode", "frontend", "forward", "statistics"):
        assert stages[f"embedding reference: {part}"] >= 0.0
    assert stages["embedding candidate: forward"] >= 0.0


def test_fad_job_against_cached_reference_decodes_no_reference_file(service: Service, tmp_path: Path) -> None:
    ref_dir = write_set(tmp_path / "ref", 77)
    cand_dir = write_set(tmp_path / "cand", 78, n=6)
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        first = _run(client, ref, cand, ["fad"], {"bootstrap": 0})
        assert first["diagnostics"]["cache"]["reference_stats"] == "miss"
        # the reference's stored files are gone: any decode of them would fail the job ("... is missing")
        blobs = BlobStore(service.settings.blob_dir)
        for path in sorted(ref_dir.glob("*.wav")):
            blobs.path(sha256_file(path)).unlink()
        again = _run(client, ref, cand, ["fad", "fad_inf", "fad_per_file"],
                     {"bootstrap": 5, "fad_inf": {"sizes": [2, 4, 6]}})
    assert again["diagnostics"]["cache"]["reference_stats"] == "hit"
    assert again["metrics"]["fad"]["value"] == first["metrics"]["fad"]["value"]
    assert not any(key.startswith("embedding reference:") for key in again["timing_s"]["stages"])
    assert again["metrics"]["fad"]["n_reference"] == 10
