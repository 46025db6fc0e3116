"""`passt*`: PaSST-S (Koutini et al. 2022), AudioSet ``passt_s_swa_p16_128_ap476``, hear21passt 0.0.26 layout.

The network is ours; its state-dict keys are those of hear21passt's ``PaSST`` net (159 entries: ``cls_token``,
``dist_token``, ``new_pos_embed``, ``freq_new_pos_embed`` [1, 768, 12, 1], ``time_new_pos_embed`` [1, 768, 1, 99],
``patch_embed.proj``, ``blocks.0..11``, ``norm``, ``head.0`` (LayerNorm), ``head.1`` (527 logits), ``head_dist``),
so the released ``passt-s-f128-p16-s10-ap.476-swa.pt`` loads unchanged.

Front end (hear21passt's ``AugmentMelSTFT`` in eval mode, no augmentation): 32 kHz; pre-emphasis
``y[n] = x[n+1] - 0.97 x[n]`` (one sample shorter); |STFT|² with a symmetric 800-sample Hann window centred in
n_fft 1024, hop 320, centre frames with reflect padding; Kaldi mel banks (128 bands, 0-15000 Hz, Kaldi's
1127 ln(1 + f/700) scale, the Nyquist bin weighted 0); ln(mel + 1e-5); (x + 4.5) / 5. Computed in float64.

Network: 16x16 patches with stride 10 (12 frequency x up to 99 time patches for 10 s); plus the frequency and
the (cut) time position embeddings; class and distillation tokens; 12 pre-norm transformer blocks (768-d, 12
heads); final LayerNorm. The **embedding** is the mean of the two tokens (768-d: hear21passt's ``embed_only``;
its default HEAR embedding is [527 logits | these 768], 1295-d). The **class outputs** are the 527 logits of
``head`` turned into a softmax distribution per window (what every PaSST KL uses; see docs/models.md).

Framing (one input row per window, ``[valid_samples, samples padded to 10 s]``, rows of equal length share a pass):
- ``passt``: as hear21passt's ``get_scene_embeddings``: a file of at most 10 s is one window, used whole; a longer
  one is reflect-padded by 5 s on both sides and cut into 10 s windows every 2.5 s (its scene embedding is the
  mean of these windows' embeddings).
- ``passt-stable-audio``: as stable-audio-metrics' ``passt_kld``: the file is peak-normalised to -1 dBFS, 10 s
  windows start every 5 s (``range(0, max(5 s, n - 5 s), 5 s)``); a window shorter than 10 s is zero-padded to
  10 s when it holds more than 1.5 s, else used as it is.
- ``passt-audiocraft``: as audiocraft's ``PasstKLDivergenceMetric``: consecutive 10 s segments, not padded;
  segments of at most 0.15 s are dropped.
A window shorter than the network accepts (16 STFT frames: 4801 samples) is zero-padded to that length; the
references fail on such input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.embeddings.registry import PASST_WEIGHTS, SPECS, find_weight, load_weight_file

SAMPLE_RATE = 32000
WINDOW = 10 * SAMPLE_RATE
N_FFT, HOP, WIN_LENGTH = 1024, 320, 800
N_MELS, FMIN, FMAX = 128, 0.0, 15000.0  # hear21passt: fmax = sr / 2 - fmax_aug_range / 2
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
MIN_SAMPLES = (16 - 1) * HOP + 1  # 16 frames: one 16x16 patch
EMBED_DIM, DEPTH, HEADS, N_CLASSES = 768, 12, 12, 527
GRID = (12, 99)  # frequency x time patches of a 10 s window
PEAK_DBFS = -1.0
CHUNK_CPU = 1
CHUNK_CUDA = 16


def kaldi_mel_banks(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                    fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Kaldi's triangular mel filters ``[n_mels, n_fft // 2 + 1]`` float64 (Nyquist column 0, as hear21passt)."""
    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    bins = mel(np.arange(n_fft // 2) * sample_rate / n_fft)
    low, high = mel(fmin), mel(fmax)
    delta = (high - low) / (n_mels + 1)
    left = low + delta * np.arange(n_mels)[:, None]
    up = (bins - left) / delta
    down = (left + 2 * delta - bins) / delta
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.pad(weights, ((0, 0), (0, 1)))


def log_mel(waves: torch.Tensor, mel_basis: torch.Tensor) -> torch.Tensor:
    """PaSST's normalised log-mel ``[b, 128, frames]`` float32 of waveforms ``[b, samples]``, float64 inside."""
    x = waves.double()
    x = x[:, 1:] - PREEMPHASIS * x[:, :-1]
    x = F.pad(x[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[:, 0]
    frames = x.unfold(-1, N_FFT, HOP)  # [b, frames, 1024]
    window = torch.zeros(N_FFT, dtype=torch.float64, device=x.device)
    lead = (N_FFT - WIN_LENGTH) // 2
    window[lead:lead + WIN_LENGTH] = torch.hann_window(WIN_LENGTH, periodic=False, dtype=torch.float64,
                                                       device=x.device)
    spectrum = torch.fft.rfft(frames * window, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()  # [b, frames, 513]
    mel = torch.log(power @ mel_basis.T + LOG_OFFSET)
    return ((mel + 4.5) / 5.0).transpose(1, 2).float()


class PatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, EMBED_DIM, kernel_size=16, stride=10)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(EMBED_DIM, 4 * EMBED_DIM)
        self.fc2 = nn.Linear(4 * EMBED_DIM, EMBED_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(EMBED_DIM, 3 * EMBED_DIM)
        self.proj = nn.Linear(EMBED_DIM, EMBED_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, HEADS, EMBED_DIM // HEADS).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(64)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, EMBED_DIM))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(EMBED_DIM, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(EMBED_DIM, eps=1e-6)
        self.mlp = Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PasstNetwork(nn.Module):
    """Normalised log-mel ``[b, 1, 128, frames]`` → (embedding ``[b, 768]``, logits ``[b, 527]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, EMBED_DIM))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, EMBED_DIM, GRID[0], 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, EMBED_DIM, 1, GRID[1]))
        self.patch_embed = PatchEmbed()
        self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(EMBED_DIM, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(EMBED_DIM), nn.Linear(EMBED_DIM, N_CLASSES))
        self.head_dist = nn.Linear(EMBED_DIM, N_CLASSES)  # distillation head: trained, unused at inference

    def forward(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed.proj(spec)  # [b, 768, 12, t]
        t = x.shape[-1]
        if t > GRID[1]:
            raise ValueError(f"PaSST takes at most 10 s ({GRID[1]} time patches), got {t} patches")
        x = x + self.time_new_pos_embed[..., :t] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)  # frequency-major sequence of patches
        b = x.shape[0]
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed
        x = self.norm(self.blocks(torch.cat([tokens.expand(b, -1, -1), x], dim=1)))
        embedding = (x[:, 0] + x[:, 1]) / 2
        return embedding, self.head(embedding)


def _pad_min(piece: np.ndarray) -> np.ndarray:
    return np.pad(piece, (0, max(0, MIN_SAMPLES - len(piece))))


def windows_hear(wave: np.ndarray) -> list[np.ndarray]:
    """hear21passt ``get_scene_embeddings``: whole file up to 10 s, else 10 s every 2.5 s after 5 s reflect pads."""
    if len(wave) <= WINDOW:
        return [_pad_min(wave)]
    padded = np.pad(wave, (WINDOW // 2, WINDOW // 2), mode="reflect")
    hop = WINDOW // 4
    return [padded[s:s + WINDOW] for s in range(0, len(padded) - WINDOW + 1, hop)]


def peak_normalise(wave: np.ndarray, dbfs: float = PEAK_DBFS) -> np.ndarray:
    """pyloudnorm's ``normalize.peak``: scale so that max |x| is ``dbfs``; a silent file stays silent."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        return wave
    return (wave.astype(np.float64) * (10.0 ** (dbfs / 20.0) / peak)).astype(np.float32)


def windows_stable_audio(wave: np.ndarray) -> list[np.ndarray]:
    """stable-audio-metrics ``return_probabilities`` (window 10 s, overlap 5 s) after peak normalisation."""
    wave = peak_normalise(wave)
    step = WINDOW // 2
    out = []
    for start in range(0, max(step, len(wave) - step), step):
        piece = wave[start:start + WINDOW]
        if len(piece) < WINDOW and len(piece) > int(WINDOW * 0.15):
            piece = np.pad(piece, (0, WINDOW - len(piece)))
        out.append(_pad_min(piece))
    return out


def windows_audiocraft(wave: np.ndarray) -> list[np.ndarray]:
    """audiocraft ``_process_audio``: consecutive 10 s segments, unpadded, those of <= 0.15 s dropped."""
    pieces = [wave[s:s + WINDOW] for s in range(0, len(wave), WINDOW)]
    kept = [p for p in pieces if len(p) > int(0.15 * SAMPLE_RATE)]
    return kept or [_pad_min(wave)]


FRAMINGS = {"hear": windows_hear, "stable-audio": windows_stable_audio, "audiocraft": windows_audiocraft}
FRAMING_RULES = {
    "hear": "hear21passt get_scene_embeddings: <= 10 s whole; else reflect-pad 5 s, 10 s windows every 2.5 s",
    "stable-audio": "stable-audio-metrics passt_kld: peak -1 dBFS; 10 s windows every 5 s; a short window "
                    "zero-padded to 10 s when > 1.5 s",
    "audiocraft": "audiocraft PasstKLDivergenceMetric: consecutive 10 s segments, unpadded, <= 0.15 s dropped",
}


def window_rows(pieces: list[np.ndarray]) -> np.ndarray:
    rows = np.zeros((len(pieces), 1 + WINDOW), dtype=np.float32)
    for row, piece in zip(rows, pieces, strict=True):
        row[0] = len(piece)
        row[1:1 + len(piece)] = piece
    return rows


def strip_checkpoint(state: dict) -> dict[str, torch.Tensor]:
    """The released file is the net's state dict (possibly under ``model``); old files stored the patch
    projection flattened, which hear21passt reshapes the same way."""
    state = dict(state.get("model", state))
    weight = state.get("patch_embed.proj.weight")
    if weight is not None and weight.dim() < 4:
        state["patch_embed.proj.weight"] = weight.reshape(EMBED_DIM, 1, 16, 16)
    return state


#: Loaded networks by (file path, sha256, device); read-only at inference, so the passt ids can share one.
_NETWORKS: dict[tuple[str, str, str], PasstNetwork] = {}


class PasstEmbedding(EmbeddingModel):
    """PaSST-S AudioSet: 768-d embedding and softmax over 527 classes per window (see module doc)."""

    spec = SPECS["passt"]
    framing = "hear"
    frontend_version = "1"
    pads_batches = True  # torch kernels are chosen by batch shape

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        super().__init__(model_dir, device)
        self.torch_device = torch.device(device)
        self.chunk = CHUNK_CUDA if self.torch_device.type == "cuda" else CHUNK_CPU
        found = find_weight(self.model_dir, PASST_WEIGHTS)
        self.weights = [found]
        key = (found.path, found.sha256 or "", str(self.torch_device))
        if key not in _NETWORKS:  # the three framings share one checkpoint: one network in memory (~350 MB)
            network = PasstNetwork()
            network.load_state_dict(strip_checkpoint(load_weight_file(Path(found.path))), strict=True)
            _NETWORKS[key] = network.to(self.torch_device).eval()
        self.network = _NETWORKS[key]
        self.mel_basis = torch.from_numpy(kaldi_mel_banks()).to(self.torch_device)

    @property
    def class_indices(self) -> list[int]:
        return list(range(N_CLASSES))

    @property
    def default_batch_rows(self) -> int:
        return self.chunk

    def frontend_params(self) -> dict[str, Any]:
        return {
            "preemphasis": PREEMPHASIS, "stft": "symmetric hann 800 in n_fft 1024, hop 320, centre, reflect pad",
            "mel": "kaldi mel banks, 128 bands, 0-15000 Hz", "log": "(ln(mel + 1e-5) + 4.5) / 5",
            "framing": self.framing, "framing_rule": FRAMING_RULES[self.framing],
            "embedding": "mean of class and distillation tokens (768-d)",
            "class_outputs": "softmax over the 527 head logits, per window",
        }

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        return window_rows(FRAMINGS[self.framing](np.asarray(wave, dtype=np.float32)))

    def input_groups(self, inputs: np.ndarray) -> np.ndarray:
        return inputs[:, 0].astype(np.int64)

    def network_outputs(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings ``[b, 768]``, logits ``[b, 527]``) of rows of one length (zero rows: length 0)."""
        lengths = inputs[:, 0].astype(np.int64)
        emb = np.zeros((len(inputs), EMBED_DIM), dtype=np.float32)
        logits = np.zeros((len(inputs), N_CLASSES), dtype=np.float32)
        real = lengths > 0
        length = int(lengths[real].max()) if real.any() else 0
        if length and np.any(lengths[real] != length):
            raise ValueError("passt forward got rows of different lengths; group them with input_groups")
        if length:
            waves = torch.from_numpy(np.ascontiguousarray(inputs[:, 1:1 + length])).to(self.torch_device)
            with torch.inference_mode():
                e, lg = self.network(log_mel(waves, self.mel_basis)[:, None])
            emb[real] = e.float().cpu().numpy()[real]
            logits[real] = lg.float().cpu().numpy()[real]
        return emb, logits

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, logits = self.network_outputs(inputs)
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        return emb, probs.astype(np.float32)


class PasstStableAudio(PasstEmbedding):
    """PaSST with stable-audio-metrics' windows (peak -1 dBFS, 10 s every 5 s)."""

    spec = SPECS["passt-stable-audio"]
    framing = "stable-audio"


class PasstAudiocraft(PasstEmbedding):
    """PaSST with audiocraft's segments (consecutive 10 s, unpadded)."""

    spec = SPECS["passt-audiocraft"]
    framing = "audiocraft"

