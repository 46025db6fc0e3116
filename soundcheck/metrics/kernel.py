"""Kernel Audio Distance (Chung et al., "KAD: No More FAD!", 2025): unbiased MMD^2 with a Gaussian RBF kernel.

    MMD^2_u = mean_{i != j} k(r_i, r_j) + mean_{i != j} k(c_i, c_j) - 2 mean_{i, j} k(r_i, c_j)
    k(a, b) = exp(-||a - b||^2 / (2 h^2))

Kernel sums are accumulated block by block (``block_size`` rows x ``block_size`` columns at a time), so memory
stays O(block^2 + n) for any set size; within-set sums use only the upper block triangle. Both sets are
shifted by the reference mean first (the kernel is translation invariant) so that ||a||^2 + ||b||^2 - 2 a.b
does not cancel catastrophically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import pdist

#: Largest reference set whose median pairwise distance is computed over all pairs.
MEDIAN_MAX_POINTS = 4000
DEFAULT_BLOCK = 2048


def median_pairwise_distance(x: np.ndarray, max_points: int = MEDIAN_MAX_POINTS, seed: int = 0) -> tuple[float, int]:
    """Median L2 distance over all pairs of ``x`` (or of a seeded subsample of ``max_points`` rows) and the
    number of rows used. 4,000 rows give ~8M pairs: the median is then known to well under 1%."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("the median pairwise distance needs at least 2 frames")
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    return float(np.median(pdist(x))), len(x)


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _kernel_block(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray, gamma: float) -> np.ndarray:
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    np.maximum(d2, 0.0, out=d2)
    return np.exp(-gamma * d2, out=d2)


