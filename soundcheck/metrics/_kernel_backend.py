"""Array backends for the blockwise kernel sums of KAD: numpy (float64, CPU) and torch (float64, any device).

The sums in :mod:`soundcheck.metrics.kernel` are written once against this small interface, so the torch path
does the same operations in the same order as numpy (results agree to ~1e-12 relative, not bit for bit: the
two BLAS libraries round differently). torch is imported only when a torch backend is asked for, so the api,
which never runs KAD, never imports it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


class NumpyBackend:
    name = "numpy"
    is_cuda = False

    def to(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def index(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.int64)

    def host(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def zeros(self, n: int) -> np.ndarray:
        return np.zeros(n)

    def sq_norms(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", x, x)

    def kernel_block(self, a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray,
                     gamma: float) -> np.ndarray:
        d2 = a_sq[:, None] + b_sq[None, :]  # two block-sized arrays at most, in place from here
        ab = a @ b.T
        ab *= 2.0
        d2 -= ab
        del ab
        np.maximum(d2, 0.0, out=d2)
        d2 *= -gamma
        return np.exp(d2, out=d2)

    def zero_diagonal(self, k: np.ndarray) -> None:
        np.fill_diagonal(k, 0.0)

    def total(self, k: np.ndarray) -> float:
        return float(k.sum())

    def column_sums(self, k: np.ndarray) -> np.ndarray:
        return k.sum(axis=0)

    def weighted_pairs(self, w_rows: np.ndarray, k: np.ndarray, w_cols: np.ndarray) -> np.ndarray:
        """sum_ij w_rows[i, b] k[i, j] w_cols[j, b] for every column b."""
        return np.einsum("ib,ib->b", w_rows, k @ w_cols)

    def group_sums(self, g_rows: np.ndarray, g_cols: np.ndarray, k: np.ndarray, n_groups: int) -> np.ndarray:
        same = g_rows[:, None] == g_cols[None, :]
        return np.bincount(np.broadcast_to(g_rows[:, None], k.shape)[same], weights=k[same], minlength=n_groups)


class TorchBackend:
    """The same operations on torch float64 tensors of one device."""

    def __init__(self, device: str) -> None:
        import torch  # lazily: only a worker that computes KAD on a torch device pays for it

        self.torch = torch
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self.name = f"torch:{self.device.type}"  # sums of different libraries/devices differ in the last bits

    def to(self, x: Any) -> Any:
        return self.torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device)

    def index(self, x: Any) -> Any:
        return self.torch.as_tensor(np.asarray(x, dtype=np.int64), device=self.device)

    def host(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float64) if hasattr(x, "detach") else np.asarray(x, np.float64)

    def zeros(self, n: int) -> Any:
        return self.torch.zeros(n, dtype=self.torch.float64, device=self.device)

    def sq_norms(self, x: Any) -> Any:
        return self.torch.einsum("ij,ij->i", x, x)

    def kernel_block(self, a: Any, a_sq: Any, b: Any, b_sq: Any, gamma: float) -> Any:
        d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
        return d2.clamp_(min=0.0).mul_(-gamma).exp_()

    def zero_diagonal(self, k: Any) -> None:
        k.fill_diagonal_(0.0)

    def total(self, k: Any) -> float:
        return float(k.sum().item())

    def column_sums(self, k: Any) -> Any:
        return k.sum(dim=0)

    def weighted_pairs(self, w_rows: Any, k: Any, w_cols: Any) -> Any:
        return self.torch.einsum("ib,ib->b", w_rows, k @ w_cols)

    def group_sums(self, g_rows: Any, g_cols: Any, k: Any, n_groups: int) -> Any:
        same = g_rows[:, None] == g_cols[None, :]
        return self.torch.bincount(g_rows[:, None].expand_as(k)[same], weights=k[same], minlength=n_groups)


Backend = NumpyBackend | TorchBackend


def backend_for(device: str | None) -> Backend:
    """None or "numpy": numpy on the CPU; any torch device name ("cpu", "cuda", "cuda:1"): torch on it.

    "auto" picks CUDA when this process has already imported torch (a worker that runs models) and CUDA is
    available, else numpy; it never imports torch itself."""
    if device is None or device == "numpy":
        return NumpyBackend()
    if device == "auto":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            return TorchBackend("cuda")
        return NumpyBackend()
    return TorchBackend(device)
