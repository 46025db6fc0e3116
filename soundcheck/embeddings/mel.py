"""`mel`: the weight-free, deterministic embedded default.

Per 0.96 s patch (hop 0.48 s) of 16 kHz audio: the mean and the standard deviation over time of 64 log-mel
bands (25 ms periodic Hann window, 10 ms hop, 512-point FFT, HTK mel 125-7500 Hz, log(mel + 0.001)), i.e. a
128-d vector. A file shorter than one patch gives one vector over all of its frames (at least one window,
zero-padded). No weights, no torch: the same numbers on every machine with the same numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.embeddings.frontend import log_mel_spectrogram, patches
from soundcheck.embeddings.registry import SPECS

SPEC = SPECS["mel"]

_PARAMS = {
    "window_s": 0.025, "hop_s": 0.010, "n_mels": 64, "fmin": 125.0, "fmax": 7500.0, "log_offset": 0.001,
    "patch_frames": 96, "patch_hop_frames": 48, "pooling": "mean,std",
}


class MelEmbedding(EmbeddingModel):
    spec = SPEC
    frontend_version = "1"

    def frontend_params(self) -> dict[str, Any]:
        return dict(_PARAMS)

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        window = int(round(_PARAMS["window_s"] * SPEC.sample_rate))
        if len(wave) < window:
            wave = np.pad(wave, (0, window - len(wave)))
        logmel = log_mel_spectrogram(
            wave, SPEC.sample_rate, _PARAMS["window_s"], _PARAMS["hop_s"], _PARAMS["n_mels"],
            _PARAMS["fmin"], _PARAMS["fmax"], _PARAMS["log_offset"],
        )
        cut = patches(logmel, _PARAMS["patch_frames"], _PARAMS["patch_hop_frames"])
        stats = [logmel] if len(cut) == 0 else list(cut)
        return np.stack([np.concatenate([p.mean(axis=0), p.std(axis=0)]) for p in stats]).astype(np.float32)

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, None]:
        return inputs, None
