"""Fréchet distance and Gaussian statistics against textbook formulas computed independently."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.linalg
from scipy.stats import linregress

from soundcheck.metrics import GaussianStats, fad_inf, fad_per_file, frechet_distance
from soundcheck.metrics.frechet import FileGaussians, FrechetReference
from tests.unit.metrics.conftest import well_conditioned


def textbook_fd(mu1, sigma1, mu2, sigma2) -> float:
    """The classic FID formula: general sqrtm of the product (what frechet_audio_distance and pytorch-fid do)."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean).real)


def frames_fd(x: np.ndarray, y: np.ndarray) -> float:
    """FD from frames via the nuclear norm: the non-zero eigenvalues of S_x S_y are the squared singular values
    of Z_x^T Z_y / sqrt((n_x - 1)(n_y - 1)), valid for singular covariances too."""
    zx, zy = x - x.mean(axis=0), y - y.mean(axis=0)
    nuclear = np.linalg.svd(zx @ zy.T, compute_uv=False).sum() / np.sqrt((len(x) - 1) * (len(y) - 1))
    diff = x.mean(axis=0) - y.mean(axis=0)
    return float(diff @ diff + np.trace(np.cov(x, rowvar=False)) + np.trace(np.cov(y, rowvar=False)) - 2 * nuclear)


@pytest.mark.parametrize("dim", [128, 512, pytest.param(2048, marks=pytest.mark.slow)])
def test_fd_matches_textbook_sqrtm_on_well_conditioned_pairs(rng, dim):
    mu1, s1 = well_conditioned(rng, dim)
    mu2, s2 = well_conditioned(rng, dim, shift=0.05, scale=1.2)
    expected = textbook_fd(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n1,n2", [(50, 50), (50, 40), (20, 300), (300, 20)])
def test_fd_on_rank_deficient_covariances_is_finite_nonnegative_and_exact(rng, n1, n2):
    x = rng.standard_normal((n1, 128))
    y = rng.standard_normal((n2, 128)) * 1.3 + 0.2
    value = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert np.isfinite(value) and value >= 0
    assert value == pytest.approx(frames_fd(x, y), rel=1e-6)


def test_fd_of_a_set_with_itself_is_zero(rng):
    mu, sigma = well_conditioned(rng, 64)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9 * np.trace(sigma))
    x = rng.standard_normal((30, 64))  # singular
    s = np.cov(x, rowvar=False)
    assert frechet_distance(x.mean(0), s, x.mean(0), s) == pytest.approx(0.0, abs=1e-6 * np.trace(s))


def test_fd_rejects_mismatched_shapes(rng):
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_stats_equal_numpy_mean_and_cov_even_with_a_large_offset(rng):
    frames = rng.standard_normal((500, 16)) + 1e4  # raw sum-of-outer-products loses ~8 digits here
    stats = GaussianStats(16)
    for chunk in np.array_split(frames, 7):
        stats.update(chunk)
    assert stats.n == 500
    np.testing.assert_allclose(stats.mean, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(frames, rowvar=False), rtol=1e-8, atol=1e-10)


def test_stats_bytes_round_trip_is_lossless_and_reads_the_raw_sum_format(rng):
    frames = rng.standard_normal((40, 8))
    stats = GaussianStats.from_frames(frames)
    back = GaussianStats.from_bytes(stats.to_bytes())
    assert back.n == stats.n and np.array_equal(back.mean_, stats.mean_) and np.array_equal(back.m2, stats.m2)
    buf = io.BytesIO()  # format 1: n, sum, sum of outer products
    np.savez(buf, n=np.int64(40), total=frames.sum(axis=0), outer=frames.T @ frames)
    legacy = GaussianStats.from_bytes(buf.getvalue())
    np.testing.assert_allclose(legacy.cov, np.cov(frames, rowvar=False), rtol=1e-10, atol=1e-12)


def test_stats_need_frames():
    stats = GaussianStats(4)
    with pytest.raises(ValueError):
        _ = stats.mean
    with pytest.raises(ValueError):
        stats.update(np.zeros((3, 5)))


@pytest.mark.parametrize("n", [1, 5, 40, 200])
def test_distance_to_frames_uses_the_files_own_mean_and_cov(rng, n):
    ref_frames = rng.standard_normal((600, 32))
    ref = FrechetReference(ref_frames.mean(0), np.cov(ref_frames, rowvar=False))
    frames = rng.standard_normal((n, 32)) + 0.3
    if n == 1:  # no covariance: documented as 0
        diff = frames[0] - ref_frames.mean(0)
        expected = diff @ diff + np.trace(np.cov(ref_frames, rowvar=False))
    else:
        expected = textbook_fd(ref_frames.mean(0), np.cov(ref_frames, rowvar=False), frames.mean(0),
                               np.cov(frames, rowvar=False)) if n > 32 else frames_fd(ref_frames, frames)
    assert ref.distance_to_frames(frames) == pytest.approx(expected, rel=1e-6)


def test_fad_per_file_scores_each_file_and_sorts_worst_first(rng):
    ref_frames = rng.standard_normal((400, 16))
    files = [rng.standard_normal((k, 16)) + shift for k, shift in [(10, 0.0), (1, 0.5), (30, 2.0), (5, 1.0)]]
    scores = fad_per_file(GaussianStats.from_frames(ref_frames), files, ["a", "b", "c", "d"])
    assert [s[0] for s in scores][0] == "c"
    assert [s[1] for s in scores] == sorted([s[1] for s in scores], reverse=True)
    by_name = {name: (value, k) for name, value, k in scores}
    assert by_name["b"][1] == 1
    expected_a = frames_fd(ref_frames, files[0])
    assert by_name["a"][0] == pytest.approx(expected_a, rel=1e-6)


