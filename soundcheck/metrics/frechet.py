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
from dataclasses import dataclass

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


class GaussianStats:
    """Mergeable sufficient statistics in float64: count, mean and centred sum of outer products (M2).

    Centred accumulation (Chan, Golub & LeVeque's pairwise update) keeps the covariance accurate when the mean
    is large against the spread, where sum-of-outer-products minus n mu mu^T cancels catastrophically.

    ``update`` buffers frames and folds a full buffer in with one matrix product: callers that update once per
    file (a few frames each) pay O(frames x d) per call, not the O(d^2) of a fold. Reading ``mean_``, ``m2``,
    ``mean``, ``cov``, merging or serialising folds the buffer first; ``n`` counts buffered frames too.
    """

    #: The buffer holds max(dim, MIN_BUFFER_ROWS) rows, at most BUFFER_BYTES (and never fewer than 64 rows).
    MIN_BUFFER_ROWS = 256
    BUFFER_BYTES = 64 * 2**20

    def __init__(self, dim: int, n: int = 0, mean_: np.ndarray | None = None, m2: np.ndarray | None = None) -> None:
        self.dim = int(dim)
        self._n = int(n)
        self._mean = np.zeros(self.dim) if mean_ is None else np.array(mean_, dtype=np.float64)
        self._m2 = np.zeros((self.dim, self.dim)) if m2 is None else np.array(m2, dtype=np.float64)
        self._buffer: np.ndarray | None = None
        self._rows = 0  # frames waiting in the buffer

    def __repr__(self) -> str:
        return f"GaussianStats(dim={self.dim}, n={self.n})"

    @property
    def n(self) -> int:
        return self._n + self._rows

    @property
    def mean_(self) -> np.ndarray:
        self._flush()
        return self._mean

    @property
    def m2(self) -> np.ndarray:
        self._flush()
        return self._m2

    @property
    def buffer_rows(self) -> int:
        return max(64, min(max(self.dim, self.MIN_BUFFER_ROWS), self.BUFFER_BYTES // (8 * max(self.dim, 1))))

    @classmethod
    def from_frames(cls, frames: np.ndarray) -> GaussianStats:
        frames = np.asarray(frames)
        return cls(frames.shape[1]).update(frames)

    def _fold(self, x: np.ndarray) -> None:
        """Fold a block of frames in: its centred scatter plus Chan's between-means term in one product."""
        k = len(x)
        mean = x.mean(axis=0)
        total = self._n + k
        delta = mean - self._mean
        z = np.empty((k + 1, self.dim))
        np.subtract(x, mean, out=z[:k])
        z[k] = delta * np.sqrt(self._n * k / total)  # row whose outer product is (n k / total) delta delta^T
        self._m2 += z.T @ z
        self._mean += delta * (k / total)
        self._n = total

    def _flush(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, 0
            self._fold(self._buffer[:rows])

    def _absorb(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if n == 0:
            return
        self._flush()
        total = self._n + n
        delta = mean - self._mean
        self._m2 += m2
        self._m2 += np.outer(delta, delta) * (self._n * n / total)
        self._mean += delta * (n / total)
        self._n = total

    def update(self, frames: np.ndarray) -> GaussianStats:
        x = np.asarray(frames)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected frames [n, {self.dim}], got {x.shape}")
        k, cap = len(x), self.buffer_rows
        if k == 0:
            return self
        if self._rows + k > cap:
            self._flush()
        if k >= cap:
            self._fold(np.asarray(x, dtype=np.float64))
            return self
        if self._buffer is None:
            self._buffer = np.empty((cap, self.dim))
        self._buffer[self._rows:self._rows + k] = x  # copies (and casts): later changes to x do not leak in
        self._rows += k
        return self

    def merge(self, other: GaussianStats) -> GaussianStats:
        """A new object holding the statistics of both (the inputs are unchanged)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge dim {self.dim} with dim {other.dim}")
        out = GaussianStats(self.dim, self._n_flushed(), self.mean_, self.m2)
        out._absorb(other._n_flushed(), other.mean_, other.m2)
        return out

    def _n_flushed(self) -> int:
        self._flush()
        return self._n

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
        m2 = self.m2
        out = m2 + m2.T
        out *= 1.0 / (2.0 * (self.n - 1))
        return out

    def to_bytes(self) -> bytes:
        """npz without pickle: format version, n, mean, M2 (lossless float64)."""
        buf = io.BytesIO()
        mean, m2 = self.mean_, self.m2
        np.savez(buf, format=np.int64(STATS_FORMAT), n=np.int64(self.n), mean=mean, m2=m2)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GaussianStats:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n = int(z["n"])
            if "m2" in z:
                mean = z["mean"].astype(np.float64)
                return cls(len(mean), n, mean, z["m2"].astype(np.float64))
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


def __getattr__(name: str):
    """``FileGaussians`` lives in fad_bootstrap (it builds on this module); kept importable from here."""
    if name == "FileGaussians":
        from soundcheck.metrics.fad_bootstrap import FileGaussians

        return FileGaussians
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
