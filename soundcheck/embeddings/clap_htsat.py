"""HTS-AT (Chen et al., ICASSP 2022), the audio encoder of LAION-CLAP, with laion_clap 1.1.7's parameter names.

Our own PyTorch module: a Swin transformer over a log-mel "image" (1001 frames x 64 bands, bicubically
stretched to 1024 frames and folded into 256 x 256: four 256-frame strips stacked along frequency), 4 x 4
patches, four stages (window 8, shifted windows in every second block, patch merging between stages); the
clip embedding is the mean of the last stage's tokens after the final LayerNorm (what laion_clap calls
``embedding``; its class head is not needed for CLAP and is not built). ``fusion=True`` adds the "aff_2d"
feature fusion of the 630k fusion checkpoints: the three local 10 s chunks of a longer file are patch-embedded by
``patch_embed.mel_conv2d`` and merged into the global patches by attentional feature fusion (AFF).
Parameter names equal laion_clap's ``audio_branch.*`` so the published checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPEC_SIZE = 256
FREQ_RATIO = 4  # 256 // 64 mel bands
PATCH = 4
WINDOW = 8
#: model name -> (embed dim, depths); heads are 4, 8, 16, 32 for both
SIZES = {"tiny": (96, (2, 2, 6, 2)), "base": (128, (2, 2, 12, 2))}
HEADS = (4, 8, 16, 32)


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the (2w-1)^2 bias table for every pair of positions of a w x w window (Swin's layout)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * nW, window * window, C]`` (row-major windows)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def unpartition(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shift_mask(size: int, window: int, shift: int) -> torch.Tensor:
    """Additive mask ``[nW, N, N]``: -100 between positions that the cyclic shift brought from different regions."""
    region = torch.zeros(1, size, size, 1)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for ws in bounds:
            region[:, hs, ws, :] = label
            label += 1
    ids = partition(region, window).squeeze(-1)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        scores = scores + bias.view(n, n, -1).permute(2, 0, 1)
        if mask is not None:
            nw = mask.shape[0]
            scores = (scores.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, size: int, shifted: bool) -> None:
        super().__init__()
        self.size = size
        self.window = min(WINDOW, size)
        self.shift = WINDOW // 2 if shifted and size > WINDOW else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)
        mask = shift_mask(size, self.window, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        y = self.norm1(x).view(b, self.size, self.size, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(partition(y, self.window), self.attn_mask)
        y = unpartition(y, self.window, self.size, self.size)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.size, self.size, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, size: int, merge: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, size, shifted=i % 2 == 1) for i in range(depth))
        self.downsample = PatchMerging(dim, size) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


def _att(channels: int, pooled: bool) -> nn.Sequential:
    inner = channels // 4
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)] if pooled else []
    layers += [nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner), nn.ReLU(),
               nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


class AFF(nn.Module):
    """Attentional feature fusion (Dai et al., WACV 2021) as laion_clap's ``AFF(type='2D')``: 2 (x w + r (1 - w))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local_att, self.global_att = _att(channels, False), _att(channels, True)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        mix = x + residual
        weight = torch.sigmoid(self.local_att(mix) + self.global_att(mix))
        return 2 * x * weight + 2 * residual * (1 - weight)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, fusion: bool) -> None:
        super().__init__()
        self.fusion = fusion
        self.proj = nn.Conv2d(1, dim, PATCH, stride=PATCH)
        self.norm = nn.LayerNorm(dim)
        if fusion:
            self.mel_conv2d = nn.Conv2d(1, dim, (PATCH, 3 * PATCH), stride=(PATCH, 3 * PATCH))
            self.fusion_model = AFF(dim)

    def forward(self, x: torch.Tensor, longer: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``[B, C, 256, 256]`` (C = 1, or 4 with fusion: global then three local chunks)."""
        out = self.proj(x[:, :1])
        if self.fusion and longer is not None and bool(longer.any()):
            idx = torch.nonzero(longer).flatten()
            local = x[idx, 1:]
            b, c, h, w = local.shape
            local = self.mel_conv2d(local.reshape(b * c, 1, h, w))
            local = local.view(b, c, *local.shape[1:]).permute(0, 2, 3, 1, 4).flatten(3)  # chunks side by side
            width = out.shape[-1]
            local = F.pad(local, (0, max(0, width - local.shape[-1])))[..., :width]
            # laion_clap's AFF runs a single row as a batch of two copies: batch norms in eval, the same numbers
            out = out.clone()
            out[idx] = self.fusion_model(out[idx], local)
        return self.norm(out.flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """Normalised log-mel ``[B, C, 1001, 64]`` -> clip embedding ``[B, 768 | 1024]`` (the token mean)."""

    def __init__(self, size: str = "tiny", fusion: bool = False) -> None:
        super().__init__()
        dim, depths = SIZES[size]
        self.num_features = dim * 2 ** (len(depths) - 1)
        self.bn0 = nn.BatchNorm2d(64)
        self.patch_embed = PatchEmbed(dim, fusion)
        grid = SPEC_SIZE // PATCH
        self.layers = nn.ModuleList(
            Stage(dim * 2 ** i, depth, HEADS[i], grid // 2 ** i, merge=i < len(depths) - 1)
            for i, depth in enumerate(depths))
        self.norm = nn.LayerNorm(self.num_features)

    @staticmethod
    def to_image(mel: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, 64]`` -> ``[B, C, 256, 256]``: stretch T to 1024 (bicubic, corners aligned), fold in 4."""
        b, c, t, f = mel.shape
        if t < SPEC_SIZE * FREQ_RATIO:
            mel = F.interpolate(mel, (SPEC_SIZE * FREQ_RATIO, f), mode="bicubic", align_corners=True)
        x = mel.transpose(2, 3).reshape(b, c, f, FREQ_RATIO, SPEC_SIZE)
        return x.permute(0, 1, 3, 2, 4).reshape(b, c, FREQ_RATIO * f, SPEC_SIZE)

    def forward(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        x = self.bn0(mel.transpose(1, 3)).transpose(1, 3)  # batch norm per mel band
        x = self.patch_embed(self.to_image(x), longer)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(dim=1)
