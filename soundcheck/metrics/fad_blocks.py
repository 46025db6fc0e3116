"""FAD bootstrap resamples from per-file scatter blocks shared by a block of resamples (the CPU path for files of
several frames each, when a resample draws more frames than there are dimensions).

A resample's matrix is M_b = sum_x w_x (y_x - s_b)(y_x - s_b)^T over the whitened, centred candidate frames
y_x (w_x: the multiplicity of x's file, s_b: the resample's whitened mean shift). Forming it from its frames
(the streamed path in fad_bootstrap) is a syrk of the m ~ 0.63 n frames drawn: m d^2 / 2 multiply-adds per
resample, as much as its eigenproblem once m > d. Because the weights are per *file*,
M_b = sum_f w_bf S_f - n_b s_b s_b^T with S_f = Y_f^T Y_f, so a block of b resamples is one GEMM of the
[b, F] weights against the per-file scatters: F d^2 / 2 multiply-adds per resample plus F k d^2 / 2 per block
to form the S_f (k frames per file), about 1 / (0.63 k) of the syrk once b >> k. The S_f never exist whole
(F d^2 floats; 2.4 GB for 300 files at d = 1024): the lower triangle is produced in row chunks
(rows a0..a1, columns 0..a1) of at most ``CHUNK_BYTES`` for all files, and consumed at once by the GEMM into
the block's packed lower triangles ([b, d(d+1)/2-ish], at most ``BLOCK_BYTES``). Memory is bounded
independently of B and F; the resamples' eigenvalues are those of the same matrices as the streamed path
(equal to round-off, tested to 1e-9 relative against it and against the textbook on restacked frames).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg

from soundcheck.metrics.frechet import _small_problem_threads

#: Bytes of the block's packed lower triangles (b resamples x ~d^2/2 float64): b = 62 at d = 1024.
BLOCK_BYTES = 256 * 2**20
#: Bytes of one row chunk of every file's scatter (F x rows x columns float64).
CHUNK_BYTES = 32 * 2**20
#: Forming the per-file chunks (batched products of inner size k) ran ~8x slower per multiply-add than the
#: syrk and the GEMM on the 2-core benchmark machine: the cost model below weighs them so.
CHUNK_SLOWDOWN = 8.0
#: Resamples between two ``checkpoint`` calls while a block's eigenproblems are solved.
SOLVES_PER_CHECKPOINT = 8


def resamples_per_block(dim: int, resamples: int) -> int:
    """Resamples per block: as many as ``BLOCK_BYTES`` allows, split evenly (100 at d = 1024: 2 x 50)."""
    most = max(1, BLOCK_BYTES // (8 * packed_size(row_chunks(dim, 1))))
    blocks = -(-resamples // most)
    return max(1, -(-resamples // blocks))


def prefer_file_blocks(counts: np.ndarray, dim: int, resamples: int) -> bool:
    """Whether per-file blocks cost less than forming each resample from its frames.

    A resample draws ~63% of the frames (1 - 1/e of the files). Below d frames the streamed path solves the
    small Gram matrix instead, which this path cannot beat. Else, per resample (in units of d^2 / 2
    multiply-adds): frames path 0.63 n; this path F (the GEMM) + CHUNK_SLOWDOWN n / b (the chunks, shared by a
    block of b), chosen when it is under 0.8 of the other."""
    n, files = float(np.sum(counts)), len(counts)
    drawn = 0.632 * n
    if drawn < dim or resamples < 2:
        return False
    b = min(resamples, resamples_per_block(dim, resamples))
    return files + CHUNK_SLOWDOWN * n / b < 0.8 * drawn


def row_chunks(dim: int, n_files: int) -> list[tuple[int, int, int]]:
    """(a0, a1, offset) of the lower triangle's row chunks: rows a0..a1, columns 0..a1, each chunk of all files
    at most CHUNK_BYTES (at least one row); ``offset`` into the packed layout."""
    cells = max(1, CHUNK_BYTES // (8 * n_files))
    out, a0, offset = [], 0, 0
    while a0 < dim:
        # largest r with r (a0 + r) <= cells
        r = int((-a0 + np.sqrt(a0 * a0 + 4.0 * cells)) / 2.0)
        a1 = min(dim, a0 + max(1, r))
        out.append((a0, a1, offset))
        offset += (a1 - a0) * a1
        a0 = a1
    return out


def packed_size(chunks: list[tuple[int, int, int]]) -> int:
    a0, a1, offset = chunks[-1]
    return offset + (a1 - a0) * a1


class FileBlocks:
    """Whitened candidate frames grouped by file length ([files, k, d] per k) and the block solver."""

    def __init__(self, frames: np.ndarray, frame_file: np.ndarray, counts: np.ndarray, center: np.ndarray,
                 transform: np.ndarray, chunk_rows: int) -> None:
        counts = counts.astype(np.int64)
        self.dim = frames.shape[1]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.groups: list[np.ndarray] = []
        order = []
        for k in np.unique(counts):
            ids = np.flatnonzero(counts == k)
            rows = (starts[ids][:, None] + np.arange(k)[None, :]).ravel()
            y = np.empty((len(rows), self.dim))
            for s in range(0, len(rows), chunk_rows):
                sel = rows[s:s + chunk_rows]
                y[s:s + chunk_rows] = (np.asarray(frames[sel], dtype=np.float64) - center) @ transform
            self.groups.append(y.reshape(len(ids), int(k), self.dim))
            order.append(ids)
        self.order = np.concatenate(order)  # file index of each row of the stacked groups
        self.chunks = row_chunks(self.dim, len(self.order))
        self.packed = packed_size(self.chunks)
        self._cells = max((a1 - a0) * a1 for a0, a1, _ in self.chunks)

    def block_size(self, resamples: int) -> int:
        return resamples_per_block(self.dim, resamples)

    def scatters(self, weights: np.ndarray) -> np.ndarray:
        """[b, packed] lower triangles of sum_f w_bf S_f (chunk by chunk, row-major within a chunk)."""
        w = np.ascontiguousarray(weights[:, self.order])
        n_files = len(self.order)
        out = np.empty((len(w), self.packed))
        buf = np.empty(n_files * self._cells)
        for a0, a1, offset in self.chunks:
            cells = (a1 - a0) * a1
            per_file = buf[:n_files * cells].reshape(n_files, a1 - a0, a1)
            start = 0
            for y in self.groups:
                np.matmul(y[:, :, a0:a1].transpose(0, 2, 1), y[:, :, :a1], out=per_file[start:start + len(y)])
                start += len(y)
            np.matmul(w, per_file.reshape(n_files, cells), out=out[:, offset:offset + cells])
        return out

    def unpack(self, packed: np.ndarray, into: np.ndarray) -> np.ndarray:
        """Write one packed lower triangle into the rows of ``into`` (C order, d x d; upper part untouched)."""
        for a0, a1, offset in self.chunks:
            into[a0:a1, :a1] = packed[offset:offset + (a1 - a0) * a1].reshape(a1 - a0, a1)
        return into

    def eigenvalues(self, weights: np.ndarray, tshift: np.ndarray, n_w: np.ndarray,
                    checkpoint: Callable[[], None] | None = None) -> list[np.ndarray]:
        """Eigenvalues of each resample's scatter A^T A (not yet divided by n_w - 1), rows of ``weights``."""
        with _small_problem_threads(self.dim):
            packed = self.scatters(weights)
            if checkpoint is not None:
                checkpoint()
            mat = np.empty((self.dim, self.dim))
            vals = []
            for j in range(len(weights)):
                self.unpack(packed[j], mat)
                mat -= n_w[j] * np.outer(tshift[j], tshift[j])  # around the resample's own mean
                # mat's rows hold the lower triangle; its transpose is a Fortran array with it as the upper
                vals.append(scipy.linalg.eigh(mat.T, eigvals_only=True, lower=False, overwrite_a=True,
                                              check_finite=False))
                if checkpoint is not None and (j + 1) % SOLVES_PER_CHECKPOINT == 0:
                    checkpoint()
        return vals
