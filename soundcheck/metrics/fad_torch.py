"""Batched resample eigenproblems of the FAD bootstrap in torch (float64), for a GPU where the worker has one.

Same formulation as fad_bootstrap (whitened frames, one Gram or scatter matrix per resample), but every frame
is kept in every resample with its weight (0 for files not drawn), so a block of resamples is one batch of
equal-sized matrices: [b, n, n] when the candidate has fewer frames n than dimensions d, else [b, d, d]
accumulated over row chunks. The extra rows only add exact zeros to the spectrum. Imported only when a device
is asked for: the api and the numpy path never import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from soundcheck.metrics.fad_bootstrap import DEVICE_BLOCK_BYTES, root_of_eigenvalues

if TYPE_CHECKING:
    from soundcheck.metrics.fad_bootstrap import FileGaussians

#: Frames per chunk when a [b, d, d] scatter is accumulated on the device.
ROW_CHUNK_BYTES = 64 * 2**20


class TorchRoots:
    """Whitened candidate frames on a torch device; ``roots`` solves a block of resamples at once."""

    def __init__(self, files: FileGaussians, transform: np.ndarray, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.n, self.d = files.n_frames, files.dim
        self.frame_file = torch.as_tensor(files.frame_file, device=self.device)
        w = torch.as_tensor(transform, dtype=torch.float64, device=self.device)
        c = torch.as_tensor(files.center, dtype=torch.float64, device=self.device)
        self.chunk = max(64, ROW_CHUNK_BYTES // (8 * self.d))
        self.y = torch.empty((self.n, self.d), dtype=torch.float64, device=self.device)
        for s in range(0, self.n, self.chunk):
            x = torch.as_tensor(np.ascontiguousarray(files.frames[s:s + self.chunk]), device=self.device)
            self.y[s:s + self.chunk] = (x.to(torch.float64) - c) @ w
        self.gram = self.n < self.d

    def block_size(self) -> int:
        """Resamples per batch so that one batch's matrices stay within DEVICE_BLOCK_BYTES."""
        if self.gram:
            per = 8 * (self.n * self.d + 2 * self.n * self.n)
        else:
            per = 8 * (min(self.chunk, self.n) * self.d + 2 * self.d * self.d)
        return int(max(1, min(256, DEVICE_BLOCK_BYTES // per)))

    def roots(self, weights: np.ndarray, tshift: np.ndarray, n_w: np.ndarray) -> np.ndarray:
        """tr((S_r C_b)^1/2) of each row of ``weights`` [b, F], given the whitened mean shifts [b, d]."""
        torch = self.torch
        wf = torch.as_tensor(weights, dtype=torch.float64, device=self.device)[:, self.frame_file]  # [b, n]
        root_w = wf.sqrt()
        shift = torch.as_tensor(tshift, dtype=torch.float64, device=self.device)
        if self.gram:
            a = (self.y[None] - shift[:, None, :]) * root_w[:, :, None]
            mats = a @ a.mT
        else:
            mats = torch.zeros((len(weights), self.d, self.d), dtype=torch.float64, device=self.device)
            for s in range(0, self.n, self.chunk):
                a = (self.y[None, s:s + self.chunk] - shift[:, None, :]) * root_w[:, s:s + self.chunk, None]
                mats.baddbmm_(a.mT, a)
        mats = (mats + mats.mT) / 2.0
        vals = torch.linalg.eigvalsh(mats).cpu().numpy()
        return np.array([root_of_eigenvalues(v) for v in vals]) / np.sqrt(n_w - 1.0)
