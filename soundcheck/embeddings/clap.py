"""`clap-laion-*`: LAION-CLAP audio embeddings (Wu, Chen et al., ICASSP 2023) and its text embeddings.

Checkpoints as published by LAION (``{"state_dict": {"module.audio_branch...": ...}}``, laion_clap 1.1.7's CLAP
layout); the network is our own (:mod:`clap_htsat`, :mod:`clap_text`). Every embedding is laion_clap's
``get_audio_embedding``: the HTS-AT token mean through ``audio_projection`` (Linear, ReLU, Linear), L2-normalised,
512-d. The waveform is first quantised to int16 and back (x 32767, truncation), as laion_clap and fadtk do.

Framing, deterministic everywhere (laion_clap itself crops at random: ``rand_trunc`` without fusion, random chunk
starts with fusion):

* ``clap-laion-audio`` / ``clap-laion-music`` (no fusion) follow fadtk's ``CLAPLaionModel``: a 10 s window
  (480000 samples) starts at every whole second of the file (0 s, 1 s, ... while inside the file), each
  zero-padded at the end to 10 s; one 512-d embedding per window. An empty file gives one silent window.
* ``clap-laion-audio-fusion`` follows stable-audio-metrics' ``clap_score``: the file is peak-normalised to
  -1 dBFS, quantised, and gives one embedding through laion_clap's fusion path: a file of at most 10 s is
  repeated to fill 10 s ("repeatpad": whole repeats, then zeros) and its mel is used four times; a longer file
  gives the mel of the whole file shrunk to 1001 frames (bilinear, antialiased, as torchvision's Resize) plus three
  1001-frame chunks, one from each third of the possible starts. laion_clap draws each start at random in its
  third; we take the middle start of each third (``ranges[i][(len - 1) // 2]``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundcheck.embeddings.base import EmbeddingModel, FoundWeight
from soundcheck.embeddings.clap_htsat import HTSAT
from soundcheck.embeddings.clap_text import RobertaText, RobertaTokens
from soundcheck.embeddings.registry import CLAP_MERGES, CLAP_VOCAB, SPECS, clap_weights, find_weight, load_weight_file

SAMPLE_RATE = 48000
CLIP = 10 * SAMPLE_RATE  # 480000 samples
N_FFT, HOP, N_MELS, FMIN, FMAX = 1024, 480, 64, 50.0, 14000.0
CHUNK_FRAMES = CLIP // HOP + 1  # 1001
AMIN = 1e-10
PEAK_DBFS = -1.0
JOINT = 512
_IGNORED = ("tscam_conv.", "head.")  # the HTS-AT class head: not part of the CLAP embedding
_BUFFERS = (".relative_position_index", ".attn_mask")  # derived from the geometry, recomputed here
ROWS_CPU, ROWS_CUDA = 1, 16
TEXT_ROWS = 16


def quantise(wave: np.ndarray) -> np.ndarray:
    """laion_clap's ``int16_to_float32(float32_to_int16(x))``: clip to [-1, 1], x 32767, truncate, / 32767."""
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / np.float32(32767.0)


