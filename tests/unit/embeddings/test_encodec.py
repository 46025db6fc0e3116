"""EnCodec 24 kHz: our encoder against encodec 0.1.1's on the same random-weight checkpoint.

``EncodecModel.encodec_model_24khz(pretrained=False)`` builds the whole model offline with random weights; its
full state dict (encoder, decoder, quantiser: what the official file holds) is saved under the official file
name and loaded by us through ``registry.load``. The reference output is what fadtk's ``EncodecEmbModel('24k')``
takes: ``model.encoder(wav[None, None])[0].T``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from soundcheck.embeddings import registry
from tests.unit.embeddings.conftest import noise, tone, trust

encodec = pytest.importorskip("encodec")

SR24 = 24000
MODEL = "encodec-24k"


def reference_model(seed: int) -> torch.nn.Module:
    """encodec's 24 kHz model with random weights; each conv's weight-norm gain set so activations stay O(1)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.encoder.named_parameters():
            if name.endswith("weight_g"):
                param.uniform_(1.0, 2.0, generator=gen)
            elif name.endswith("bias") and "lstm" not in name:
                param.uniform_(-0.1, 0.1, generator=gen)
    return model.eval()


@pytest.fixture(scope="module")
def encodec_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model_dir = tmp_path_factory.mktemp("encodec_models")
    ref = reference_model(seed=3)
    torch.save(ref.state_dict(), model_dir / registry.ENCODEC_24K_WEIGHTS.name)
    return ref, model_dir


@pytest.fixture(scope="module")
def encodec_loaded(encodec_reference):
    _, model_dir = encodec_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, (MODEL,), patch)
        return registry.load(MODEL, model_dir)


def sound(seconds: float, seed: int) -> np.ndarray:
    return noise(seconds, sr=SR24, amp=0.2, seed=seed) + tone(220.0 * (seed + 1), seconds, sr=SR24, amp=0.3)


def fadtk_embedding(ref: torch.nn.Module, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref.encoder(torch.from_numpy(wave)[None, None])[0].T.numpy()


def test_official_file_layout_is_the_full_encodec_state_dict(encodec_reference, encodec_loaded) -> None:
    from soundcheck.embeddings.encodec import expected_encoder_keys

    ref, _ = encodec_reference
    keys = set(ref.state_dict())
    assert {k for k in keys if k.startswith("encoder.")} == expected_encoder_keys()
    assert len(expected_encoder_keys()) == 62 and any(k.startswith("decoder.") for k in keys)


@pytest.mark.parametrize("seconds", [0.001, 0.05, 1.0, 3.7])
def test_embeddings_match_encodec_encoder(encodec_reference, encodec_loaded, seconds) -> None:
    ref, _ = encodec_reference
    wave = sound(seconds, seed=1)
    theirs = fadtk_embedding(ref, wave)
    ours = encodec_loaded.embed([wave])[0].frames
    assert ours.shape == theirs.shape == (-(-len(wave) // 320), 128)
    assert np.abs(ours - theirs).max() <= 1e-4
    if seconds >= 1.0:
        assert np.abs(theirs).max() > 1.0  # O(1) outputs: the bound means something


def test_files_are_cut_after_three_minutes_as_fadtk(encodec_loaded) -> None:
    from soundcheck.embeddings.encodec import MAX_SECONDS

    assert MAX_SECONDS == 180
    prov = encodec_loaded.provenance()
    assert "180 s" in prov["frontend"]["input"] and prov["frame_s"] == pytest.approx(1 / 75)


def test_encodec_results_do_not_depend_on_batch_size(encodec_loaded) -> None:
    waves = [sound(s, seed=i) for i, s in enumerate([0.3, 0.7, 0.3])]
    runs = {size: encodec_loaded.embed(waves, batch_size=size) for size in (1, 7, 64)}
    for size in (7, 64):
        for one, other in zip(runs[1], runs[size], strict=True):
            np.testing.assert_array_equal(other.frames, one.frames)


def test_provenance_records_the_official_file(encodec_loaded) -> None:
    prov = encodec_loaded.provenance()
    assert [w["name"] for w in prov["weights"]] == ["encodec_24khz-d7cc33bc.th"]
    assert prov["dim"] == 128 and len(prov["weights"][0]["sha256"]) == 64


def test_a_file_without_the_encoder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save({"decoder.x": torch.zeros(1)}, tmp_path / registry.ENCODEC_24K_WEIGHTS.name)
    trust(tmp_path, (MODEL,), monkeypatch)
    with pytest.raises(ValueError, match="not an encodec 24 kHz checkpoint"):
        registry.load(MODEL, tmp_path)


def test_registry_lists_passt_and_encodec_without_importing_torch(tmp_path: Path) -> None:
    code = ("import sys; from soundcheck.embeddings import registry; "
            f"s = [registry.availability(m, {str(tmp_path)!r}) for m in ('passt', {MODEL!r})]; "
            "assert not any(x.available for x in s); "
            "assert 'passt-s-f128-p16-s10-ap.476-swa.pt' in s[0].reason; "
            "assert 'encodec_24khz-d7cc33bc.th' in s[1].reason; "
            "assert 'torch' not in sys.modules and 'hear21passt' not in sys.modules and 'encodec' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