def test_fad_inf_fit_matches_linregress_and_removes_the_small_sample_bias(rng):
    ref = GaussianStats.from_frames(rng.standard_normal((20000, 32)))
    cand = rng.standard_normal((4000, 32))  # same distribution: true FAD ~ 0
    res = fad_inf(ref, np.array_split(cand, 100), sizes=[500, 1000, 2000, 3000, 4000], repeats=3, seed=1)
    n, fad = np.array(res.points).T
    fit = linregress(1.0 / n, fad)
    assert res.value == pytest.approx(fit.intercept, rel=1e-9, abs=1e-12)
    assert res.slope == pytest.approx(fit.slope, rel=1e-9)
    assert res.r2 == pytest.approx(fit.rvalue**2, rel=1e-9)
    full = frechet_distance(ref.mean, ref.cov, cand.mean(0), np.cov(cand, rowvar=False))
    assert fad[-1] == pytest.approx(full, rel=1e-9)  # N = all frames, without replacement: the full set
    assert abs(res.value) < 0.25 * full


def test_fad_inf_rejects_bad_sizes(rng):
    ref = GaussianStats.from_frames(rng.standard_normal((100, 4)))
    with pytest.raises(ValueError):
        fad_inf(ref, rng.standard_normal((50, 4)), sizes=[10, 60])
    with pytest.raises(ValueError):
        fad_inf(ref, rng.standard_normal((50, 4)), sizes=[10])


@pytest.mark.parametrize("max_bytes", [512 * 2**20, 0])
def test_file_resample_stats_equal_stats_of_restacked_frames(rng, max_bytes):
    files = [rng.standard_normal((int(k), 12)) + i * 0.01 for i, k in enumerate(rng.integers(1, 9, size=25))]
    idx = rng.integers(0, 25, size=(3, 25))
    weights = np.stack([np.bincount(row, minlength=25) for row in idx]).astype(float)
    got = list(FileGaussians(files, max_bytes=max_bytes).resampled(weights))
    for (mean, cov), row in zip(got, idx, strict=True):
        stacked = np.concatenate([files[i] for i in row])
        np.testing.assert_allclose(mean, stacked.mean(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cov, np.cov(stacked, rowvar=False), rtol=1e-9, atol=1e-12)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("dim", [8, 300])
def test_per_file_updates_equal_numpy_cov_of_the_stacked_frames(rng, dim):
    """Files of 1-40 frames (some larger than the buffer) through one update each, as the worker calls it."""
    sizes = list(rng.integers(1, 6, size=500)) + [2 * max(dim, 256), 3, 1]
    files = [rng.standard_normal((int(k), dim)).astype(np.float32) * 2.0 + 3.0 for k in sizes]
    stats = GaussianStats(dim)
    for f in files:
        stats.update(f)
    stacked = np.concatenate(files).astype(np.float64)
    assert stats.n == len(stacked)
    assert _relative(stats.mean, stacked.mean(axis=0)) < 1e-12
    assert _relative(stats.cov, np.cov(stacked, rowvar=False)) < 1e-12


def test_buffered_frames_count_and_are_copied_on_update(rng):
    stats = GaussianStats(6)
    frames = rng.standard_normal((5, 6))
    stats.update(frames)
    assert stats.n == 5  # counted before any fold
    expected = np.cov(frames, rowvar=False)
    frames[:] = 1e6  # the caller reusing its array must not change the statistics
    assert _relative(stats.cov, expected) < 1e-12


def test_merge_and_bytes_fold_the_buffer_first(rng):
    a_frames, b_frames = rng.standard_normal((7, 5)), rng.standard_normal((9, 5)) + 1.0
    a, b = GaussianStats(5).update(a_frames), GaussianStats(5).update(b_frames)
    both = np.concatenate([a_frames, b_frames])
    merged = a.merge(b)
    assert merged.n == 16 and a.n == 7 and b.n == 9
    assert _relative(merged.cov, np.cov(both, rowvar=False)) < 1e-12
    back = GaussianStats.from_bytes(a.to_bytes())
    assert back.n == 7 and _relative(back.cov, np.cov(a_frames, rowvar=False)) < 1e-12
    a.update(b_frames)  # more frames after serialising still fold in
    assert _relative(a.cov, np.cov(both, rowvar=False)) < 1e-12


def test_stats_read_bytes_written_by_the_format_2_writer(rng):
    """Bytes as the previous (unbuffered) class wrote them: format, n, mean, centred M2."""
    frames = rng.standard_normal((30, 4))
    z = frames - frames.mean(axis=0)
    buf = io.BytesIO()
    np.savez(buf, format=np.int64(2), n=np.int64(30), mean=frames.mean(axis=0), m2=z.T @ z)
    stats = GaussianStats.from_bytes(buf.getvalue())
    np.testing.assert_allclose(stats.cov, np.cov(frames, rowvar=False), rtol=1e-12)
    stats.update(frames)
    np.testing.assert_allclose(stats.cov, np.cov(np.concatenate([frames, frames]), rowvar=False), rtol=1e-12)
