"""`vggish` and `vggish-pca`: VGGish (Hershey et al. 2017) with the torchvggish 0.2 weight layout.

The network is ours; its state-dict keys and shapes are torchvggish's (``features.*`` for the four VGG conv
groups, ``embeddings.*`` for the three fully connected layers, 18 tensors), so the published
``vggish-10086976.pth`` loads unchanged. As in torchvggish, the 128-d layer ends with a ReLU (the later TF
release dropped that ReLU; our numbers are torchvggish's).

Front end (official VGGish): 16 kHz; |STFT| with a 25 ms periodic Hann window, 10 ms hop, 512-point FFT;
64 HTK mel bands 125-7500 Hz; log(mel + 0.01); non-overlapping 96-frame examples (0.96 s). Whole examples
only, as the reference does; a file too short for one example is zero-padded to one (0.975 s), so every file
gives at least one embedding.

Two ids, because they give different numbers:

- ``vggish``: the raw 128-d embedding (what FAD implementations use);
- ``vggish-pca``: the AudioSet-release post-processing: PCA with whitening (``vggish_pca_params-970ea276.pth``),
  clip to [-2, 2], 8-bit quantisation to the integers 0..255 (kept as float32), as torchvggish's Postprocessor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.embeddings.frontend import log_mel_spectrogram, patches
from soundcheck.embeddings.registry import SPECS, VGGISH_PCA, VGGISH_WEIGHTS, find_weight, load_weight_file

FRONTEND = {
    "window_s": 0.025, "hop_s": 0.010, "n_fft": 512, "window": "periodic_hann", "magnitude": True,
    "n_mels": 64, "fmin": 125.0, "fmax": 7500.0, "mel_scale": "htk", "log_offset": 0.01,
    "example_frames": 96, "example_hop_frames": 96,
    "short_file": "zero-padded at the end to one example (0.975 s)",
}
_MIN_SAMPLES = 400 - 160 + 96 * 160  # one 96-frame example: 15600 samples
_CONV_CHANNELS = ((64,), (128,), (256, 256), (512, 512))  # conv groups, each followed by a 2x2 max pool
QUANTIZE_RANGE = (-2.0, 2.0)
# Default examples per forward pass (SOUNDCHECK_BATCH_SIZE overrides), always this many (zero-padded by the
# Batcher): a row's numbers never depend on the batch size.
CHUNK_CPU = 16  # measured per example on 2 cores: 8 rows 21.6 ms, 16 rows 19.4 ms, torchvggish at 64 18.2 ms
CHUNK_CUDA = 64


class VGGishNetwork(nn.Module):
    """Log-mel example ``[b, 1, 96, 64]`` → 128-d embedding; parameter names as in torchvggish 0.2."""

    def __init__(self, final_relu: bool = True) -> None:
        super().__init__()
        self.final_relu = final_relu
        layers: list[nn.Module] = []
        channels = 1
        for group in _CONV_CHANNELS:
            for width in group:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128), nn.ReLU(inplace=True),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        maps = self.features(examples)  # [b, 512, 6, 4]
        # The TF original flattens in (time, frequency, channel) order; the weights expect that order.
        flat = maps.permute(0, 2, 3, 1).flatten(1)
        # without the final ReLU: frechet_audio_distance's use_activation=False drops that last layer
        return self.embeddings(flat) if self.final_relu else self.embeddings[:-1](flat)


class PcaQuantizer(nn.Module):
    """AudioSet-release post-processing: ``round((clip(P (x - mean), -2, 2) + 2) * 255 / 4)``."""

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("eigen_vectors", eigen_vectors.float())
        self.register_buffer("means", means.float().reshape(-1, 1))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        # Same operation order as the reference, so the rounding sees the same float32 values.
        projected = torch.mm(self.eigen_vectors, embedding.t() - self.means).t()
        low, high = QUANTIZE_RANGE
        return torch.round((projected.clamp(low, high) - low) * (255.0 / (high - low)))


def vggish_examples(wave: np.ndarray) -> np.ndarray:
    """Log-mel examples ``[n, 1, 96, 64]`` float32 of a 16 kHz mono waveform."""
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < _MIN_SAMPLES:
        wave = np.pad(wave, (0, _MIN_SAMPLES - len(wave)))
    logmel = log_mel_spectrogram(
        wave, 16000, FRONTEND["window_s"], FRONTEND["hop_s"], FRONTEND["n_mels"], FRONTEND["fmin"],
        FRONTEND["fmax"], FRONTEND["log_offset"],
    )
    cut = patches(logmel, FRONTEND["example_frames"], FRONTEND["example_hop_frames"])
    return cut[:, None, :, :].astype(np.float32)


def load_pca_params(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    params = load_weight_file(path)
    return torch.as_tensor(params["pca_eigen_vectors"]), torch.as_tensor(params["pca_means"])


class VggishEmbedding(EmbeddingModel):
    """VGGish raw 128-d embedding per 0.96 s example (hop 0.96 s)."""

    spec = SPECS["vggish"]
    frontend_version = "1"
    postprocess = False
    final_relu = True
    pads_batches = True  # torch CPU/CUDA kernels are chosen by batch shape

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        super().__init__(model_dir, device)
        self.torch_device = torch.device(device)
        self.chunk = CHUNK_CUDA if self.torch_device.type == "cuda" else CHUNK_CPU
        found = find_weight(self.model_dir, VGGISH_WEIGHTS)
        self.weights = [found]
        self.network = VGGishNetwork(self.final_relu)
        self.network.load_state_dict(load_weight_file(Path(found.path)), strict=True)
        self.network.to(self.torch_device).eval()
        self.quantizer: PcaQuantizer | None = None
        if self.postprocess:
            pca = find_weight(self.model_dir, VGGISH_PCA)
            self.weights.append(pca)
            self.quantizer = PcaQuantizer(*load_pca_params(Path(pca.path))).to(self.torch_device).eval()

    @property
    def default_batch_rows(self) -> int:
        return self.chunk

    def frontend_params(self) -> dict[str, Any]:
        post = "pca+clip+uint8" if self.postprocess else "none"
        return {**FRONTEND, "final_relu": self.final_relu, "postprocess": post}

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        return vggish_examples(wave)

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, None]:
        examples = np.ascontiguousarray(inputs, dtype=np.float32).reshape(-1, 1, 96, 64)
        with torch.inference_mode():
            embedding = self.network(torch.from_numpy(examples).to(self.torch_device))
            if self.quantizer is not None:
                embedding = self.quantizer(embedding)
            return embedding.float().cpu().numpy(), None


class VggishPcaEmbedding(VggishEmbedding):
    """VGGish with the AudioSet-release PCA, clipping and 8-bit quantisation (values 0..255)."""

    spec = SPECS["vggish-pca"]
    postprocess = True


class VggishNoActEmbedding(VggishEmbedding):
    """VGGish without the final ReLU of the 128-d layer, as frechet_audio_distance (``use_activation=False``) and
    audioldm_eval compute FAD; the same weight file."""

    spec = SPECS["vggish-noact"]
    final_relu = False
