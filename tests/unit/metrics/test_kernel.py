"""KAD against a direct O(n^2) NumPy computation of the unbiased MMD^2 with a Gaussian RBF kernel."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from soundcheck.metrics import kernel_audio_distance, median_pairwise_distance
from soundcheck.metrics.kernel import KernelTerms


def gram(a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)  # broadcast differences, no norm expansion
    return np.exp(-d2 / (2.0 * h * h))


def direct_mmd2(x: np.ndarray, y: np.ndarray, h: float) -> float:
    m, n = len(x), len(y)
    kxx, kyy, kxy = gram(x, x, h), gram(y, y, h), gram(x, y, h)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def brute_median(x: np.ndarray) -> float:
    i, j = np.triu_indices(len(x), k=1)
    return float(np.median(np.sqrt(((x[i] - x[j]) ** 2).sum(axis=1))))


@pytest.mark.parametrize("h", [0.3, 1.0, 3.0, 30.0])
@pytest.mark.parametrize("block", [7, 2048])
def test_kad_equals_direct_unbiased_mmd(rng, h, block):
    x = rng.standard_normal((61, 6)) * 2.0 + 5.0
    y = rng.standard_normal((47, 6)) * 1.5 + 5.3
    got = kernel_audio_distance(x, y, bandwidth=h, scale=100.0, block_size=block)
    assert got.mmd2 == pytest.approx(direct_mmd2(x, y, h), rel=1e-9, abs=1e-13)
    assert got.value == pytest.approx(100.0 * got.mmd2)
    assert got.scale == 100.0 and got.bandwidth == h and got.bandwidth_source == "given"


def test_default_bandwidth_is_the_median_pairwise_distance_of_the_reference(rng):
    x, y = rng.standard_normal((80, 5)), rng.standard_normal((300, 5)) * 4.0
    got = kernel_audio_distance(x, y, block_size=16)
    assert got.bandwidth == pytest.approx(brute_median(x), rel=1e-12)
    assert got.median_points == 80
    assert got.mmd2 == pytest.approx(direct_mmd2(x, y, brute_median(x)), rel=1e-9)


def test_median_on_a_big_set_uses_a_seeded_subsample(rng):
    x = rng.standard_normal((500, 3))
    h1, used = median_pairwise_distance(x, max_points=100, seed=3)
    h2, _ = median_pairwise_distance(x, max_points=100, seed=3)
    assert used == 100 and h1 == h2
    assert h1 == pytest.approx(brute_median(x), rel=0.1)  # a 100-point median estimates the full one


def test_files_give_the_same_kad_as_their_concatenation(rng):
    x = rng.standard_normal((40, 4))
    files = [rng.standard_normal((k, 4)) for k in (1, 3, 9, 2)]
    a = kernel_audio_distance(x, files, bandwidth=1.5).mmd2
    b = kernel_audio_distance(x, np.concatenate(files), bandwidth=1.5).mmd2
    assert a == pytest.approx(b, rel=1e-12)


def test_kad_is_zero_in_expectation_for_one_distribution():
    """Unbiasedness: the mean over independent replicates is within 3 standard errors of 0, while the biased
    V-statistic (diagonal included) is clearly positive."""
    rng = np.random.default_rng(7)
    unbiased, biased = [], []
    for _ in range(60):
        x, y = rng.standard_normal((60, 4)), rng.standard_normal((50, 4))
        unbiased.append(kernel_audio_distance(x, y, bandwidth=2.0, scale=1.0).mmd2)
        biased.append(gram(x, x, 2.0).mean() + gram(y, y, 2.0).mean() - 2 * gram(x, y, 2.0).mean())
    mean, se = np.mean(unbiased), np.std(unbiased, ddof=1) / np.sqrt(len(unbiased))
    assert abs(mean) < 3 * se
    assert np.mean(biased) > 10 * se


def test_resampled_files_leave_out_pairs_of_two_copies_of_one_file(rng):
    x = rng.standard_normal((30, 3))
    files = [rng.standard_normal((k, 3)) + 0.2 for k in (2, 1, 4, 3)]
    weights = np.array([[2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 3.0, 0.0, 1.0]])
    got = KernelTerms(x, files, bandwidth=1.2, block_size=3).mmd2(weights)
    for row, value in zip(weights, got, strict=True):
        copies = [(f, c) for f, w in enumerate(row) for c in range(int(w))]
        y = np.concatenate([files[f] for f, _ in copies])
        tag = np.concatenate([[f * 100 + c] * len(files[f]) for f, c in copies])
        owner = np.concatenate([[f] * len(files[f]) for f, _ in copies])
        k = gram(y, y, 1.2)
        keep = ~np.eye(len(y), dtype=bool) & ~((owner[:, None] == owner[None, :]) & (tag[:, None] != tag[None, :]))
        kxx = gram(x, x, 1.2)
        expected = ((kxx.sum() - np.trace(kxx)) / (30 * 29) + k[keep].sum() / keep.sum()
                    - 2 * gram(x, y, 1.2).mean())
        assert value == pytest.approx(expected, rel=1e-9, abs=1e-13)


def test_kernel_sums_stay_blockwise_in_memory(rng):
    """6,000 x 6,000 float64 would be 288 MB; the blockwise sums must stay far below that."""
    x, y = rng.standard_normal((3000, 16)), rng.standard_normal((6000, 16))
    tracemalloc.start()
    kernel_audio_distance(x, y, bandwidth=4.0, block_size=512)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 * 2**20


def test_kad_needs_two_frames_and_a_positive_bandwidth(rng):
    with pytest.raises(ValueError):
        kernel_audio_distance(rng.standard_normal((1, 3)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError):
        kernel_audio_distance(np.ones((5, 3)), rng.standard_normal((5, 3)))
