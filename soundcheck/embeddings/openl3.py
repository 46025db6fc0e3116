"""`openl3-*`: OpenL3 audio embeddings (Cramer et al. 2019), mel256, with the torchopenl3 1.0.1 weight layout.

The network is ours; its state-dict keys and shapes are those of torchopenl3's ``PytorchOpenl3`` (59 entries:
``batch_normalization_1..8``, ``conv2d_1..7``, ``audio_embedding_layer`` and the front-end buffers
``speclayer.dft_real_kernels`` / ``dft_imag_kernels`` / ``mel_basis``), so the published
``torchopenl3_mel256_<content>_<size>.pth.tar`` files load unchanged.

Front end, as the reference computes it (kapre 0.1.4 semantics): 48 kHz; 1 s windows (48000 samples) every
``hop_s`` (0.1 s), the file first zero-padded by 0.5 s at the start ("center") and at the end to a whole
number of hops (a file shorter than a window gives one window). Each window is zero-padded by 982 samples on
both sides ("same" padding of 2048-sample frames, hop 242: 199 frames); |STFT|^2 with a periodic Hann window,
n_fft 2048; the mel matrix the checkpoint carries (``speclayer.mel_basis``, 256 bands); sqrt; 10 log10(max(.,
1e-10)); minus the window's maximum; floored at -80. We compute this in float64 with an FFT (the reference
uses float32 Conv1d DFT kernels: the checkpoint's kernels are checked to be that DFT at load time).

Network: batch norm on the log-mel input; seven 3x3 conv + batch norm + ReLU layers (64, 64 | 128, 128 |
256, 256 | 512) with 2x2 max pools after the 2nd, 4th and 6th; the 3x3 ``audio_embedding_layer`` (512
channels); a max pool of (32, 24) for 512-d (global) or (8, 8) for 6144-d (a 4 x 3 grid of 512 channels,
flattened frequency, time, channel as the Keras original).

Channels: ``mono`` averages the channels of a multichannel input (as openl3 / torchopenl3 do).
``stable-audio`` follows stable-audio-metrics' ``openl3_fd`` with ``channels=2``: the file is peak-normalised to
-1 dBFS, channels 0 and 1 are embedded separately and concatenated per window ([L | R], 1024-d), a mono file
counts as L = R; its ids use hop 0.5 s, as all of stable-audio-metrics' examples do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.embeddings.frontend import fixed_size_chunks
from soundcheck.embeddings.registry import SPECS, find_weight, load_weight_file, openl3_weights

SAMPLE_RATE = 48000
WINDOW = SAMPLE_RATE  # one 1 s window per embedding
N_FFT = 2048
STFT_HOP = 242
# kapre/Keras "same" padding of a 48000-sample window: 2048 - 48000 % 242 = 1964 samples, split evenly.
STFT_PAD = (N_FFT - WINDOW % STFT_HOP) // 2
N_FRAMES = 1 + (WINDOW + 2 * STFT_PAD - N_FFT) // STFT_HOP  # 199
N_MELS = 256
AMIN = 1e-10
DYNAMIC_RANGE_DB = 80.0
BN_EPS = 1e-3
PEAK_DBFS = -1.0
#: Final max pool (frequency, time) for each embedding size; after three 2x2 pools the map is 32 x 24.
POOL = {512: (32, 24), 6144: (8, 8)}
_WIDTHS = (1, 64, 64, 128, 128, 256, 256, 512)
_POOL_AFTER = (2, 4, 6)  # 2x2 max pool after these conv layers
_SPECLAYER = ("speclayer.dft_real_kernels", "speclayer.dft_imag_kernels", "speclayer.mel_basis")
# Windows per forward pass, always this many (zero-padded): a row's numbers never depend on the batch size.
CHUNK_CPU = 1  # measured on 2 cores, per window: 1 row 0.105 s, 2 rows 0.114 s, 4 rows 0.131 s
CHUNK_CUDA = 32


class OpenL3Network(nn.Module):
    """Log-mel window ``[b, 1, 256, 199]`` → embedding ``[b, 512 | 6144]``; parameter names as torchopenl3's."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        if embedding_size not in POOL:
            raise ValueError(f"OpenL3 embedding size must be one of {sorted(POOL)}, got {embedding_size}")
        self.pool = POOL[embedding_size]
        self.batch_normalization_1 = nn.BatchNorm2d(1, eps=BN_EPS)
        for i in range(1, len(_WIDTHS)):
            self.add_module(f"conv2d_{i}", nn.Conv2d(_WIDTHS[i - 1], _WIDTHS[i], 3, padding=1))
            self.add_module(f"batch_normalization_{i + 1}", nn.BatchNorm2d(_WIDTHS[i], eps=BN_EPS))
        self.audio_embedding_layer = nn.Conv2d(512, 512, 3, padding=1)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.batch_normalization_1(logmel)
        for i in range(1, len(_WIDTHS)):
            x = F.relu(getattr(self, f"batch_normalization_{i + 1}")(getattr(self, f"conv2d_{i}")(x)))
            if i in _POOL_AFTER:
                x = F.max_pool2d(x, 2)
        x = F.max_pool2d(self.audio_embedding_layer(x), self.pool)
        return x.permute(0, 2, 3, 1).flatten(1)  # Keras order: (frequency, time, channel)


