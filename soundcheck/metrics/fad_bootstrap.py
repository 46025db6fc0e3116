"""FAD of bootstrap resamples of candidate files at the cost of their eigenproblems.

With S_r = W W^T (the reference's Cholesky factor, or V sqrt(Lambda) when S_r is singular) the trace term of a
resample is sum sqrt(eig(W^T C_b W)), and W^T C_b W = A^T A / (n_b - 1) with A = diag(sqrt(w)) (Y - 1 ybar_b^T):
the candidate frames whitened once (Y = (X - c) W), each row weighted by its file's multiplicity w and centred
on the resample's mean. The non-zero eigenvalues of A^T A (d x d) are those of A A^T (m x m, m = frames of the
files drawn), so a resample costs one product and one symmetric eigenvalue problem of size min(m, d). No d x d
matrix per file, and none per resample beyond the one being solved, is ever held: memory does not grow with
the number of resamples B or of files F (beyond the frames and the [B, F] weights themselves). ``checkpoint``
is called between blocks of resamples; with ``device`` (a torch device string) a block's eigenproblems run
batched in torch, float64 (torch is imported only then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from soundcheck.metrics.fad_blocks import FileBlocks, prefer_file_blocks
from soundcheck.metrics.frechet import FrechetReference, _eigvalsh, _small_problem_threads

#: Rows of frames handled at once when a d x d scatter is accumulated (bounds the temporary to this many bytes).
CHUNK_BYTES = 32 * 2**20
#: Resamples per block between two ``checkpoint`` calls on the CPU path.
CPU_BLOCK = 8
#: Bytes of batched matrices one torch block may hold on its device.
DEVICE_BLOCK_BYTES = 1 * 2**30


def whitener(reference: FrechetReference) -> np.ndarray:
    """W with W W^T = S_r: the lower Cholesky factor, else V sqrt(Lambda) of the PSD eigendecomposition."""
    if reference.factor is not None:
        return np.tril(reference.factor)
    vals, vecs = np.linalg.eigh((reference.sigma + reference.sigma.T) / 2.0)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


def root_of_eigenvalues(vals: np.ndarray) -> float:
    """Sum of square roots of the eigenvalues of a PSD Gram matrix, those below its round-off level dropped.

    The null space of a rank-deficient Gram matrix comes out as eigenvalues of order k eps lambda_max; their
    square roots (~1e-8 sqrt(lambda_max) each) would otherwise add noise that depends on the matrix's size."""
    vals = np.asarray(vals, dtype=np.float64)
    if vals.size == 0:
        return 0.0
    tol = vals.size * np.finfo(np.float64).eps * max(float(vals.max()), 0.0)
    return float(np.sqrt(vals[vals > tol]).sum())


#: How resample matrices are formed: "frames" streams each resample's frames (a syrk, or the m x m Gram matrix);
#: "files" shares per-file scatter blocks across a block of resamples (fad_blocks); "auto" picks the cheaper.
STRATEGIES = ("auto", "frames", "files")


