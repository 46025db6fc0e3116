"""Operator TorchScript classifiers: discovery, loading, the input convention, errors a person can act on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soundcheck.embeddings.classifier import list_classifiers, load_classifier
from soundcheck.embeddings.registry import ModelUnavailable

from .conftest import noise, tone


class LoudnessClassifier(torch.nn.Module):
    """[b, samples] → logits [b, 2] for ("quiet", "loud"), decided by the RMS level."""

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        rms = waves.pow(2).mean(dim=1).sqrt()
        return torch.stack([0.1 - rms, rms - 0.1], dim=1) * 50.0


def install(model_dir: Path, name: str, module: torch.nn.Module, labels: dict) -> None:
    folder = model_dir / "classifiers"
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module), str(folder / f"{name}.pt"))
    (folder / f"{name}.labels.json").write_text(json.dumps(labels))


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    install(tmp_path, "loudness", LoudnessClassifier(), {"sample_rate": 16000, "labels": ["quiet", "loud"]})
    return tmp_path


def test_lists_only_complete_classifiers(model_dir: Path) -> None:
    (model_dir / "classifiers" / "orphan.pt").write_bytes(b"")
    assert list_classifiers(model_dir) == ["loudness"]
    assert list_classifiers(model_dir / "nowhere") == []


def test_predicts_labels_for_files_of_different_lengths(model_dir: Path) -> None:
    clf = load_classifier(model_dir, "loudness")
    assert clf.sample_rate == 16000 and clf.labels == ["quiet", "loud"]
    waves = [tone(440.0, 1.0, amp=0.5), noise(0.7, amp=0.01), tone(220.0, 1.0, amp=0.01), noise(2.0, amp=0.4)]
    assert clf.predict(waves, batch_size=2) == ["loud", "quiet", "quiet", "loud"]
    probs = clf.probabilities(waves)
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_batch_size_does_not_change_logits(model_dir: Path) -> None:
    clf = load_classifier(model_dir, "loudness")
    waves = [noise(1.0, amp=0.05 * (i + 1), seed=i) for i in range(9)]
    np.testing.assert_allclose(clf.logits(waves, batch_size=1), clf.logits(waves, batch_size=64), atol=1e-6)


def test_provenance_has_the_file_checksums(model_dir: Path) -> None:
    prov = load_classifier(model_dir, "loudness").provenance()
    assert prov["classifier"] == "loudness" and prov["n_labels"] == 2
    assert [f["name"] for f in prov["files"]] == ["loudness.pt", "loudness.labels.json"]
    assert all(len(f["sha256"]) == 64 for f in prov["files"])


def test_missing_classifier_says_what_is_missing(model_dir: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"genre\.pt.*classifiers present: loudness"):
        load_classifier(model_dir, "genre")


@pytest.mark.parametrize("name", ["../loudness", "a/b", ".hidden", ""])
def test_names_cannot_be_paths(model_dir: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid classifier name"):
        load_classifier(model_dir, name)


@pytest.mark.parametrize(
    ("labels", "message"),
    [({"labels": ["a", "b"]}, "sample_rate"), ({"sample_rate": 16000, "labels": []}, "labels"),
     ({"sample_rate": 16000, "labels": ["a", "a"]}, "duplicates"), (["a"], "expected an object")],
)
def test_bad_labels_file_is_explained(tmp_path: Path, labels: object, message: str) -> None:
    install(tmp_path, "bad", LoudnessClassifier(), {"sample_rate": 1, "labels": ["x"]})
    (tmp_path / "classifiers" / "bad.labels.json").write_text(json.dumps(labels))
    with pytest.raises(ValueError, match=message):
        load_classifier(tmp_path, "bad")


def test_output_width_must_match_the_labels(tmp_path: Path) -> None:
    install(tmp_path, "three", LoudnessClassifier(), {"sample_rate": 16000, "labels": ["a", "b", "c"]})
    with pytest.raises(ValueError, match=r"expected \(1, 3\)"):
        load_classifier(tmp_path, "three").predict([tone(440.0, 0.5)])
