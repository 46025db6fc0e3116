"""Diagnostics that say when a number should not be trusted: set sizes against dimension, covariance rank and
conditioning, round-off clipped from eigenvalues, silent sets, mixed sample rates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.linalg

from soundcheck.metrics.frechet import _trace_sqrt

#: FAD needs roughly this many frames per embedding dimension before its bias is small.
FRAMES_PER_DIM = 10
SILENT_SHARE = 0.5


def covariance_diagnostics(sigma: np.ndarray) -> dict:
    """Rank, condition number (None when singular) and the mass of negative eigenvalues (round-off) of a
    covariance. Rank uses numpy's default tolerance: max eigenvalue * dim * machine epsilon."""
    sigma = np.asarray(sigma, dtype=np.float64)
    vals = scipy.linalg.eigh((sigma + sigma.T) / 2.0, eigvals_only=True, check_finite=False)
    top = float(vals.max()) if len(vals) else 0.0
    tol = top * len(vals) * np.finfo(np.float64).eps
    rank = int((vals > tol).sum())
    return {
        "dim": int(len(vals)),
        "rank": rank,
        "condition_number": float(top / vals.min()) if rank == len(vals) and top > 0 else None,
        "negative_eigenvalue_mass": float(-vals[vals < 0].sum()) + 0.0,
        "trace": float(vals.sum()),
    }


def frechet_diagnostics(sigma1: np.ndarray, sigma2: np.ndarray) -> dict:
    """Both covariances' diagnostics plus the negative round-off clipped from the eigenvalues of S1 S2."""
    s1, s2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    _, clipped = _trace_sqrt(s1, s2)
    return {"reference": covariance_diagnostics(s1), "candidate": covariance_diagnostics(s2),
            "product_clipped_negative_mass": clipped}


def size_warnings(role: str, frames: int, dim: int) -> list[str]:
    if frames < FRAMES_PER_DIM * dim:
        return [f"{role} set has {frames} frames for {dim} embedding dimensions (< {FRAMES_PER_DIM} x dimension): "
                "its covariance is poorly estimated and FAD is biased at this size; recommend KAD "
                "(unbiased, distribution-free) or FAD-inf"]
    return []


def silence_warnings(role: str, silent: Sequence[bool]) -> list[str]:
    n = len(silent)
    quiet = int(sum(bool(s) for s in silent))
    if n and quiet / n > SILENT_SHARE:
        return [f"{role} set is mostly silent ({quiet} of {n} files): distances then compare silence, "
                "check the files (or their gain) before reading the numbers"]
    return []


def sample_rate_warnings(reference_rates: Iterable[int | None], candidate_rates: Iterable[int | None]) -> list[str]:
    ref = sorted({int(r) for r in reference_rates if r})
    cand = sorted({int(r) for r in candidate_rates if r})
    if ref and cand and ref != cand:
        return [f"original sample rates differ (reference {ref} Hz, candidate {cand} Hz): band-limiting and "
                "resampling alone change embedding distances, so part of the score may measure the rate"]
    return []


def set_diagnostics(frames: Sequence[int], dim: int) -> dict:
    return {"files": int(len(frames)), "frames": int(sum(frames)), "dim": int(dim),
            "frames_per_file_min": int(min(frames)) if len(frames) else 0,
            "frames_per_file_max": int(max(frames)) if len(frames) else 0}