class FoldedOpenL3(nn.Module):
    """The inference form of a loaded :class:`OpenL3Network`: each batch norm after a conv folded into it.

    ``conv -> BN -> ReLU`` becomes one conv with weights ``w * g / sqrt(v + eps)`` and bias
    ``(b - m) * g / sqrt(v + eps) + beta`` (exact in real arithmetic; float32 rounding moves embeddings by
    ~1e-6), run channels_last: 1.4x faster per window on CPU than the unfolded network (measured 0.103 s vs
    0.145 s). The input batch norm stays: the convs zero-pad *after* it, so it cannot be folded.
    """

    def __init__(self, net: OpenL3Network) -> None:
        super().__init__()
        self.pool = net.pool
        self.input_norm = net.batch_normalization_1
        self.convs = nn.ModuleList()
        with torch.no_grad():
            for i in range(1, len(_WIDTHS)):
                conv, bn = getattr(net, f"conv2d_{i}"), getattr(net, f"batch_normalization_{i + 1}")
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                folded = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1)
                folded.weight.copy_(conv.weight.double() * scale[:, None, None, None])
                folded.bias.copy_((conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double())
                self.convs.append(folded)
        self.embedding = net.audio_embedding_layer

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(logmel).contiguous(memory_format=torch.channels_last)
        for i, conv in enumerate(self.convs, start=1):
            x = F.relu_(conv(x))
            if i in _POOL_AFTER:
                x = F.max_pool2d(x, 2)
        x = F.max_pool2d(self.embedding(x), self.pool)
        return x.permute(0, 2, 3, 1).flatten(1)


def dft_kernels() -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary periodic-Hann DFT rows ``[1025, 2048]`` float64 (what the checkpoint must carry)."""
    n = np.arange(N_FFT)
    phase = 2.0 * np.pi * np.outer(np.arange(N_FFT // 2 + 1), n) / N_FFT
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)
    return np.cos(phase) * window, -np.sin(phase) * window


def check_speclayer(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pop the front-end buffers off a torchopenl3 state dict; return its mel matrix ``[256, 1025]``.

    The STFT is computed here by FFT, so the checkpoint's DFT kernels must be that transform (float32 rounding
    allowed); anything else is refused rather than silently computed differently.
    """
    missing = [k for k in _SPECLAYER if k not in state]
    if missing:
        raise ValueError(f"not a torchopenl3 mel256 checkpoint: missing {', '.join(missing)}")
    real, imag, mel = (state.pop(k) for k in _SPECLAYER)
    for got, want, name in zip((real, imag), dft_kernels(), _SPECLAYER[:2], strict=True):
        got = got.double().reshape(N_FFT // 2 + 1, -1).numpy()
        if got.shape != want.shape or np.abs(got - want).max() > 1e-5:
            raise ValueError(f"{name} is not the periodic-Hann DFT of n_fft {N_FFT}: checkpoint not supported")
    if tuple(mel.shape) != (N_MELS, N_FFT // 2 + 1):
        raise ValueError(f"speclayer.mel_basis has shape {tuple(mel.shape)}, expected {(N_MELS, N_FFT // 2 + 1)}")
    return mel.double()


def log_mel_windows(windows: torch.Tensor, mel_basis: torch.Tensor) -> torch.Tensor:
    """kapre-0.1.4 dB mel ``[b, 1, 256, 199]`` float32 of 1 s windows ``[b, 48000]``, computed in float64."""
    x = F.pad(windows.double(), (STFT_PAD, STFT_PAD))
    frames = x.unfold(-1, N_FFT, STFT_HOP)  # [b, 199, 2048]
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=x.device)
    spectrum = torch.fft.rfft(frames * window, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()  # [b, 199, 1025]
    amplitude = torch.sqrt(power @ mel_basis.T)  # [b, 199, 256]
    db = 10.0 * torch.log10(amplitude.clamp(min=AMIN))  # kapre: 10 log10 of the mel amplitude
    db = (db - db.amax(dim=(1, 2), keepdim=True)).clamp(min=-DYNAMIC_RANGE_DB)
    return db.transpose(1, 2)[:, None].float()


def window_rows(wave: np.ndarray, hop: int, center: bool = True) -> np.ndarray:
    """1 s windows ``[..., n, 48000]`` float32 every ``hop`` samples of ``[..., samples]``, padded as openl3's
    ``_preprocess_audio_batch``. A read-only strided view of one padded copy: 10 windows a second of audio
    would otherwise hold 10x the file (1.1 GB for 10 minutes of mono)."""
    wave = np.asarray(wave, dtype=np.float32)
    lead = WINDOW // 2 if center else 0
    length = lead + wave.shape[-1]
    n = 1 if length <= WINDOW else 1 + -(-(length - WINDOW) // hop)
    padded = np.zeros((*wave.shape[:-1], WINDOW + (n - 1) * hop), dtype=np.float32)
    padded[..., lead:length] = wave
    return np.lib.stride_tricks.sliding_window_view(padded, WINDOW, axis=-1)[..., ::hop, :]


def split_channels(wave: np.ndarray, channels: str) -> list[np.ndarray]:
    """The mono signal(s) to embed: ``[frames]`` or ``[frames, channels]`` in (soundfile's layout)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2):
        raise ValueError(f"expected a waveform [frames] or [frames, channels], got shape {wave.shape}")
    if channels == "mono":
        return [wave if wave.ndim == 1 else wave.astype(np.float64).mean(axis=1).astype(np.float32)]
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > 0.0:  # pyloudnorm.normalize.peak(audio, -1.0), as stable-audio-metrics does per file
        wave = (wave.astype(np.float64) * (10.0 ** (PEAK_DBFS / 20.0) / peak)).astype(np.float32)
    if wave.ndim == 1 or wave.shape[1] == 1:
        mono = wave.reshape(len(wave))
        return [mono, mono]
    return [wave[:, 0], wave[:, 1]]  # stable-audio-metrics uses channels 0 and 1


class OpenL3Embedding(EmbeddingModel):
    """OpenL3 mel256 embedding per 1 s window; subclasses fix content type, size and channel convention."""

    content_type = "music"
    embedding_size = 512
    channels = "mono"  # "mono" | "stable-audio"
    #: Channels :meth:`frontend` wants to see (``[frames]`` or ``[frames, channels]``); the pipeline decodes that
    #: many (soundcheck.audio.load_channels). A caller that downmixes first gives it L = R ([M | M]).
    input_channels = 1
    frontend_version = "1"

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        super().__init__(model_dir, device)
        self.torch_device = torch.device(device)
        self.chunk = CHUNK_CUDA if self.torch_device.type == "cuda" else CHUNK_CPU
        self.hop = int(round(self.spec.hop_s * SAMPLE_RATE))
        found = find_weight(self.model_dir, openl3_weights(self.content_type, self.embedding_size))
        self.weights = [found]
        state = dict(load_weight_file(Path(found.path)))
        self.mel_basis = check_speclayer(state).to(self.torch_device)
        layout = OpenL3Network(self.embedding_size)
        layout.load_state_dict(state, strict=True)
        self.network = FoldedOpenL3(layout.eval()).to(self.torch_device, memory_format=torch.channels_last).eval()

    def frontend_params(self) -> dict[str, Any]:
        return {
            "input_repr": "mel256", "content_type": self.content_type, "embedding_size": self.embedding_size,
            "window_s": 1.0, "hop_s": self.spec.hop_s, "center": True, "end": "zero-padded to whole hops",
            "stft": "periodic hann, n_fft 2048, hop 242, 'same' zero padding 982+982, 199 frames",
            "mel": "speclayer.mel_basis from the checkpoint (256 bands)",
            "log": "10*log10(max(sqrt(mel power), 1e-10)) - window max, floor -80 dB",
            "channels": self.channels,
            "channels_rule": "average of the channels" if self.channels == "mono" else
            "stable-audio-metrics openl3_fd channels=2: peak -1 dBFS, [L | R] per window, mono as L = R",
        }

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        """Rows ``[n, C, 48000]``: C = 1 (mono) or 2 (L, R) windows of the same instant."""
        signals = split_channels(wave, self.channels)
        if len(signals) == 2 and signals[0] is signals[1]:  # mono as L = R: one padded copy, seen twice
            rows = window_rows(signals[0], self.hop)
            return np.broadcast_to(rows[:, None], (len(rows), 2, WINDOW))
        return np.swapaxes(window_rows(np.stack(signals), self.hop), 0, 1)

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, None]:
        inputs = np.asarray(inputs, dtype=np.float32)
        n, n_channels = inputs.shape[:2]
        flat = inputs.reshape(n * n_channels, WINDOW)
        # L = R (a mono file under "stable-audio") is embedded once and copied: same numbers, half the work.
        same = np.zeros(n, dtype=bool) if n_channels == 1 else np.all(inputs[:, 0] == inputs[:, 1], axis=1)
        keep = np.ones((n, n_channels), dtype=bool)
        keep[same, 1:] = False
        unique = np.flatnonzero(keep.reshape(-1))
        out = np.zeros((n * n_channels, self.embedding_size), dtype=np.float32)
        done = 0
        with torch.inference_mode():
            for chunk, n_real in fixed_size_chunks(flat[unique], self.chunk):
                windows = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.torch_device)
                emb = self.network(log_mel_windows(windows, self.mel_basis))
                out[unique[done:done + n_real]] = emb[:n_real].float().cpu().numpy()
                done += n_real
        out = out.reshape(n, n_channels, self.embedding_size)
        out[same, 1:] = out[same, :1]
        return out.reshape(n, n_channels * self.embedding_size), None


def _variant(content_type: str, size: int, channels: str) -> type[OpenL3Embedding]:
    model_id = f"openl3-mel256-{content_type}-{size}" + ("-stable-audio" if channels == "stable-audio" else "")
    attrs = {"spec": SPECS[model_id], "content_type": content_type, "embedding_size": size, "channels": channels,
             "input_channels": 2 if channels == "stable-audio" else 1,
             # 2: the worker decodes both channels (before, it downmixed first: [M | M])
             "frontend_version": "2" if channels == "stable-audio" else "1",
             "__doc__": f"OpenL3 mel256 {content_type} {size}-d, channels {channels!r} ({model_id})."}
    return type(f"OpenL3{content_type.title()}{size}{'StableAudio' if channels != 'mono' else ''}",
                (OpenL3Embedding,), attrs)


OpenL3Music512 = _variant("music", 512, "mono")
OpenL3Music6144 = _variant("music", 6144, "mono")
OpenL3Env512 = _variant("env", 512, "mono")
OpenL3Env6144 = _variant("env", 6144, "mono")
OpenL3Music512StableAudio = _variant("music", 512, "stable-audio")
OpenL3Env512StableAudio = _variant("env", 512, "stable-audio")