def _within_weighted(x: np.ndarray, weights: np.ndarray, gamma: float, block: int,
                     groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """sum_{i != j} w_i w_j k(x_i, x_j) for each weight column ([n, B] -> [B]), diagonal excluded; with
    ``groups`` (sorted group id per row) also sum_{i != j, same group} k(x_i, x_j) per group."""
    sq = _sq_norms(x)
    out = np.zeros(weights.shape[1])
    per_group = np.zeros(int(groups[-1]) + 1) if groups is not None and len(groups) else None
    for i in range(0, len(x), block):
        rows = slice(i, i + block)
        for j in range(i, len(x), block):
            cols = slice(j, j + block)
            k = _kernel_block(x[rows], sq[rows], x[cols], sq[cols], gamma)
            if i == j:
                np.fill_diagonal(k, 0.0)
            factor = 1.0 if i == j else 2.0
            out += factor * np.einsum("ib,ib->b", weights[rows], k @ weights[cols])
            if per_group is not None and groups[rows][-1] >= groups[cols][0]:  # groups are contiguous
                same = groups[rows][:, None] == groups[cols][None, :]
                per_group += factor * np.bincount(np.broadcast_to(groups[rows][:, None], k.shape)[same],
                                                  weights=k[same], minlength=len(per_group))
    return out, per_group


def _cross_column_sums(x: np.ndarray, y: np.ndarray, gamma: float, block: int) -> np.ndarray:
    """sum_i k(x_i, y_j) for every j."""
    x_sq, y_sq = _sq_norms(x), _sq_norms(y)
    out = np.zeros(len(y))
    for i in range(0, len(x), block):
        rows = slice(i, i + block)
        for j in range(0, len(y), block):
            cols = slice(j, j + block)
            out[cols] += _kernel_block(x[rows], x_sq[rows], y[cols], y_sq[cols], gamma).sum(axis=0)
    return out


@dataclass(frozen=True)
class KadResult:
    value: float  # scale * MMD^2_u
    mmd2: float
    bandwidth: float
    scale: float
    bandwidth_source: str  # "given" or how the median was taken
    median_points: int | None  # reference frames the median was computed over (None when given)


def _bandwidth(ref: np.ndarray, bandwidth: float | None, seed: int) -> tuple[float, str, int | None]:
    if bandwidth is not None:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        return float(bandwidth), "given", None
    h, used = median_pairwise_distance(ref, seed=seed)
    if not h > 0:
        raise ValueError("the reference frames are all identical: the median distance is 0, give a bandwidth")
    how = "median pairwise L2 distance of the reference frames"
    if used < len(ref):
        how += f" (seeded subsample of {used} of {len(ref)} frames)"
    return h, how, used


class KernelTerms:
    """The reference and cross kernel sums of one (reference, candidate files) pair, reusable for resamples."""

    def __init__(self, ref: np.ndarray, files: Sequence[np.ndarray], bandwidth: float | None = None,
                 scale: float = 100.0, block_size: int = DEFAULT_BLOCK, seed: int = 0) -> None:
        ref = np.asarray(ref, dtype=np.float64)
        arrays = [np.atleast_2d(np.asarray(f, dtype=np.float64)) for f in files]
        if len(ref) < 2 or sum(len(a) for a in arrays) < 2:
            raise ValueError("KAD needs at least 2 frames in each set")
        self.bandwidth, self.source, self.median_points = _bandwidth(ref, bandwidth, seed)
        self.scale, self.block = float(scale), int(block_size)
        self.gamma = 1.0 / (2.0 * self.bandwidth**2)
        shift = ref.mean(axis=0)
        self.ref = ref - shift
        self.cand = np.concatenate(arrays) - shift
        self.counts = np.array([len(a) for a in arrays], dtype=np.float64)
        self.frame_file = np.repeat(np.arange(len(arrays)), self.counts.astype(int))
        n_r = len(self.ref)
        self.ref_term = float(_within_weighted(self.ref, np.ones((n_r, 1)), self.gamma, self.block)[0][0]) / (
            n_r * (n_r - 1))
        self.cross = _cross_column_sums(self.ref, self.cand, self.gamma, self.block)

    def mmd2(self, weights: np.ndarray) -> np.ndarray:
        """Unbiased MMD^2 for each row of file multiplicities ``weights`` [B, F], in one blockwise pass.

        Pairs of frames from two copies of the same resampled file are left out of the candidate term (they
        would add k(x, x) = 1 terms and bias a resample upward by ~1/F); with all weights 1 this is exactly
        the unbiased estimator."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        dup = weights * (weights - 1.0)
        groups = self.frame_file if dup.any() else None
        q, within_file = _within_weighted(self.cand, weights[:, self.frame_file].T, self.gamma, self.block, groups)
        if within_file is not None:
            q -= dup @ np.pad(within_file, (0, len(self.counts) - len(within_file)))
        n_w = weights @ self.counts
        pairs = n_w * (n_w - 1.0) - dup @ (self.counts**2)
        per_file_cross = np.bincount(self.frame_file, weights=self.cross, minlength=len(self.counts))
        cross = (weights @ per_file_cross) / (len(self.ref) * n_w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.ref_term + q / pairs - 2.0 * cross

    def point_and_resamples(self, weights: np.ndarray | None) -> tuple[float, np.ndarray | None]:
        """MMD^2 of the full set and of each resample, sharing one pass over the candidate kernel."""
        ones = np.ones((1, len(self.counts)))
        values = self.mmd2(ones if weights is None else np.vstack([ones, weights]))
        return float(values[0]), (None if weights is None else values[1:])

    def result(self, mmd2: float | None = None) -> KadResult:
        mmd2 = self.point_and_resamples(None)[0] if mmd2 is None else mmd2
        return KadResult(self.scale * mmd2, mmd2, self.bandwidth, self.scale, self.source, self.median_points)


def kernel_audio_distance(ref: np.ndarray, cand: np.ndarray | Sequence[np.ndarray], bandwidth: float | None = None,
                          scale: float = 100.0, block_size: int = DEFAULT_BLOCK, seed: int = 0) -> KadResult:
    """KAD between reference frames and candidate frames (an array, or one array per file).

    Default bandwidth: median pairwise L2 distance of the reference set, so that every candidate scored against
    one reference is measured with the same kernel (and the reference term can be cached)."""
    files = [cand] if isinstance(cand, np.ndarray) and cand.ndim == 2 else list(cand)
    return KernelTerms(ref, files, bandwidth, scale, block_size, seed).result()
