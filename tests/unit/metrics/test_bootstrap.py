"""File-level bootstrap: determinism, shared draws, coverage of the percentile interval, fast FAD resamples."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.metrics import (
    GaussianStats,
    bootstrap_interval,
    bootstrap_weighted,
    frechet_distance,
    percentile_interval,
    resample_indices,
    resample_weights,
)
from soundcheck.metrics.frechet import FileGaussians, FrechetReference


def test_same_seed_same_interval_other_seed_other_interval(rng):
    values = rng.standard_normal(40)
    stat = lambda idx: float(values[idx].mean())  # noqa: E731
    a = bootstrap_interval(stat, 40, resamples=200, seed=5)
    assert a == bootstrap_interval(stat, 40, resamples=200, seed=5)
    assert a != bootstrap_interval(stat, 40, resamples=200, seed=6)


def test_weights_and_indices_are_the_same_draws(rng):
    idx, w = resample_indices(13, 50, seed=3), resample_weights(13, 50, seed=3)
    assert np.array_equal(w, np.stack([np.bincount(row, minlength=13) for row in idx]))
    values = rng.standard_normal(13)
    a = bootstrap_interval(lambda i: float(values[i].mean()), 13, resamples=50, seed=3)
    b = bootstrap_weighted(lambda weights: weights @ values / weights.sum(axis=1), 13, resamples=50, seed=3)
    assert a.low == pytest.approx(b.low) and a.high == pytest.approx(b.high)


def test_interval_contains_the_point_estimate_and_covers_the_mean_at_its_level():
    """For the mean of 60 files the 95% percentile interval holds the sample mean, and over 300 data sets it
    covers the true mean 95% of the time (binomial sd 1.3%: accept 90-99%)."""
    rng = np.random.default_rng(11)
    covered = 0
    for trial in range(300):
        x = rng.exponential(size=60)
        ivl = bootstrap_weighted(lambda w, x=x: w @ x / w.sum(axis=1), 60, resamples=400, seed=trial)
        assert ivl.low <= x.mean() <= ivl.high
        covered += ivl.low <= 1.0 <= ivl.high
    assert 0.90 <= covered / 300 <= 0.99


def test_percentile_interval_is_bias_shifted_clipped_and_skips_non_finite():
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan, np.inf])
    plain = percentile_interval(values, 0.5)
    assert (plain.low, plain.high, plain.valid, plain.resamples) == (1.75, 3.25, 4, 6)
    shifted = percentile_interval(values, 0.5, point=2.0)
    assert shifted.bias == pytest.approx(0.5) and shifted.low == pytest.approx(1.25)
    assert percentile_interval(values, 0.5, point=2.0, bounds=(1.5, 2.5)).low == 1.5
    assert percentile_interval(np.array([np.nan, 1.0]), 0.9) is None


def test_fad_bootstrap_resample_equals_fad_of_restacked_frames(rng):
    ref_frames = rng.standard_normal((2000, 24))
    ref = FrechetReference.of(GaussianStats.from_frames(ref_frames))
    files = [rng.standard_normal((int(n), 24)) + 0.1 for n in rng.integers(1, 12, size=60)]
    weights = resample_weights(60, 4, seed=0)
    got = FileGaussians(files).fad(ref, weights)
    for b, idx in enumerate(resample_indices(60, 4, seed=0)):
        stacked = np.concatenate([files[i] for i in idx])
        expected = frechet_distance(ref_frames.mean(0), np.cov(ref_frames, rowvar=False), stacked.mean(0),
                                    np.cov(stacked, rowvar=False))
        assert got[b] == pytest.approx(expected, rel=1e-8)


def test_fad_bootstrap_of_10k_frames_in_128_d_takes_seconds():
    import time
    rng = np.random.default_rng(0)
    files = [rng.standard_normal((10, 128)) for _ in range(1000)]
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((5000, 128))))
    start = time.perf_counter()
    values = FileGaussians(files).fad(ref, resample_weights(1000, 100, seed=0))
    assert len(values) == 100 and np.all(np.isfinite(values))
    assert time.perf_counter() - start < 20.0  # ~1 s on 2 idle cores; generous for a loaded CI machine
