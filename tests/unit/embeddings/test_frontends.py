"""Our numpy front ends against the AudioSet reference code shipped in torchvggish (mel_features, vggish_input)."""

from __future__ import annotations

import numpy as np
import pytest
from torchvggish import mel_features, vggish_input

from soundcheck.embeddings.frontend import mel_matrix
from soundcheck.embeddings.vggish import vggish_examples
from soundcheck.embeddings.yamnet import yamnet_patches

from .conftest import SR16, noise, tone


def test_mel_matrix_equals_audioset_reference() -> None:
    ours = mel_matrix(64, 512, SR16, 125.0, 7500.0)
    ref = mel_features.spectrogram_to_mel_matrix(64, 257, SR16, 125.0, 7500.0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seconds", [0.96 + 0.015, 2.0, 3.7, 10.01])
def test_vggish_examples_match_torchvggish_waveform_to_examples(seconds: float) -> None:
    wave = noise(seconds, amp=0.3, seed=1) + tone(1000.0, seconds, amp=0.2)
    ref = vggish_input.waveform_to_examples(wave.astype(np.float64), SR16, return_tensor=False)
    ours = vggish_examples(wave)
    assert ours.shape == (len(ref), 1, 96, 64)
    np.testing.assert_allclose(ours[:, 0], ref, rtol=0, atol=1e-5)


def test_vggish_short_file_is_padded_to_one_example() -> None:
    short = tone(440.0, 0.3)
    padded = np.pad(short.astype(np.float64), (0, 15600 - len(short)))
    ref = vggish_input.waveform_to_examples(padded, SR16, return_tensor=False)
    np.testing.assert_allclose(vggish_examples(short)[:, 0], ref, rtol=0, atol=1e-5)
    assert vggish_examples(np.zeros(0, np.float32)).shape == (1, 1, 96, 64)


def yamnet_reference_patches(wave: np.ndarray) -> np.ndarray:
    """YAMNet features with the AudioSet reference code: log(mel + 0.001), 96-frame patches every 48."""
    logmel = mel_features.log_mel_spectrogram(
        wave.astype(np.float64), audio_sample_rate=SR16, log_offset=0.001, window_length_secs=0.025,
        hop_length_secs=0.010, num_mel_bins=64, lower_edge_hertz=125.0, upper_edge_hertz=7500.0,
    )
    return mel_features.frame(logmel, window_length=96, hop_length=48)


def test_yamnet_patches_match_reference_log_mel_on_whole_patches() -> None:
    n = 15600 + 3 * 7680  # exactly four patches: no padding involved
    wave = noise(n / SR16, amp=0.2, seed=2) + tone(300.0, n / SR16, amp=0.3)
    ours = yamnet_patches(wave[:n])
    ref = yamnet_reference_patches(wave[:n])
    assert ours.shape == (4, 1, 96, 64)
    np.testing.assert_allclose(ours[:, 0], ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("samples", [0, 1000, 15599, 15600, 15601, 23280, 23281, 16000 * 5])
def test_yamnet_pads_like_pad_waveform(samples: int) -> None:
    """YAMNet's pad_waveform: >= 0.975 s, then a whole number of 0.48 s hops; the real samples stay in place."""
    hops = int(np.ceil(max(0, samples - 15600) / 7680))
    wave = noise(samples / SR16, amp=0.2, seed=3)[:samples]
    padded = np.concatenate([wave, np.zeros(15600 + hops * 7680 - samples, np.float32)])
    ours = yamnet_patches(wave)
    assert ours.shape == (1 + hops, 1, 96, 64)
    np.testing.assert_allclose(ours[:, 0], yamnet_reference_patches(padded), rtol=0, atol=1e-5)
