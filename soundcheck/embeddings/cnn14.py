"""`cnn14`: PANNs CNN14 (Kong et al. 2020), our module with the panns_inference 0.1.1 state-dict layout.

The 84 tensors of ``Cnn14_mAP=0.431.pth`` (under its key ``model``) load unchanged, including the front end
that the checkpoint itself carries: the STFT as two Conv1d kernels (``spectrogram_extractor.stft.conv_real`` /
``conv_imag``: periodic Hann x DFT, n_fft 1024, hop 320, reflect-padded centre frames) and the Slaney mel matrix
``logmel_extractor.melW`` (64 bands, 50-14000 Hz at 32 kHz); then 10 log10(max(mel, 1e-10)), bn0 over the mel
axis, six conv blocks, max+mean pooling over time, ``fc1`` (the 2048-d embedding) and ``fc_audioset``
(sigmoid: 527 AudioSet clip probabilities).

Framing, so that files of any length can be batched. A file of at most 10 s is one segment, used whole (as
PANNs is run on a clip), zero-padded at the end to 1 s if shorter (CNN14 needs >= 32 frames). A longer file
gives 10 s segments every 10 s and, when at least 5 s are left after the last one, a final 10 s segment that
ends with the file (it overlaps the previous one): every segment of a long file has the 10 s of context CNN14
was trained on, and all of them have one length. Each input row is ``[valid_samples, samples padded to
10 s...]``; only rows of equal length share a forward pass (:meth:`Cnn14Embedding.input_groups`), in passes of
a fixed row count (the Batcher pads).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.embeddings.registry import (
    AUDIOSET_LABELS,
    CNN14_16K_WEIGHTS,
    CNN14_WEIGHTS,
    SPECS,
    WeightFile,
    find_weight,
    load_weight_file,
)

log = logging.getLogger(__name__)

SPEC = SPECS["cnn14"]
SAMPLE_RATE = 32000
N_FFT = 1024
HOP = 320
N_MELS = 64
FMIN, FMAX = 50.0, 14000.0
AMIN = 1e-10
SEGMENT_SAMPLES = 10 * SAMPLE_RATE
MIN_TAIL_SAMPLES = 5 * SAMPLE_RATE
MIN_FILE_SAMPLES = 1 * SAMPLE_RATE

FRAMING = {
    "stft": "conv kernels from the checkpoint (periodic hann, n_fft 1024, hop 320, centre, reflect pad)",
    "mel": "melW from the checkpoint (slaney, 64 bands, 50-14000 Hz)", "log": "10*log10(max(mel, 1e-10))",
    "segment_s": 10.0, "segment_hop_s": 10.0, "min_tail_s": 5.0, "tail": "last 10 s of the file",
    "short_file": "whole file (<= 10 s), zero-padded to 1 s",
}
# Default rows per forward pass (SOUNDCHECK_BATCH_SIZE overrides), always this many (zero-padded by the Batcher):
# a row's numbers never depend on the batch size.
CHUNK_CPU = 1  # measured: batching 10 s rows gains <20% on CPU, padding a lone row to 2 costs 2x
CHUNK_CUDA = 8


@dataclass(frozen=True)
class Cnn14Frontend:
    """The STFT and mel settings a CNN14 checkpoint was trained with (PANNs publishes a 32 kHz and a 16 kHz one)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop: int = HOP
    n_mels: int = N_MELS
    fmin: float = FMIN
    fmax: float = FMAX


FRONTEND_32K = Cnn14Frontend()
#: ``Cnn14_16k_mAP=0.438.pth``: window 512, hop 160, 64 mel bands 50-8000 Hz (audioldm_eval's 16 kHz setting).
FRONTEND_16K = Cnn14Frontend(sample_rate=16000, n_fft=512, hop=160, fmax=8000.0)


