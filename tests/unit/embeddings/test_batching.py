"""Every model gives the same numbers whatever the batch size, on files of different lengths."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.embeddings import registry

from .conftest import noise, tone


def files_of_different_lengths(sample_rate: int, seconds: list[float]) -> list[np.ndarray]:
    return [
        noise(s, sr=sample_rate, amp=0.1, seed=i) + tone(300.0 + 97 * i, s, sr=sample_rate, amp=0.2)
        for i, s in enumerate(seconds)
    ]


def assert_batch_size_independent(model, waves: list[np.ndarray]) -> None:
    runs = {size: model.embed(waves, batch_size=size) for size in (1, 7, 64)}
    for size in (7, 64):
        for one, other in zip(runs[1], runs[size], strict=True):
            assert one.frames.shape == other.frames.shape
            np.testing.assert_allclose(other.frames, one.frames, rtol=0, atol=1e-5)
            if one.probs is not None:
                np.testing.assert_allclose(other.probs, one.probs, rtol=0, atol=1e-5)


SECONDS_16K = [0.5, 1.3, 2.0, 2.0, 3.7, 5.1, 0.97, 4.0, 2.0, 6.2]
SECONDS_VGGISH = [0.5, 1.3, 2.0, 3.7, 0.97, 4.0, 2.0, 3.0]  # 17 examples: more than one forward chunk


def test_mel_batches(tmp_path) -> None:
    assert_batch_size_independent(registry.load("mel", tmp_path), files_of_different_lengths(16000, SECONDS_16K))


def test_yamnet_batches(yamnet_loaded) -> None:
    assert_batch_size_independent(yamnet_loaded, files_of_different_lengths(16000, SECONDS_16K))


@pytest.mark.parametrize("model_id", ["vggish", "vggish-pca"])
def test_vggish_batches(vggish_loaded, model_id: str) -> None:
    assert_batch_size_independent(vggish_loaded[model_id], files_of_different_lengths(16000, SECONDS_VGGISH))


@pytest.mark.parametrize("chunk", [None, 3])
def test_cnn14_batches(cnn14_loaded, monkeypatch: pytest.MonkeyPatch, chunk: int | None) -> None:
    """Default chunking of the device, and chunks of 3 so that zero-padded chunks are exercised on CPU too."""
    if chunk is not None:
        monkeypatch.setattr(cnn14_loaded, "chunk", chunk)
    # Equal lengths share a forward pass, unequal ones do not: both cases, kept short for CPU time.
    waves = files_of_different_lengths(32000, [1.0, 1.2, 1.2, 0.3, 1.6, 1.2])
    assert_batch_size_independent(cnn14_loaded, waves)