class FileGaussians:
    """Candidate frames grouped by file, for the mean, covariance and FAD of weighted resamples of files.

    ``max_bytes`` bounds the float64 copy of the whitened frames kept between resamples; above it, each
    resample whitens its frames again in chunks (twice the products, same numbers), and the "files" strategy
    (which needs that copy, grouped by file length) is not used. ``strategy``: see STRATEGIES; every strategy
    gives the same numbers to round-off.
    """

    def __init__(self, files: Sequence[np.ndarray], max_bytes: int = 256 * 2**20, strategy: str = "auto") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy = strategy
        arrays = [np.atleast_2d(np.asarray(f)) for f in files]
        if not arrays:
            raise ValueError("no candidate files")
        self.counts = np.array([len(a) for a in arrays], dtype=np.float64)
        self.dim = arrays[0].shape[1]
        self.frames = np.concatenate(arrays)  # input dtype: as large as the input, no float64 copy
        self.frame_file = np.repeat(np.arange(len(arrays)), self.counts.astype(np.int64))
        self.center = np.stack([a.sum(axis=0, dtype=np.float64) for a in arrays]).sum(axis=0) / self.counts.sum()
        self.sums = np.empty((len(arrays), self.dim))  # per file: sum of (x - c)
        self.squares = np.empty(len(arrays))  # per file: sum of ||x - c||^2
        for i, a in enumerate(arrays):
            z = a - self.center
            self.sums[i], self.squares[i] = z.sum(axis=0), np.einsum("ij,ij->", z, z)
        self.max_bytes = max_bytes
        #: Why the torch path was left for numpy (no torch, device missing or out of memory), else None.
        self.fallback: str | None = None
        self._chunk = max(64, CHUNK_BYTES // (8 * self.dim))

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def _centred(self, idx: np.ndarray | slice, transform: np.ndarray | None) -> np.ndarray:
        z = np.asarray(self.frames[idx], dtype=np.float64) - self.center
        return z if transform is None else z @ transform

    def _whitened(self, transform: np.ndarray | None) -> np.ndarray | None:
        """All centred (and transformed) frames in float64 when they fit in ``max_bytes``, else None."""
        if self.n_frames * self.dim * 8 > self.max_bytes:
            return None
        out = np.empty((self.n_frames, self.dim))
        for s in range(0, self.n_frames, self._chunk):
            out[s:s + self._chunk] = self._centred(slice(s, s + self._chunk), transform)
        return out

    def _scatter(self, weights: np.ndarray, shift: np.ndarray, transform: np.ndarray | None,
                 cached: np.ndarray | None, gram: bool) -> np.ndarray:
        """A^T A (d x d) or, with ``gram``, A A^T (m x m) for A = sqrt(w) (Y - shift) over the frames drawn."""
        wf = weights[self.frame_file]
        active = np.flatnonzero(wf)
        root_w = np.sqrt(wf[active])[:, None]

        def rows(s: int, e: int) -> np.ndarray:
            sel = active[s:e]
            y = cached[sel] if cached is not None else self._centred(sel, transform)
            y -= shift
            y *= root_w[s:e]
            return y

        if gram:
            a = rows(0, len(active))
            return a @ a.T
        out = np.zeros((self.dim, self.dim))
        for s in range(0, len(active), self._chunk):
            a = rows(s, s + self._chunk)
            out += a.T @ a
        return out

    def _block_terms(self, weights: np.ndarray, transform: np.ndarray | None):
        """n_w, mean shift (original coordinates), transformed shift, and tr(C_b) of each row of ``weights``."""
        n_w = weights @ self.counts
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = (weights @ self.sums) / n_w[:, None]
            trace = (weights @ self.squares - n_w * np.einsum("ij,ij->i", shift, shift)) / (n_w - 1.0)
        tshift = shift if transform is None else shift @ transform
        return n_w, shift, tshift, trace

    def resampled(self, weights: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (mean, ddof=1 covariance) for each row of ``weights`` [B, F] (file multiplicities)."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        cached = self._whitened(None)
        for b in range(len(weights)):
            n_w, shift, _, _ = self._block_terms(weights[b:b + 1], None)
            m2 = self._scatter(weights[b], shift[0], None, cached, gram=False)
            yield self.center + shift[0], (m2 + m2.T) / (2.0 * (n_w[0] - 1.0))

    def fad(self, reference: FrechetReference, weights: np.ndarray, checkpoint: Callable[[], None] | None = None,
            device: str | None = None) -> np.ndarray:
        """FAD of each resample (rows of ``weights``) against the reference; NaN where a resample has < 2 frames.

        ``device``: None computes with numpy/LAPACK one resample at a time; a torch device ("cuda", "cpu")
        solves a block of resamples batched with torch.linalg.eigvalsh in float64; if torch or the device fails,
        the remaining resamples run on numpy (same numbers) and ``fallback`` says why."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if weights.shape[1] != len(self.counts):
            raise ValueError(f"weights must be [B, {len(self.counts)}], got {weights.shape}")
        if reference.mu.size != self.dim:
            raise ValueError(f"reference has dim {reference.mu.size}, candidate frames {self.dim}")
        transform = whitener(reference)
        out = np.full(len(weights), np.nan)
        solver, cached, block = None, None, CPU_BLOCK
        if device is not None:
            try:
                from soundcheck.metrics.fad_torch import TorchRoots

                solver = TorchRoots(self, transform, device)
                block = solver.block_size()
            except (ImportError, RuntimeError, AssertionError) as exc:  # no torch or device; out of memory
                self.fallback = f"{type(exc).__name__}: {exc}"
        blocks = None
        if solver is None and self._use_file_blocks(len(weights)):
            blocks = FileBlocks(self.frames, self.frame_file, self.counts, self.center, transform, self._chunk)
            block = blocks.block_size(len(weights))
        elif solver is None:
            cached = self._whitened(transform)
        for start in range(0, len(weights), block):
            w = weights[start:start + block]
            n_w, shift, tshift, trace = self._block_terms(w, transform)
            ok = n_w >= 2.0
            roots = np.full(len(w), np.nan)
            if solver is not None and ok.any():
                try:
                    roots[ok] = solver.roots(w[ok], tshift[ok], n_w[ok])
                except RuntimeError as exc:  # e.g. out of device memory: the rest on the CPU
                    self.fallback = f"{type(exc).__name__}: {exc}"
                    solver, cached, block = None, self._whitened(transform), CPU_BLOCK
            if blocks is not None and ok.any():
                vals = blocks.eigenvalues(w[ok], tshift[ok], n_w[ok], checkpoint)
                roots[ok] = [root_of_eigenvalues(v) for v in vals] / np.sqrt(n_w[ok] - 1.0)
            elif solver is None:
                roots = np.array([self._root(w[i], tshift[i], n_w[i], transform, cached) if ok[i] else np.nan
                                  for i in range(len(w))])
            diff = reference.mu[None, :] - (self.center + shift)
            value = np.einsum("ij,ij->i", diff, diff) + reference.trace + trace - 2.0 * roots
            out[start:start + len(w)] = np.where(ok, np.maximum(value, 0.0), np.nan)
            if checkpoint is not None:
                checkpoint()
        return out

    def _use_file_blocks(self, resamples: int) -> bool:
        if self.strategy == "frames" or self.n_frames * self.dim * 8 > self.max_bytes:
            return False
        if self.strategy == "files":
            return True
        return prefer_file_blocks(self.counts, self.dim, resamples)

    def _root(self, weights: np.ndarray, tshift: np.ndarray, n_w: float, transform: np.ndarray,
              cached: np.ndarray | None) -> float:
        m = int(np.count_nonzero(weights[self.frame_file]))
        gram = m < self.dim
        with _small_problem_threads(min(m, self.dim)):
            scatter = self._scatter(weights, tshift, transform, cached, gram)
            return root_of_eigenvalues(_eigvalsh(scatter)) / np.sqrt(n_w - 1.0)