class ConvStft(nn.Module):
    """Real and imaginary DFT rows (windowed) as two Conv1d kernels ``[n_fft // 2 + 1, 1, n_fft]``."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        phase = -2.0 * torch.pi * torch.outer(torch.arange(bins, dtype=torch.float64), torch.arange(n_fft)) / n_fft
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(phase) * window)[:, None, :])
            self.conv_imag.weight.copy_((torch.sin(phase) * window)[:, None, :])

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(padded), self.conv_imag(padded)  # [b, bins, frames]


class PowerSpectrogram(nn.Module):
    def __init__(self, n_fft: int = N_FFT, hop: int = HOP) -> None:
        super().__init__()
        self.stft = ConvStft(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wave)
        return (real**2 + imag**2).transpose(1, 2)[:, None]  # [b, 1, frames, bins]


class LogMel(nn.Module):
    def __init__(self, frontend: Cnn14Frontend = FRONTEND_32K) -> None:
        super().__init__()
        import torchaudio.functional

        f = frontend
        weights = torchaudio.functional.melscale_fbanks(
            f.n_fft // 2 + 1, f.fmin, f.fmax, f.n_mels, f.sample_rate, norm="slaney", mel_scale="slaney",
        )
        self.melW = nn.Parameter(weights, requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=AMIN))


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch-norm + ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14Network(nn.Module):
    """Waveform ``[b, samples]`` → (embedding ``[b, 2048]``, clip probabilities ``[b, 527]``, or the logits
    before the sigmoid with ``logits=True``)."""

    def __init__(self, classes: int = 527, frontend: Cnn14Frontend = FRONTEND_32K, logits: bool = False) -> None:
        super().__init__()
        self.logits = logits
        self.spectrogram_extractor = PowerSpectrogram(frontend.n_fft, frontend.hop)
        self.logmel_extractor = LogMel(frontend)
        self.bn0 = nn.BatchNorm2d(N_MELS)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, classes)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel_extractor(self.spectrogram_extractor(wave))  # [b, 1, frames, mels]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool=(2, 2) if i < 6 else (1, 1))
        x = x.mean(dim=3)  # over frequency
        x = x.max(dim=2).values + x.mean(dim=2)  # over time
        embedding = F.relu(self.fc1(x))
        scores = self.fc_audioset(embedding)
        return embedding, scores if self.logits else torch.sigmoid(scores)


def segment_rows(wave: np.ndarray) -> np.ndarray:
    """Rows ``[n, 1 + 10 s]`` float32: the valid sample count, then the segment zero-padded to 10 s."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) <= SEGMENT_SAMPLES:
        pieces = [np.pad(wave, (0, max(0, MIN_FILE_SAMPLES - len(wave))))]
    else:
        starts = list(range(0, len(wave) - SEGMENT_SAMPLES + 1, SEGMENT_SAMPLES))
        if len(wave) - (starts[-1] + SEGMENT_SAMPLES) >= MIN_TAIL_SAMPLES:
            starts.append(len(wave) - SEGMENT_SAMPLES)
        pieces = [wave[s:s + SEGMENT_SAMPLES] for s in starts]
    rows = np.zeros((len(pieces), 1 + SEGMENT_SAMPLES), dtype=np.float32)
    for row, piece in zip(rows, pieces, strict=True):
        row[0] = len(piece)
        row[1:1 + len(piece)] = piece
    return rows


