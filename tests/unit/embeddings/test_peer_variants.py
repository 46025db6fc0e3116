"""The model variants the peer presets use, against the peers' own constructions on the same random weights:
`vggish-noact` (frechet_audio_distance / audioldm_eval drop VGGish's last ReLU) and `cnn14-16k` (audioldm_eval's
16 kHz PANNs CNN14 on whole files, with logits)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torchvggish import vggish_input

from soundcheck.embeddings import registry

from .conftest import SR16, noise, tone, trust


def test_vggish_without_final_relu_matches_frechet_audio_distance_construction(vggish_reference) -> None:
    net, model_dir, _ = vggish_reference
    peer = copy.deepcopy(net)
    # what frechet_audio_distance does for use_activation=False
    peer.embeddings = nn.Sequential(*list(peer.embeddings.children())[:-1])
    wave = noise(3.0, amp=0.3, seed=21) + tone(330.0, 3.0, amp=0.2)
    with torch.no_grad():
        ref = peer(vggish_input.waveform_to_examples(wave.astype(np.float64), SR16)).numpy()
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, ("vggish-noact",), patch)
        model = registry.load("vggish-noact", model_dir)
    ours = model.embed([wave])[0].frames
    assert (ref < 0).any()  # the ReLU matters on these weights
    assert ours.shape == ref.shape and np.abs(ours - ref).max() <= 1e-4
    assert model.provenance()["frontend"]["final_relu"] is False


def _peer_16k(net: torch.nn.Module, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """audioldm_eval's input: the whole file, zero-padded to 32000 samples; logits from the peer's own layers."""
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    if x.shape[-1] < 32000:
        x = torch.nn.functional.pad(x, (0, 32000 - x.shape[-1]))
    with torch.no_grad():
        out = net(x)
        logits = net.fc_audioset(out["embedding"])
    return out["embedding"].numpy(), out["clipwise_output"].numpy(), logits.numpy()


@pytest.mark.parametrize("seconds", [0.5, 13.0])
def test_cnn14_16k_matches_panns_16k_on_whole_files(cnn14_16k_reference, cnn14_16k_loaded, seconds: float) -> None:
    net, _ = cnn14_16k_reference
    wave = noise(seconds, sr=SR16, amp=0.2, seed=8) + tone(440.0, seconds, sr=SR16, amp=0.3)
    emb, clip, logits = _peer_16k(net, wave)
    out = cnn14_16k_loaded.embed([wave])[0]
    assert out.frames.shape == (1, 2048) and out.probs.shape == (1, 527)  # one vector per file, any length
    assert np.abs(emb).max() > 0.1 and np.abs(logits).std() > 0.5  # not degenerate
    assert np.abs(out.frames - emb).max() <= 1e-4
    assert np.abs(out.probs - logits).max() <= 1e-4  # class outputs are the logits ...
    assert np.abs(1.0 / (1.0 + np.exp(-out.probs.astype(np.float64))) - clip).max() <= 1e-5  # ... of the sigmoid
    assert registry.SPECS["cnn14-16k"].class_scores == "logits"


def test_cnn14_16k_batches_give_the_same_numbers(cnn14_16k_loaded) -> None:
    waves = [noise(s, sr=SR16, amp=0.2, seed=i) for i, s in enumerate((1.0, 3.0, 2.5))]
    together = cnn14_16k_loaded.embed(waves)
    alone = [cnn14_16k_loaded.embed([w])[0] for w in waves]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.probs, b.probs)