def fadtk_windows(wave: np.ndarray) -> np.ndarray:
    """10 s windows ``[n, 480000]`` starting at every whole second of ``wave``, zero-padded (fadtk's chunks).

    A read-only strided view of one padded copy: windows overlap 9/10, so copies would hold 10x the file."""
    n = max(1, -(-len(wave) // SAMPLE_RATE))
    padded = np.zeros((n - 1) * SAMPLE_RATE + CLIP, dtype=np.float32)
    padded[:len(wave)] = wave
    return np.lib.stride_tricks.sliding_window_view(padded, CLIP)[::SAMPLE_RATE]


def repeat_pad(wave: np.ndarray) -> np.ndarray:
    """laion_clap's "repeatpad" of a file of at most 10 s: ``int(480000 / n)`` whole repeats, then zeros."""
    out = np.zeros(CLIP, dtype=np.float32)
    if len(wave):
        tiled = np.tile(wave, CLIP // len(wave))
        out[:len(tiled)] = tiled
    return out


def stft_power(wave: torch.Tensor) -> torch.Tensor:
    """|STFT|^2 ``[..., frames, 513]`` float64: periodic Hann 1024, hop 480, centred with reflect padding."""
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=wave.device)
    spec = torch.stft(wave.double(), N_FFT, HOP, window=window, center=True, pad_mode="reflect",
                      return_complex=True)
    return spec.abs().square().transpose(-1, -2)


def htk_mel_matrix() -> torch.Tensor:
    """torchaudio's ``melscale_fbanks(513, 50, 14000, 64, 48000, norm=None, mel_scale="htk")`` ``[513, 64]``:
    the mel of laion_clap's fusion path (``get_mel``); triangles linear in Hz between HTK-mel-spaced points."""
    freqs = torch.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1, dtype=torch.float64)
    mel = torch.linspace(2595.0 * np.log10(1.0 + FMIN / 700.0), 2595.0 * np.log10(1.0 + FMAX / 700.0), N_MELS + 2,
                         dtype=torch.float64)
    points = 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    diff = points[1:] - points[:-1]
    slopes = points[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def log_mel(power: torch.Tensor, mel_matrix: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp(power @ mel_matrix, min=AMIN))


def long_log_mel(signal: torch.Tensor, mel_matrix: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """``log_mel(stft_power(signal))`` ``[frames, 64]`` of a whole file, ``block`` frames at a time: the float64
    spectrum of 10 minutes would otherwise take ~0.7 GB."""
    padded = F.pad(signal.float()[None, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[0, 0]
    frames = padded.unfold(0, N_FFT, HOP)  # a view: [1 + len // 480, 1024]
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    out = torch.empty(len(frames), N_MELS, dtype=torch.float64)
    for start in range(0, len(frames), block):
        spec = torch.fft.rfft(frames[start:start + block].double() * window, dim=-1)
        out[start:start + block] = log_mel(spec.real.square() + spec.imag.square(), mel_matrix)
    return out


def dft_check(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pop torchlibrosa's STFT kernels and mel matrix off the audio branch; the kernels must be the periodic-Hann
    DFT we compute by FFT (float32 rounding allowed); return the checkpoint's mel matrix ``[513, 64]``."""
    keys = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
            "logmel_extractor.melW")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"not a laion_clap HTS-AT checkpoint: audio_branch lacks {', '.join(missing)}")
    real, imag, mel = (state.pop(k) for k in keys)
    n = np.arange(N_FFT)
    phase = 2.0 * np.pi * np.outer(np.arange(N_FFT // 2 + 1), n) / N_FFT
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)
    for got, want in ((real, np.cos(phase) * window), (imag, -np.sin(phase) * window)):
        got = got.double().reshape(N_FFT // 2 + 1, -1).numpy()
        if got.shape != want.shape or np.abs(got - want).max() > 1e-5:
            raise ValueError("the checkpoint's STFT kernels are not the periodic-Hann DFT of n_fft 1024")
    if tuple(mel.shape) != (N_FFT // 2 + 1, N_MELS):
        raise ValueError(f"logmel_extractor.melW has shape {tuple(mel.shape)}, expected (513, 64)")
    return mel.double()


def projection(state: dict[str, torch.Tensor], prefix: str) -> nn.Sequential:
    first = state[f"{prefix}.0.weight"]
    proj = nn.Sequential(nn.Linear(first.shape[1], JOINT), nn.ReLU(), nn.Linear(JOINT, JOINT))
    proj.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
    return proj


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The CLAP state dict of a published checkpoint: unwrapped from ``state_dict``, without ``module.``."""
    ckpt = load_weight_file(path)
    state = ckpt["state_dict"] if isinstance(ckpt, dict) and "state_dict" in ckpt else ckpt
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def branch(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class ClapEmbedding(EmbeddingModel):
    """LAION-CLAP audio embedding (512-d, L2-normalised) and, on demand, text embeddings of captions."""

    size = "tiny"
    fusion = False
    frontend_version = "1"
    pads_batches = True

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        super().__init__(model_dir, device)
        self.torch_device = torch.device(device)
        found = find_weight(self.model_dir, clap_weights(self.spec.id))
        self.weights = [found]
        self.state = read_checkpoint(Path(found.path))
        audio = branch(self.state, "audio_branch.")
        self.mel_matrix = dft_check(audio).to(self.torch_device)
        self.fusion_mel = htk_mel_matrix().to(self.torch_device)
        audio = {k: v for k, v in audio.items() if not k.startswith(_IGNORED) and not k.endswith(_BUFFERS)}
        self.network = HTSAT(self.size, self.fusion)
        self.network.load_state_dict(audio, strict=True)
        self.network = self.network.eval().to(self.torch_device)
        self.audio_projection = projection(self.state, "audio_projection").eval().to(self.torch_device)
        # only the text side is still needed from the checkpoint (loaded on first use): drop the rest now
        self.state = {k: v for k, v in self.state.items() if k.startswith(("text_branch.", "text_projection."))}
        self._text: tuple[RobertaTokens, nn.Module, nn.Module, list[FoundWeight]] | None = None

    @property
    def default_batch_rows(self) -> int:
        return ROWS_CUDA if self.torch_device.type == "cuda" else ROWS_CPU

    def frontend_params(self) -> dict[str, Any]:
        common = {"quantise": "int16 round trip (x 32767)", "stft": "periodic hann 1024, hop 480, centred, reflect",
                  "clip_s": 10.0, "embedding": "HTS-AT token mean -> audio_projection -> L2 normalised"}
        if not self.fusion:
            return {**common, "mel": "checkpoint logmel_extractor.melW (64 bands, 50-14000 Hz), 10 log10",
                    "windows": "fadtk: a 10 s window at every whole second, zero-padded", "fusion": False}
        return {**common, "mel": "HTK, unnormalised (torchaudio MelSpectrogram), 64 bands 50-14000 Hz, 10 log10",
                "peak_dbfs": PEAK_DBFS, "fusion": True,
                "windows": "one per file: <= 10 s repeatpad; longer: aff_2d fusion, global shrink + 3 chunks at "
                           "the middle start of each third (laion_clap draws them at random)"}

    # --- audio ---
    def frontend(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:  # [frames, channels]: averaged, as librosa.load(mono=True) in the peers
            wave = wave.astype(np.float64).mean(axis=1).astype(np.float32)
        if not self.fusion:
            return fadtk_windows(quantise(wave))
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        if peak > 0.0:  # pyloudnorm.normalize.peak(audio, -1.0), as stable-audio-metrics' clap_score does
            wave = (wave.astype(np.float64) * (10.0 ** (PEAK_DBFS / 20.0) / peak)).astype(np.float32)
        return self.fusion_row(quantise(wave))[None]

    def fusion_row(self, wave: np.ndarray) -> np.ndarray:
        """One packed row: the four 1001 x 64 mels of laion_clap's ``mel_fusion``, then the ``longer`` flag."""
        longer = len(wave) > CLIP
        signal = torch.from_numpy(wave if longer else repeat_pad(wave))
        mel = long_log_mel(signal, self.fusion_mel.cpu())  # [frames, 64]
        if not longer or len(mel) == CHUNK_FRAMES:
            stack, longer = mel[None].expand(4, -1, -1), False
        else:
            ranges = np.array_split(np.arange(len(mel) - CHUNK_FRAMES + 1), 3)
            starts = [int(r[(len(r) - 1) // 2]) if len(r) else 0 for r in ranges]
            shrink = F.interpolate(mel[None, None].float(), size=(CHUNK_FRAMES, N_MELS), mode="bilinear",
                                   align_corners=False, antialias=True)[0, 0].double()
            stack = torch.stack([shrink] + [mel[s:s + CHUNK_FRAMES] for s in starts])
        row = np.zeros(4 * CHUNK_FRAMES * N_MELS + 1, dtype=np.float32)
        row[:-1] = stack.float().numpy().reshape(-1)
        row[-1] = float(longer)
        return row

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, None]:
        rows = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.torch_device)
        with torch.inference_mode():
            if self.fusion:
                mel = rows[:, :-1].reshape(-1, 4, CHUNK_FRAMES, N_MELS)
                longer = rows[:, -1] > 0.5
            else:
                mel = log_mel(stft_power(rows), self.mel_matrix)[:, None].float()
                longer = None
            emb = self.audio_projection(self.network(mel.float(), longer))
            emb = F.normalize(emb, dim=-1)
        return emb.cpu().numpy(), None

    # --- text ---
    def text_parts(self) -> tuple[RobertaTokens, nn.Module, nn.Module, list[FoundWeight]]:
        """Tokenizer, RoBERTa and projection, loaded once on first use (audio-only jobs never pay for them)."""
        if self._text is None:
            from soundcheck.embeddings.registry import ModelUnavailable

            if importlib.util.find_spec("tokenizers") is None:
                raise ModelUnavailable("CLAP text embeddings need the Python package `tokenizers` (pip install it)")
            files = [find_weight(self.model_dir, w) for w in (CLAP_VOCAB, CLAP_MERGES)]
            for fw in files:
                if not fw.present:
                    raise ModelUnavailable(f"CLAP text embeddings need the roberta-base tokenizer file {fw.name!r}: "
                                           f"put it at {fw.path} (or run `soundcheck models pull {self.spec.id}`)")
            tokens = RobertaTokens(Path(files[0].path), Path(files[1].path))
            text_state = branch(self.state, "text_branch.")
            text_state.pop("embeddings.position_ids", None)  # a buffer older transformers saved; recomputed here
            words = text_state["embeddings.word_embeddings.weight"]
            positions = text_state["embeddings.position_embeddings.weight"]
            encoder = RobertaText(words.shape[0], positions.shape[0], tokens.pad_id)
            encoder.load_state_dict(text_state, strict=True)
            proj = projection(self.state, "text_projection")
            self._text = (tokens, encoder.eval().to(self.torch_device), proj.eval().to(self.torch_device), files)
        return self._text

    def text_provenance(self) -> dict[str, Any]:
        files = self.text_parts()[3]
        return {"model": self.spec.id, "text": "roberta-base tokenizer (77 tokens) -> RoBERTa pooler -> "
                "text_projection -> L2 normalised",
                "weights": [{"name": w.name, "sha256": w.sha256} for w in self.weights + files]}

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised 512-d text embeddings ``[n, 512]``; passes of exactly 16 texts (padded with "")."""
        tokens, encoder, proj, _ = self.text_parts()
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), JOINT), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_ROWS):
                chunk = texts[start:start + TEXT_ROWS]
                n_real = len(chunk)
                ids, mask = tokens(chunk + [""] * (TEXT_ROWS - n_real))
                pooled = encoder(torch.from_numpy(ids).to(self.torch_device),
                                 torch.from_numpy(mask).to(self.torch_device))
                out[start:start + n_real] = F.normalize(proj(pooled), dim=-1)[:n_real].cpu().numpy()
        return out


def _variant(model_id: str, size: str, fusion: bool) -> type[ClapEmbedding]:
    attrs = {"spec": SPECS[model_id], "size": size, "fusion": fusion,
             "__doc__": f"LAION-CLAP HTSAT-{size}, fusion {fusion} ({model_id})."}
    return type("Clap" + "".join(p.title() for p in model_id.split("-")[2:]), (ClapEmbedding,), attrs)


ClapAudio = _variant("clap-laion-audio", "tiny", False)
ClapMusic = _variant("clap-laion-music", "base", False)
ClapAudioFusion = _variant("clap-laion-audio-fusion", "tiny", True)