def read_audioset_labels(path: Path, classes: int) -> tuple[list[str], list[str]] | None:
    """(display names, mids) from an AudioSet ``class_labels_indices.csv``; None if absent or malformed."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["index"]))
    if [int(r["index"]) for r in rows] != list(range(classes)):
        log.warning("%s does not list classes 0..%d: CNN14 class names not loaded", path, classes - 1)
        return None
    return [r["display_name"] for r in rows], [r["mid"] for r in rows]


class Cnn14Embedding(EmbeddingModel):
    """PANNs CNN14: 2048-d embedding and 527 AudioSet probabilities per segment (see module doc)."""

    spec = SPEC
    frontend_version = "1"
    pads_batches = True  # torch CPU/CUDA kernels are chosen by batch shape
    weight_file: WeightFile = CNN14_WEIGHTS
    settings: Cnn14Frontend = FRONTEND_32K

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        super().__init__(model_dir, device)
        self.torch_device = torch.device(device)
        self.chunk = CHUNK_CUDA if self.torch_device.type == "cuda" else CHUNK_CPU
        found = find_weight(self.model_dir, self.weight_file)
        self.weights = [found]
        checkpoint = load_weight_file(Path(found.path))
        self.network = Cnn14Network(self.spec.n_classes, self.settings, logits=self.spec.class_scores == "logits")
        self.network.load_state_dict(checkpoint.get("model", checkpoint), strict=True)
        self.network.to(self.torch_device).eval()

    @cached_property
    def _labels(self) -> tuple[list[str], list[str]] | None:
        return read_audioset_labels(self.model_dir / AUDIOSET_LABELS.subdir / AUDIOSET_LABELS.name, SPEC.n_classes)

    @property
    def class_indices(self) -> list[int]:
        return list(range(SPEC.n_classes))

    @property
    def class_names(self) -> list[str] | None:
        """AudioSet display names when ``class_labels_indices.csv`` is in the model dir, else None."""
        return None if self._labels is None else self._labels[0]

    @property
    def class_mids(self) -> list[str] | None:
        return None if self._labels is None else self._labels[1]

    def frontend_params(self) -> dict[str, Any]:
        return dict(FRAMING)

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        return segment_rows(wave)

    @property
    def default_batch_rows(self) -> int:
        return self.chunk

    def input_groups(self, inputs: np.ndarray) -> np.ndarray:
        """The valid sample count of each row: rows of one length share a pass (no padding inside a row)."""
        return inputs[:, 0].astype(np.int64)

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One pass per length present (the Batcher gives one; zero rows of padding have length 0)."""
        lengths = inputs[:, 0].astype(np.int64)
        embeddings = np.zeros((len(inputs), self.spec.dim), dtype=np.float32)
        probs = np.zeros((len(inputs), self.spec.n_classes), dtype=np.float32)
        real = lengths > 0
        length = int(lengths[real].max()) if real.any() else 0
        if length and np.any(lengths[real] != length):
            raise ValueError("cnn14 forward got rows of different lengths; group them with input_groups")
        if length:
            waves = np.ascontiguousarray(inputs[:, 1:1 + length], dtype=np.float32)
            with torch.inference_mode():
                emb, prob = self.network(torch.from_numpy(waves).to(self.torch_device))
            embeddings[real] = emb.float().cpu().numpy()[real]
            probs[real] = prob.float().cpu().numpy()[real]
        return embeddings, probs


def whole_file_row(wave: np.ndarray, min_samples: int) -> np.ndarray:
    """One row ``[1, 1 + samples]``: the valid sample count, then the whole file, zero-padded to ``min_samples``."""
    wave = np.asarray(wave, dtype=np.float32)
    wave = np.pad(wave, (0, max(0, min_samples - len(wave))))
    return np.concatenate([[np.float32(len(wave))], wave])[None, :]


class Cnn14Embedding16k(Cnn14Embedding):
    """PANNs CNN14 16 kHz (``Cnn14_16k_mAP=0.438.pth``) as audioldm_eval runs it: the whole file in one pass
    (zero-padded to 2 s), 2048-d embedding and the 527 class logits (the metrics apply softmax or sigmoid)."""

    spec = SPECS["cnn14-16k"]
    weight_file = CNN14_16K_WEIGHTS
    settings = FRONTEND_16K
    MIN_SAMPLES = 2 * 16000  # audioldm_eval's pad_short_audio(min_samples=32000) at 16 kHz

    def frontend_params(self) -> dict[str, Any]:
        return {"stft": "conv kernels from the checkpoint (periodic hann, n_fft 512, hop 160, centre, reflect pad)",
                "mel": "melW from the checkpoint (slaney, 64 bands, 50-8000 Hz)", "log": "10*log10(max(mel, 1e-10))",
                "segment": "whole file in one pass", "short_file": "zero-padded to 2 s",
                "class_outputs": "logits (fc_audioset before the sigmoid)"}

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        return whole_file_row(wave, self.MIN_SAMPLES)

    @property
    def default_batch_rows(self) -> int:
        return 1  # whole files differ in length: one per pass
