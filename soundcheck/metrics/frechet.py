"""Fréchet distance between Gaussians fitted to embedding frames (FAD; Kilgour et al. 2019).

tr((S1 S2)^1/2) is computed from the eigenvalues of the symmetric matrix sqrt(S1) S2 sqrt(S1), never with a
general sqrtm: real, fast, and finite on singular covariances.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np


def _sqrtm_psd(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric PSD square root; also returns the mass of clipped negative eigenvalues."""
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2.0)
    clipped = float(-vals[vals < 0].sum())
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T, clipped


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD inputs."""
    root1, _ = _sqrtm_psd(np.asarray(sigma1, dtype=np.float64))
    inner = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    vals = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), clipped at 0 against round-off."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(float(value), 0.0)


@dataclass
class GaussianStats:
    """Mergeable sufficient statistics: n, sum and sum of outer products of frames, in float64."""

    dim: int
    n: int = 0
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    outer: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = np.zeros(self.dim, dtype=np.float64)
        if self.outer is None:
            self.outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    @classmethod
    def from_frames(cls, frames: np.ndarray) -> GaussianStats:
        frames = np.asarray(frames)
        stats = cls(frames.shape[1])
        stats.update(frames)
        return stats

    def update(self, frames: np.ndarray) -> GaussianStats:
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected frames [n, {self.dim}], got {x.shape}")
        self.n += len(x)
        self.total += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: GaussianStats) -> GaussianStats:
        if other.dim != self.dim:
            raise ValueError(f"cannot merge dim {self.dim} with dim {other.dim}")
        return GaussianStats(self.dim, self.n + other.n, self.total + other.total, self.outer + other.outer)

    @property
    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ValueError("no frames")
        return self.total / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased (ddof=1) covariance."""
        if self.n < 2:
            raise ValueError("covariance needs at least 2 frames")
        mean = self.mean
        return (self.outer - self.n * np.outer(mean, mean)) / (self.n - 1)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, n=np.int64(self.n), total=self.total, outer=self.outer)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GaussianStats:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            total = z["total"]
            return cls(len(total), int(z["n"]), total.copy(), z["outer"].copy())
