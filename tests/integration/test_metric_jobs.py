"""Every family of metrics through the real service: embedding metrics with intervals, caches keyed by
content, YAMNet class probabilities for IS/KL, signal metrics on paired files, an operator classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soundcheck.client import Client
from soundcheck.serve import Service


@pytest.fixture(scope="module")
def ids(service: Service, example_sets: tuple[Path, Path]) -> tuple[str, str]:
    with Client(service.url) as client:
        return client.upload(example_sets[0]).id, client.upload(example_sets[1]).id


def _run(service: Service, ref: str, cand: str, **kwargs) -> dict:
    with Client(service.url) as client:
        view = client.evaluate(ref, cand, poll_s=0.1, timeout_s=240, **kwargs)
    assert view.status == "finished", view.error
    json.dumps(view.result, allow_nan=False)
    return view.result


def test_embedding_metrics_have_intervals_diagnostics_and_cached_references(service: Service, ids) -> None:
    ref, cand = ids
    options = {"bootstrap": 20, "ndb": {"k": 5}, "seed": 3}
    first = _run(service, ref, cand, metrics=["fad", "kad", "ndb", "prdc", "accuracy"], options=options)
    metrics = first["metrics"]
    for name in ("fad", "kad", "accuracy"):
        interval = metrics[name]["interval"]
        assert interval["low"] <= interval["high"] and interval["resamples"] == 20, name
    for part in ("precision", "recall", "coverage"):
        assert 0.0 <= metrics["prdc"][part]["value"] <= 1.0
    assert metrics["prdc"]["unit"] == "file" and metrics["prdc"]["density"]["value"] >= 0.0
    assert metrics["ndb"]["k"] == 5 and len(metrics["ndb"]["bins"]["reference_proportions"]) == 5
    # the example classes (tones, chords, noise) separate in mel space: a linear probe finds them
    assert metrics["accuracy"]["value"] > 0.6
    diag = first["diagnostics"]
    assert diag["candidate"]["dim"] == 128 and diag["covariance"]["reference"]["rank"] <= 128
    assert first["provenance"]["metric_versions"]["fad"]
    again = _run(service, ref, cand, metrics=["fad", "ndb"], options=options)
    # the first job kept every reference frame (kad), this one keeps file means: that form is packed by whichever
    # job of this session's service kept it first (other modules use these sets too), so only its presence is fixed
    cache = again["diagnostics"]["cache"]
    assert cache["reference_stats"] == "hit" and cache["ndb_bins"] == "hit" and cache["reference_files"] in {
        "hit", "miss"}
    assert again["metrics"]["fad"]["value"] == metrics["fad"]["value"]
    assert again["metrics"]["ndb"]["ndb"] == metrics["ndb"]["ndb"]


def test_yamnet_job_gives_inception_score_and_paired_kl(service: Service, ids) -> None:
    ref, cand = ids
    result = _run(service, ref, cand, embedding="yamnet", metrics=["fad", "is", "kl"], options={"bootstrap": 0})
    assert result["provenance"]["embedding"]["model"] == "yamnet"
    assert result["diagnostics"]["candidate"]["dim"] == 1024
    assert result["metrics"]["is"]["value"] >= 1.0
    assert result["metrics"]["kl"]["n_pairs"] == 12 and result["metrics"]["kl"]["value"] > 0.0
    same = _run(service, ref, ref, embedding="yamnet", metrics=["kl"], options={"bootstrap": 0})
    # KL(p || p + eps): only AudioLDM's eps term remains, sum_i p_i ln(p_i / (p_i + 1e-6)) ~ -1e-6 * classes
    assert same["metrics"]["kl"]["value"] == pytest.approx(0.0, abs=1e-3)


def test_signal_metrics_pair_files_by_name(service: Service, ids, example_sets: tuple[Path, Path]) -> None:
    ref, cand = ids
    result = _run(service, ref, cand, metrics=["snr", "si_sdr", "lsd", "mcd", "mrstft"], options={"bootstrap": 0})
    snr = result["metrics"]["snr"]
    assert snr["n_pairs"] == 12
    # the example candidate tones are the reference plus white noise at 20 dB SNR (16-bit files)
    tones = [p["value"] for p in snr["per_file"] if p["name"].startswith("tones/")]
    assert tones and np.allclose(tones, 20.0, atol=0.5)


def test_operator_torchscript_classifier_predicts_candidate_labels(service: Service, ids) -> None:
    torch = pytest.importorskip("torch")

    class Loudness(torch.nn.Module):
        """Classifies by RMS: a tiny stand-in with the documented input/output convention."""

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            rms = wave.pow(2).mean(dim=1, keepdim=True).sqrt()
            return torch.cat([rms, 1 - rms, torch.zeros_like(rms)], dim=1)

    folder = service.settings.models_dir / "classifiers"
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Loudness()).save(str(folder / "loudness.pt"))
    (folder / "loudness.labels.json").write_text(json.dumps({"sample_rate": 16000,
                                                             "labels": ["chords", "noise", "tones"]}))
    ref, cand = ids
    result = _run(service, ref, cand, metrics=["accuracy"],
                  options={"bootstrap": 0, "accuracy": {"classifier": "loudness"}})
    acc = result["metrics"]["accuracy"]
    # RMS < 0.5 for every example file → always "noise": exactly the noise files are right
    assert acc["value"] == pytest.approx(1 / 3)
    assert result["provenance"]["embedding"]["classifier"]["classifier"] == "loudness"
