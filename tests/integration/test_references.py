"""Imported references (issue 10.5) through the real service (uvicorn, Redis, worker): statistics written with
numpy in fadtk's layout are imported with declared provenance and used as a FAD reference, and FAD equals an
independent numpy/scipy Fréchet distance between the candidate's statistics and the imported mean and
covariance; soundcheck's own cached statistics export in the same layout and equal what the cache holds."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.linalg
from redis import Redis

from soundcheck.client import Client, SoundcheckError
from soundcheck.metrics.frechet import GaussianStats
from soundcheck.serve import Service
from tests.integration.test_streaming import in_memory, write_set


def _frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm (as fadtk / pytorch-fid compute it): independent of ours."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _fadtk_npz(path: Path, mu: np.ndarray, cov: np.ndarray) -> Path:
    np.savez(path, mu=mu, cov=cov)  # what fadtk writes for a reference's statistics
    return path


def test_fad_against_imported_fadtk_statistics(service: Service, tmp_path: Path) -> None:
    ref_frames = np.concatenate([f.frames for f in in_memory(write_set(tmp_path / "ref", 5100, n=12))])
    ref_frames = ref_frames.astype(np.float64)
    mu, cov = ref_frames.mean(axis=0), np.cov(ref_frames, rowvar=False)
    npz = _fadtk_npz(tmp_path / "fma_like.npz", mu, cov)
    cand_dir = write_set(tmp_path / "cand", 5150, n=8)
    with Client(service.url) as client:
        view = client.import_reference(npz, "mel", source="numpy, fadtk layout", declared_by="test", n_frames=len(
            ref_frames), model="mel-v1")
        assert view.kind == "imported" and not view.verified and view.layout == "fadtk" and view.dim == 128
        assert view.declared.embedding == "mel" and view.declared.source == "numpy, fadtk layout"
        assert view.supports == ["fad", "fad_inf", "fad_per_file"]
        assert any(r.id == view.id for r in client.references())
        cand = client.upload(cand_dir).id
        job = client.evaluate({"imported": view.id}, cand, "mel", ["fad", "fad_per_file", "fad_inf"],
                              {"bootstrap": 5, "fad_inf": {"sizes": [6, 12, 18]}}, poll_s=0.1, timeout_s=240)
        assert job.status == "finished", job.error
        # the same numbers exported as imported (both layouts)
        for layout, (mu_key, cov_key) in {"fadtk": ("mu", "cov"), "stable-audio-metrics": ("mu_ref", "sigma_ref")
                                           }.items():
            with np.load(io.BytesIO(client.export_reference(view.id, layout=layout))) as z:
                assert np.array_equal(z[mu_key], mu) and np.array_equal(z[cov_key], cov)
    result = job.result
    cand_frames = np.concatenate([f.frames for f in in_memory(cand_dir)]).astype(np.float64)
    expected = _frechet(mu, cov, cand_frames.mean(axis=0), np.cov(cand_frames, rowvar=False))
    fad = result["metrics"]["fad"]
    assert "error" not in fad and fad["value"] == pytest.approx(expected, rel=1e-6)
    assert fad["interval"] is not None and fad["frames_reference"] == len(ref_frames)
    assert "error" not in result["metrics"]["fad_per_file"] and "error" not in result["metrics"]["fad_inf"]
    assert result["reference"]["imported"] == view.id and result["reference"]["verified"] is False
    assert result["reference"]["declared"]["declared_by"] == "test"
    assert any("declared by the importer, not verified" in w for w in result["warnings"])


def test_imported_reference_refuses_other_metrics_and_dimensions(service: Service, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 64))
    npz = _fadtk_npz(tmp_path / "d64.npz", x.mean(axis=0), np.cov(x, rowvar=False))
    with Client(service.url) as client:
        view = client.import_reference(npz, "vggish-like")
        cand = client.upload(write_set(tmp_path / "cand", 5200, n=4)).id
        with pytest.raises(SoundcheckError) as wrong_dim:
            client.submit({"imported": view.id}, cand, "mel", ["fad"])
        assert wrong_dim.value.status == 422 and "dimension 64" in str(wrong_dim.value)
        with pytest.raises(ValueError, match="supports fad, fad_inf, fad_per_file, not kad"):
            client.submit({"imported": view.id}, cand, "mel", ["fad", "kad"])  # the client's own check
        answer = httpx.post(f"{service.url}/v1/jobs", json={"reference": {"imported": view.id}, "candidate": cand,
                                                              "embedding": "mel", "metrics": ["fad", "kad"]})
        assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
        assert "supports fad, fad_inf, fad_per_file, not kad" in answer.json()["detail"]
        with pytest.raises(SoundcheckError) as unknown:
            client.submit({"imported": "0" * 64}, cand, "mel", ["fad"])
        assert unknown.value.status == 404


def test_cached_statistics_export_as_fadtk_npz(service: Service, tmp_path: Path) -> None:
    ref_dir, cand_dir = write_set(tmp_path / "ref", 5300, n=10), write_set(tmp_path / "cand", 5350, n=5)
    redis = Redis.from_url(service.settings.redis_url)
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir).id, client.upload(cand_dir).id
        job = client.evaluate(ref, cand, "mel", ["fad"], {"bootstrap": 0}, poll_s=0.1, timeout_s=240)
        assert job.status == "finished", job.error
        computed = [r for r in client.references() if r.kind == "computed" and r.dataset == ref]
        assert len(computed) == 1 and computed[0].verified and computed[0].embedding == "mel"
        data = client.export_reference(computed[0].id)
    stats = GaussianStats.from_bytes(redis.get(f"sc:stats:{computed[0].id}"))
    redis.close()
    with np.load(io.BytesIO(data)) as z:
        assert set(z.files) == {"mu", "cov"}
        assert np.array_equal(z["mu"], stats.mean) and np.array_equal(z["cov"], stats.cov)  # the cache, exactly
        frames = np.concatenate([f.frames for f in in_memory(ref_dir)]).astype(np.float64)
        np.testing.assert_allclose(z["mu"], frames.mean(axis=0), rtol=1e-12, atol=1e-12)  # and what they are
        np.testing.assert_allclose(z["cov"], np.cov(frames, rowvar=False), rtol=1e-9, atol=1e-12)


def test_cli_imports_lists_and_exports(service: Service, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from soundcheck.cli import main

    rng = np.random.default_rng(11)
    x = rng.standard_normal((200, 16))
    npz = tmp_path / "sam.npz"
    np.savez(npz, mu_ref=x.mean(axis=0), sigma_ref=np.cov(x, rowvar=False))  # stable-audio-metrics' layout
    assert main(["--url", service.url, "references", "import", str(npz), "--embedding", "openl3", "--sample-rate",
                 "48000", "--source", "stable-audio-metrics load/openl3_fd"]) == 0
    ref_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["--url", service.url, "references", "list"]) == 0
    assert ref_id in capsys.readouterr().out
    out = tmp_path / "back.npz"
    assert main(["--url", service.url, "references", "export", ref_id, "--out", str(out)]) == 0
    with np.load(out) as z:
        assert np.array_equal(z["mu"], x.mean(axis=0)) and np.array_equal(z["cov"], np.cov(x, rowvar=False))
