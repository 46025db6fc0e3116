"""`encodec-24k`: EnCodec 24 kHz encoder latents (Defossez et al. 2023) as fadtk's ``encodec-emb`` defines them.

fadtk's ``EncodecEmbModel('24k')`` runs ``EncodecModel.encoder`` on the whole mono 24 kHz file (the 24 kHz model
has no segmenting), truncated to its first 3 minutes, and takes the continuous output before the residual vector
quantiser: 128 values per frame, one frame per 320 samples (75 Hz), ``ceil(samples / 320)`` frames.

The encoder is ours, with the parameter names of encodec 0.1.1's ``SEANetEncoder`` under ``encoder.model.*`` in
``encodec_24khz-d7cc33bc.th`` (the decoder and quantiser entries of that file are not used). The weight norm of
each conv (``weight_g``, ``weight_v``) is folded at load time into a plain weight ``g * v / ||v||``. Layers: a
causal conv 1 -> 32 (kernel 7); for strides 2, 4, 5, 8: a residual block (ELU, conv k3 to half the channels, ELU,
conv k1 back, plus a k1 conv shortcut), ELU and a strided conv (kernel 2 x stride) doubling the channels; a
two-layer LSTM (512) with a skip connection; ELU and a conv 512 -> 128 (kernel 7). Every conv is causal: it is
reflect-padded by ``(k - 1) * dilation - (stride - 1)`` on the left, and on the right by what makes the last
window full (encodec's ``get_extra_padding_for_conv1d``).

The LSTM runs over the whole file, so a frame depends on everything before it: a file is one pass
(:attr:`whole_file`), never cut into rows, and its frames do not depend on which files come with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundcheck.embeddings.base import Embedded, EmbeddingModel
from soundcheck.embeddings.registry import ENCODEC_24K_WEIGHTS, SPECS, find_weight, load_weight_file

SAMPLE_RATE = 24000
HOP = 320
MAX_SECONDS = 180  # fadtk cuts files after 3 minutes
STRIDES = (2, 4, 5, 8)
N_FILTERS = 32
DIM = 128


def fold_weight_norm(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """``g * v / ||v||`` with the norm over all but the output dimension (torch ``weight_norm(dim=0)``)."""
    g, v = state[prefix + "weight_g"].double(), state[prefix + "weight_v"].double()
    return (g * v / v.flatten(1).norm(dim=1)[:, None, None]).float()


class CausalConv(nn.Module):
    """encodec's causal ``SConv1d`` with its weight norm folded."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias.float(), requires_grad=False)
        self.stride, self.dilation = stride, dilation
        self.kernel = weight.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = (self.kernel - 1) * self.dilation - (self.stride - 1)
        length = x.shape[-1]
        frames = (length - self.kernel + total) / self.stride + 1
        extra = (math.ceil(frames) - 1) * self.stride + (self.kernel - total) - length
        x = reflect_pad(x, total, extra)
        return F.conv1d(x, self.weight, self.bias, stride=self.stride, dilation=self.dilation)


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding that also works on inputs no longer than the padding: zeros are appended first, and the
    same number removed after (encodec's ``pad1d``)."""
    longest = max(left, right)
    extra = longest - x.shape[-1] + 1 if x.shape[-1] <= longest else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., :padded.shape[-1] - extra]


class ResidualBlock(nn.Module):
    def __init__(self, convs: list[CausalConv], shortcut: CausalConv) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.convs:
            y = conv(F.elu(y))
        return self.shortcut(x) + y


class Encodec24kEncoder(nn.Module):
    """Waveform ``[b, 1, samples]`` → latents ``[b, 128, ceil(samples / 320)]``, from an encodec state dict."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()

        def conv(index: str, stride: int = 1, dilation: int = 1) -> CausalConv:
            prefix = f"encoder.model.{index}.conv.conv."
            return CausalConv(fold_weight_norm(state, prefix), state[prefix + "bias"], stride, dilation)

        self.first = conv("0")
        self.stages = nn.ModuleList()
        for i, stride in enumerate(STRIDES):
            block = 1 + 3 * i
            residual = ResidualBlock([conv(f"{block}.block.1"), conv(f"{block}.block.3")], conv(f"{block}.shortcut"))
            self.stages.append(nn.ModuleList([residual, conv(str(block + 2), stride=stride)]))
        channels = N_FILTERS * 2 ** len(STRIDES)
        self.lstm = nn.LSTM(channels, channels, num_layers=2)
        lstm_state = {k.removeprefix("encoder.model.13.lstm."): v for k, v in state.items()
                      if k.startswith("encoder.model.13.lstm.")}
        self.lstm.load_state_dict(lstm_state, strict=True)
        self.last = conv("15")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.first(wave)
        for residual, down in self.stages:
            x = down(F.elu(residual(x)))
        seq = x.permute(2, 0, 1)  # [time, batch, channels]
        y, _ = self.lstm(seq)
        x = (y + seq).permute(1, 2, 0)
        return self.last(F.elu(x))


def expected_encoder_keys() -> set[str]:
    """The ``encoder.*`` entries of encodec 0.1.1's 24 kHz model (62), for a precise error on another file."""
    keys = set()
    convs = ["0", "15"] + [f"{1 + 3 * i}.{part}" for i in range(4) for part in ("block.1", "block.3", "shortcut")]
    convs += [str(3 + 3 * i) for i in range(4)]
    for c in convs:
        keys |= {f"encoder.model.{c}.conv.conv.{n}" for n in ("weight_g", "weight_v", "bias")}
    for layer in (0, 1):
        keys |= {f"encoder.model.13.lstm.{n}_l{layer}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    return keys


class Encodec24kEmbedding(EmbeddingModel):
    """EnCodec 24 kHz encoder latents: 128-d frames at 75 Hz over the whole file (first 3 minutes)."""

    spec = SPECS["encodec-24k"]
    frontend_version = "1"
    whole_file = True

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        super().__init__(model_dir, device)
        self.torch_device = torch.device(device)
        found = find_weight(self.model_dir, ENCODEC_24K_WEIGHTS)
        self.weights = [found]
        state = load_weight_file(Path(found.path))
        missing = sorted(expected_encoder_keys() - set(state))
        if missing:
            raise ValueError(f"not an encodec 24 kHz checkpoint: missing {', '.join(missing[:3])} "
                             f"({len(missing)} encoder entries missing)")
        self.encoder = Encodec24kEncoder(state).to(self.torch_device).eval()

    def frontend_params(self) -> dict[str, Any]:
        return {"input": "mono 24 kHz, whole file, first 180 s (fadtk)", "layer": "encoder output before the RVQ",
                "frame_rate_hz": SAMPLE_RATE / HOP, "padding": "causal reflect padding of each conv (encodec)",
                "weight_norm": "folded at load"}

    def embed_whole(self, wave: np.ndarray) -> Embedded:
        wave = np.asarray(wave, dtype=np.float32)[:MAX_SECONDS * SAMPLE_RATE]
        if len(wave) == 0:
            wave = np.zeros(1, dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(wave)).to(self.torch_device)[None, None]
        with torch.inference_mode():
            latents = self.encoder(x)[0].T  # [frames, 128]
        return Embedded(latents.float().cpu().numpy())

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError("encodec-24k embeds whole files (embed_whole)")

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, None]:
        raise NotImplementedError("encodec-24k embeds whole files (embed_whole)")
