"""Fréchet distance between Gaussians fitted to embedding frames (FAD; Kilgour et al., Interspeech 2019).

tr((S1 S2)^1/2) is the sum of square roots of the eigenvalues of S1 S2, which are those of the symmetric PSD
matrix L^T S2 L when S1 = L L^T (Cholesky, LAPACK potrf + sygst: one symmetric eigenvalue problem, no
eigenvectors). When neither covariance is positive definite the eigenvalues come from sqrt(S1) S2 sqrt(S1)
(symmetric eigh). A general non-symmetric sqrtm is never used: slow, and complex on singular covariances.
When one side is a handful of frames (per-file FAD, small subsets) its covariance is Z Z^T / (n - 1) and the
non-zero eigenvalues of S1 S2 are those of the small n x n matrix Z^T S1 Z / (n - 1).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

#: Version of the stats serialisation written by ``GaussianStats.to_bytes``.
STATS_FORMAT = 2
#: Below this dimension loops of small factorisations run on one BLAS thread: waking a second OpenBLAS thread
#: for a 128 x 128 problem costs far more than the work, and on a loaded machine it can cost 100x.
SMALL_DIM = 512


_controller: list[ThreadpoolController] = []


def _small_problem_threads(dim: int):
    """Context limiting BLAS to one thread for small dimensions (a cached controller: ~40 us to enter)."""
    if dim >= SMALL_DIM:
        return _NoLimit()
    if not _controller:
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api="blas")


class _NoLimit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _eigvalsh(matrix: np.ndarray, lower: bool = True) -> np.ndarray:
    return scipy.linalg.eigh(matrix, eigvals_only=True, lower=lower, check_finite=False)


def _sqrt_sum(vals: np.ndarray) -> tuple[float, float]:
    """Sum of square roots of eigenvalues with negative round-off clipped; also the clipped mass."""
    clipped = float(-vals[vals < 0].sum()) + 0.0  # + 0.0: no "-0.0" in results
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum()), clipped


def _cholesky(sigma: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor, or None when the matrix is not numerically positive definite."""
    factor, info = lapack.dpotrf(sigma, lower=1, clean=1)
    return factor if info == 0 else None


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def _trace_sqrt_with_factor(factor: np.ndarray, sigma2: np.ndarray) -> tuple[float, float]:
    inner, info = lapack.dsygst(sigma2, factor, itype=2, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsygst failed with info={info}")
    return _sqrt_sum(_eigvalsh(inner, lower=True))


def _trace_sqrt(sigma1: np.ndarray, sigma2: np.ndarray, factor1: np.ndarray | None = None) -> tuple[float, float]:
    """(tr((S1 S2)^1/2), clipped negative eigenvalue mass), trying Cholesky of S1, then of S2, then eigh."""
    if factor1 is None:
        factor1 = _cholesky(sigma1)
    if factor1 is not None:
        return _trace_sqrt_with_factor(factor1, sigma2)
    factor2 = _cholesky(sigma2)
    if factor2 is not None:
        return _trace_sqrt_with_factor(factor2, sigma1)
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    return _sqrt_sum(_eigvalsh((inner + inner.T) / 2.0))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD inputs."""
    s1, s2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    return _trace_sqrt(s1, s2)[0]


def _check(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> None:
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), clipped at 0 against round-off."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    _check(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * _trace_sqrt(sigma1, sigma2)[0]
    return max(float(value), 0.0)


class FrechetReference:
    """A reference Gaussian prepared once (Cholesky factor, trace) for many distances against it."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        self.mu = np.asarray(mu, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        _check(self.mu, self.sigma, self.mu, self.sigma)
        self.trace = float(np.trace(self.sigma))
        self.factor = _cholesky(self.sigma)

    @classmethod
    def of(cls, reference: GaussianStats | tuple[np.ndarray, np.ndarray] | FrechetReference) -> FrechetReference:
        if isinstance(reference, FrechetReference):
            return reference
        if isinstance(reference, GaussianStats):
            return cls(reference.mean, reference.cov)
        mu, sigma = reference
        return cls(mu, sigma)

    def distance(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
        _check(self.mu, self.sigma, mu, sigma)
        diff = self.mu - mu
        root = _trace_sqrt(self.sigma, sigma, self.factor)[0]
        return max(float(diff @ diff + self.trace + np.trace(sigma) - 2.0 * root), 0.0)

    def distance_to_frames(self, frames: np.ndarray) -> float:
        """FAD of a frame set (mean, ddof=1 covariance; one frame: covariance 0) against this reference."""
        x = np.asarray(frames, dtype=np.float64)
        n = len(x)
        if n == 0:
            raise ValueError("no frames")
        mean = x.mean(axis=0)
        diff = self.mu - mean
        if n == 1:
            return max(float(diff @ diff + self.trace), 0.0)
        z = x - mean
        if n - 1 >= x.shape[1]:
            cov = z.T @ z / (n - 1)
            return self.distance(mean, (cov + cov.T) / 2.0)
        small = z @ self.sigma @ z.T / (n - 1)  # same non-zero eigenvalues as sigma_ref @ cov
        root = _sqrt_sum(_eigvalsh((small + small.T) / 2.0))[0]
        trace_c = float(np.einsum("ij,ij->", z, z)) / (n - 1)
        return max(float(diff @ diff + self.trace + trace_c - 2.0 * root), 0.0)


@dataclass
class GaussianStats:
    """Mergeable sufficient statistics in float64: count, mean and centred sum of outer products (M2).

    Centred accumulation (Chan, Golub & LeVeque's pairwise update) keeps the covariance accurate when the mean
    is large against the spread, where sum-of-outer-products minus n mu mu^T cancels catastrophically.
    """

    dim: int
    n: int = 0
    mean_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    m2: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mean_ is None:
            self.mean_ = np.zeros(self.dim, dtype=np.float64)
        if self.m2 is None:
            self.m2 = np.zeros((self.dim, self.dim), dtype=np.float64)

    @classmethod
    def from_frames(cls, frames: np.ndarray) -> GaussianStats:
        frames = np.asarray(frames)
        return cls(frames.shape[1]).update(frames)

    def _absorb(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if n == 0:
            return
        total = self.n + n
        delta = mean - self.mean_
        self.m2 = self.m2 + m2 + np.outer(delta, delta) * (self.n * n / total)
        self.mean_ = self.mean_ + delta * (n / total)
        self.n = total

    def update(self, frames: np.ndarray) -> GaussianStats:
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected frames [n, {self.dim}], got {x.shape}")
        if len(x):
            mean = x.mean(axis=0)
            z = x - mean
            self._absorb(len(x), mean, z.T @ z)
        return self

    def merge(self, other: GaussianStats) -> GaussianStats:
        """A new object holding the statistics of both (the inputs are unchanged)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge dim {self.dim} with dim {other.dim}")
        out = GaussianStats(self.dim, self.n, self.mean_.copy(), self.m2.copy())
        out._absorb(other.n, other.mean_, other.m2)
        return out

    @property
    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ValueError("no frames")
        return self.mean_.copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased (ddof=1) covariance, exactly symmetric."""
        if self.n < 2:
            raise ValueError("covariance needs at least 2 frames")
        return (self.m2 + self.m2.T) / (2.0 * (self.n - 1))

    def to_bytes(self) -> bytes:
        """npz without pickle: format version, n, mean, M2 (lossless float64)."""
        buf = io.BytesIO()
        np.savez(buf, format=np.int64(STATS_FORMAT), n=np.int64(self.n), mean=self.mean_, m2=self.m2)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GaussianStats:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n = int(z["n"])
            if "m2" in z:
                mean = z["mean"].astype(np.float64)
                return cls(len(mean), n, mean.copy(), z["m2"].astype(np.float64).copy())
            total, outer = z["total"].astype(np.float64), z["outer"].astype(np.float64)  # format 1: raw sums
            mean = total / n if n else np.zeros_like(total)
            return cls(len(total), n, mean, outer - n * np.outer(mean, mean))


def _as_frames(candidate: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(candidate, np.ndarray) and candidate.ndim == 2:
        return candidate
    return np.concatenate([np.atleast_2d(np.asarray(f)) for f in candidate], axis=0)


@dataclass(frozen=True)
class FadInfResult:
    value: float  # intercept of the linear fit of FAD against 1/N: FAD-inf
    slope: float
    r2: float | None
    points: list[tuple[int, float]]
    repeats: int
    sampling: str = "candidate frames drawn without replacement"


def default_inf_sizes(n_frames: int, steps: int = 5) -> list[int]:
    """``steps`` subset sizes evenly spaced from N/5 to N (at least 2 frames each)."""
    sizes = np.linspace(max(2, n_frames // 5), n_frames, steps).round().astype(int)
    return sorted(set(int(s) for s in sizes))


def fad_inf(
    reference: GaussianStats | tuple[np.ndarray, np.ndarray] | FrechetReference,
    candidate: np.ndarray | Sequence[np.ndarray],
    sizes: Sequence[int] | None = None,
    repeats: int = 1,
    seed: int = 0,
) -> FadInfResult:
    """FAD-inf (Chong & Forsyth, CVPR 2020): FAD of random candidate subsets of N frames, fitted linearly in 1/N.

    Frames (not files) are subsampled because FAD pools frames and its bias is ~ 1/N_frames; they are drawn
    without replacement so a subset is N distinct samples (duplicates from drawing with replacement, as fadtk
    does, shrink the covariance's effective sample size and add a bias that is not linear in 1/N).
    """
    ref = FrechetReference.of(reference)
    frames = _as_frames(candidate)
    total = len(frames)
    sizes = default_inf_sizes(total) if sizes is None else sorted(set(int(s) for s in sizes))
    if not sizes or sizes[0] < 2 or sizes[-1] > total:
        raise ValueError(f"subset sizes must lie in [2, {total}] (candidate frames), got {sizes}")
    if len(sizes) < 2:
        raise ValueError("FAD-inf needs at least two subset sizes")
    rng = np.random.default_rng(seed)
    points = []
    with _small_problem_threads(frames.shape[1]):
        for size in sizes:
            values = [ref.distance_to_frames(frames[rng.choice(total, size, replace=False)]) for _ in range(repeats)]
            points.append((size, float(np.mean(values))))
    xs = 1.0 / np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    r2 = 1.0 - float(((ys - (slope * xs + intercept)) ** 2).sum()) / ss_tot if ss_tot > 0 else None
    return FadInfResult(float(intercept), float(slope), r2, points, repeats)


def fad_per_file(
    reference: GaussianStats | tuple[np.ndarray, np.ndarray] | FrechetReference,
    files: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
) -> list[tuple[str, float, int]]:
    """(name, FAD, frames) of each candidate file against the reference statistics, worst first.

    Like fadtk's score_individual, a file's own mean and covariance are used; a one-frame file has no covariance
    and is given covariance 0 (its FAD is ||mu_f - mu_r||^2 + tr(S_r)).
    """
    ref = FrechetReference.of(reference)
    names = [str(i) for i in range(len(files))] if names is None else list(names)
    arrays = [np.atleast_2d(f) for f in files]
    with _small_problem_threads(ref.mu.size):
        scores = [(name, ref.distance_to_frames(f), len(f)) for name, f in zip(names, arrays, strict=True)]
    return sorted(scores, key=lambda item: -item[1])


class FileGaussians:
    """Per-file (n, mean, M2) so the statistics of any weighted resample of files are weighted sums.

    M2 of a resample = sum_f w_f A_f - n_w d d^T with A_f = M2_f + n_f (mu_f - c)(mu_f - c)^T around the pooled
    mean c: one matrix product for all resamples, no frames re-stacked. When F d^2 doubles would exceed
    ``max_bytes`` the frames are weighted instead (X^T diag(w) X per resample).
    """

    def __init__(self, files: Sequence[np.ndarray], max_bytes: int = 512 * 2**20) -> None:
        arrays = [np.atleast_2d(np.asarray(f, dtype=np.float64)) for f in files]
        self.counts = np.array([len(a) for a in arrays], dtype=np.float64)
        self.dim = arrays[0].shape[1]
        self.center = np.concatenate(arrays).mean(axis=0)
        self.offsets = np.stack([a.mean(axis=0) - self.center for a in arrays])  # [F, d]
        self.sums = self.offsets * self.counts[:, None]
        self.stacked: np.ndarray | None = None
        self.frames: np.ndarray | None = None
        if len(arrays) * self.dim**2 * 8 <= max_bytes:
            self.stacked = np.empty((len(arrays), self.dim * self.dim))
            with _small_problem_threads(self.dim):
                for i, a in enumerate(arrays):
                    z = a - self.center
                    self.stacked[i] = (z.T @ z).ravel()
        else:
            self.frames = np.concatenate(arrays) - self.center
            self.frame_file = np.repeat(np.arange(len(arrays)), self.counts.astype(int))

    def resampled(self, weights: np.ndarray):
        """Yield (mean, cov) for each row of ``weights`` [B, F] (file multiplicities)."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        n_w = weights @ self.counts
        shift = (weights @ self.sums) / n_w[:, None]
        if self.stacked is not None:
            outer = (weights @ self.stacked).reshape(len(weights), self.dim, self.dim)
        for b in range(len(weights)):
            if self.stacked is not None:
                centred = outer[b]
            else:
                w = weights[b][self.frame_file]
                centred = self.frames.T @ (self.frames * w[:, None])
            m2 = centred - n_w[b] * np.outer(shift[b], shift[b])
            yield self.center + shift[b], (m2 + m2.T) / (2.0 * (n_w[b] - 1))

    def fad(self, reference: FrechetReference, weights: np.ndarray) -> np.ndarray:
        """FAD of each resample against the reference."""
        with _small_problem_threads(self.dim):
            return np.array([reference.distance(mu, cov) for mu, cov in self.resampled(weights)])
