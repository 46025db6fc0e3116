"""VGGish: our network and loader against torchvggish 0.2 on the same random-weight checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvggish import torchvggish, vggish_input

from soundcheck.embeddings import registry
from soundcheck.embeddings.vggish import VGGishNetwork

from .conftest import SR16, noise, tone


def reference_embeddings(net: torch.nn.Module, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(vggish_input.waveform_to_examples(wave.astype(np.float64), SR16)).numpy()


def reference_postprocess(embeddings: np.ndarray, pca: dict) -> np.ndarray:
    """torchvggish's Postprocessor, fed the PCA parameters without its download."""
    post = torchvggish.Postprocessor.__new__(torchvggish.Postprocessor)
    post._pca_matrix = torch.as_tensor(pca["pca_eigen_vectors"]).float()
    post._pca_means = torch.as_tensor(pca["pca_means"].reshape(-1, 1)).float()
    with torch.no_grad():
        return post.postprocess(torch.as_tensor(embeddings)).reshape(len(embeddings), -1).numpy()


def test_state_dict_layout_equals_torchvggish() -> None:
    ours = VGGishNetwork().state_dict()
    ref = torchvggish._vgg(False).state_dict()
    assert len(ref) == 18
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


@pytest.mark.parametrize("seconds", [1.0, 4.5])
def test_embeddings_match_torchvggish(vggish_reference, vggish_loaded, seconds: float) -> None:
    net, _, _ = vggish_reference
    wave = noise(seconds, amp=0.3, seed=int(seconds * 10)) + tone(523.0, seconds, amp=0.2)
    ref = reference_embeddings(net, wave)
    ours = vggish_loaded["vggish"].embed([wave])[0].frames
    assert ours.shape == ref.shape == (int(seconds / 0.96), 128)
    assert np.abs(ref).max() > 0.1  # weights big enough for the comparison to mean something
    assert np.abs(ours - ref).max() <= 1e-4


def test_pca_quantised_embeddings_match_torchvggish_postprocessor(vggish_reference, vggish_loaded) -> None:
    net, _, pca = vggish_reference
    wave = noise(5.0, amp=0.25, seed=11) + tone(880.0, 5.0, amp=0.1)
    ref = reference_postprocess(reference_embeddings(net, wave), pca)
    ours = vggish_loaded["vggish-pca"].embed([wave])[0].frames
    assert len(np.unique(ref)) > 20  # values spread over the 0..255 range, not just clipped ends
    assert np.abs(ours - ref).max() <= 1e-4


def test_provenance_records_weights_and_postprocessing(vggish_loaded) -> None:
    raw, pca = vggish_loaded["vggish"].provenance(), vggish_loaded["vggish-pca"].provenance()
    assert raw["frontend"]["postprocess"] == "none" and pca["frontend"]["postprocess"] == "pca+clip+uint8"
    assert [w["name"] for w in raw["weights"]] == ["vggish-10086976.pth"]
    assert [w["name"] for w in pca["weights"]] == ["vggish-10086976.pth", "vggish_pca_params-970ea276.pth"]


def test_pca_variant_needs_the_pca_file(vggish_reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, model_dir, _ = vggish_reference
    shutil.copy(model_dir / registry.VGGISH_WEIGHTS.name, tmp_path)
    from .conftest import trust

    trust(tmp_path, ("vggish", "vggish-pca"), monkeypatch)
    assert registry.availability("vggish", tmp_path).available
    status = registry.availability("vggish-pca", tmp_path)
    assert not status.available and "vggish_pca_params-970ea276.pth" in status.reason


def test_unofficial_checkpoint_under_the_official_name_is_reported(vggish_reference) -> None:
    _, model_dir, _ = vggish_reference
    status = registry.availability("vggish", model_dir)  # real spec: sha256 must start with 10086976
    assert not status.available
    assert "checksum mismatch" in status.reason and "starting with 10086976" in status.reason
    with pytest.raises(registry.ModelUnavailable, match="checksum mismatch"):
        registry.load("vggish", model_dir)


def test_missing_weights_say_which_file_goes_where(tmp_path: Path) -> None:
    status = registry.availability("vggish", tmp_path)
    assert not status.available
    assert str(tmp_path / "vggish-10086976.pth") in status.reason and "models pull vggish" in status.reason
