"""Shared generators for metric tests: seeded, small, and independent of the code under test."""

from __future__ import annotations

import numpy as np
import pytest


def well_conditioned(rng: np.random.Generator, dim: int, n: int | None = None, shift: float = 0.0,
                     scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ddof=1 covariance (numpy's np.cov) of 4*dim correlated Gaussian frames."""
    n = n or 4 * dim
    mix = np.eye(dim) + 0.1 * rng.standard_normal((dim, dim)) / np.sqrt(dim)
    frames = (rng.standard_normal((n, dim)) * scale) @ mix + shift
    return frames.mean(axis=0), np.cov(frames, rowvar=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
