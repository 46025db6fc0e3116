"""File-level bootstrap: determinism, shared draws, coverage of the percentile interval, fast FAD resamples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from soundcheck.metrics import (
    GaussianStats,
    bootstrap_interval,
    bootstrap_weighted,
    frechet_distance,
    percentile_interval,
    resample_indices,
    resample_weights,
)
from soundcheck.metrics.bootstrap import interval_from_replicates
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


def nuclear_fd(ref_frames: np.ndarray, frames: np.ndarray) -> float:
    """Textbook FD from frames, exact for singular covariances: the non-zero eigenvalues of S_r S_c are the squared
    singular values of Z_r Z_c^T / sqrt((n_r - 1)(n_c - 1))."""
    zr, zc = ref_frames - ref_frames.mean(axis=0), frames - frames.mean(axis=0)
    nuclear = np.linalg.svd(zr @ zc.T, compute_uv=False).sum() / np.sqrt((len(zr) - 1) * (len(zc) - 1))
    diff = ref_frames.mean(axis=0) - frames.mean(axis=0)
    return float(diff @ diff + np.trace(np.cov(ref_frames, rowvar=False)) + np.trace(np.cov(frames, rowvar=False))
                 - 2.0 * nuclear)


def eigvals_fd(ref_frames: np.ndarray, frames: np.ndarray) -> float:
    """Textbook FD for full-rank covariances: tr((S_r S_c)^1/2) from the general eigenvalues of S_r S_c."""
    s_r, s_c = np.cov(ref_frames, rowvar=False), np.cov(frames, rowvar=False)
    root = np.sqrt(scipy.linalg.eigvals(s_r @ s_c).real).sum()
    diff = ref_frames.mean(axis=0) - frames.mean(axis=0)
    return float(diff @ diff + np.trace(s_r) + np.trace(s_c) - 2.0 * root)


@pytest.mark.parametrize("n_ref,sizes", [(3000, (1, 3)), (3000, (20, 40)), (30, (1, 4)), (30, (20, 40))],
                         ids=["gram", "scatter", "singular-ref-gram", "singular-ref-scatter"])
def test_streamed_fad_resamples_equal_the_textbook_on_restacked_frames(rng, n_ref, sizes):
    """Fewer candidate frames than dimensions (Gram path) and more (scatter path); a singular reference too."""
    dim = 48
    ref_frames = rng.standard_normal((n_ref, dim)) @ (np.eye(dim) + 0.2 * rng.standard_normal((dim, dim)))
    ref = FrechetReference.of(GaussianStats.from_frames(ref_frames))
    assert (ref.factor is None) == (n_ref < dim)
    files = [(rng.standard_normal((int(n), dim)) * 1.1 + 0.2).astype(np.float32)
             for n in rng.integers(*sizes, size=30)]
    weights = resample_weights(30, 5, seed=2)
    for gauss in (FileGaussians(files), FileGaussians(files, max_bytes=0)):  # cached and re-whitened frames
        got = gauss.fad(ref, weights)
        for b, idx in enumerate(resample_indices(30, 5, seed=2)):
            stacked = np.concatenate([files[i] for i in idx]).astype(np.float64)
            full_rank = n_ref > dim and len(stacked) > 4 * dim  # well conditioned; else the exact nuclear form
            expected = eigvals_fd(ref_frames, stacked) if full_rank else nuclear_fd(ref_frames, stacked)
            assert got[b] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("sizes", [(1, 3), (20, 40)], ids=["gram", "scatter"])
def test_torch_batched_resamples_equal_the_numpy_path(rng, sizes):
    pytest.importorskip("torch")
    dim = 40
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((500, dim))))
    files = [rng.standard_normal((int(n), dim)) + 0.1 for n in rng.integers(*sizes, size=25)]
    weights = resample_weights(25, 7, seed=4)
    gauss = FileGaussians(files)
    np.testing.assert_allclose(gauss.fad(ref, weights, device="cpu"), gauss.fad(ref, weights), rtol=1e-9)


def test_fad_bootstrap_checkpoints_between_blocks_and_a_raise_stops_it(rng):
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((200, 8))))
    gauss = FileGaussians([rng.standard_normal((3, 8)) for _ in range(20)])
    calls = []
    gauss.fad(ref, resample_weights(20, 50, seed=0), checkpoint=lambda: calls.append(1))
    assert len(calls) >= 50 // 8

    class Canceled(Exception):
        pass

    def cancel() -> None:
        raise Canceled

    with pytest.raises(Canceled):
        gauss.fad(ref, resample_weights(20, 50, seed=0), checkpoint=cancel)


def test_a_resample_of_one_frame_has_no_fad(rng):
    ref_frames = rng.standard_normal((200, 4))
    ref = FrechetReference.of(GaussianStats.from_frames(ref_frames))
    files = [rng.standard_normal((1, 4)), rng.standard_normal((5, 4))]
    values = FileGaussians(files).fad(ref, np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]]))
    assert np.isnan(values[0])  # one frame: no ddof=1 covariance
    diff = files[0][0] - ref_frames.mean(axis=0)  # two copies of one frame: covariance 0
    assert values[1] == pytest.approx(diff @ diff + np.trace(np.cov(ref_frames, rowvar=False)), rel=1e-12)
    assert values[2] == pytest.approx(nuclear_fd(ref_frames, np.concatenate(files)), rel=1e-9)


def test_fad_bootstrap_memory_does_not_grow_with_files_or_resamples(rng):
    """1,000 one-frame files in 256-d: per-file scatter matrices would take 500 MiB, B of them per resample more."""
    import tracemalloc

    dim = 256
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((2000, dim))))
    files = list(rng.standard_normal((1000, 1, dim)).astype(np.float32))
    gauss = FileGaussians(files)
    weights = resample_weights(1000, 40, seed=0)
    tracemalloc.start()
    values = gauss.fad(ref, weights)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.isfinite(values).all()
    # the float64 whitened frames (2 MiB) and one 1000 x 256 resample block (2 MiB) plus d x d factors
    assert peak < 16 * 2**20


def test_a_missing_device_falls_back_to_numpy_and_says_why(rng):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((200, 6))))
    files = [rng.standard_normal((3, 6)) for _ in range(10)]
    weights = resample_weights(10, 5, seed=0)
    gauss = FileGaussians(files)
    got = gauss.fad(ref, weights, device="cuda")
    assert gauss.fallback is not None
    np.testing.assert_array_equal(got, FileGaussians(files).fad(ref, weights))


def test_basic_interval_reflects_the_replicates_about_the_point():
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan])  # quartiles 1.75 and 3.25
    basic = interval_from_replicates(values, 0.5, point=2.0)
    assert (basic.low, basic.high, basic.valid, basic.resamples) == (0.75, 2.25, 4, 5)
    assert basic.bias == pytest.approx(0.5) and basic.method == "basic bootstrap over candidate files"
    assert interval_from_replicates(values, 0.5, point=2.0, bounds=(1.0, np.inf)).low == 1.0
    assert interval_from_replicates(values, 0.5, point=2.0, method="percentile").low == 1.75
    assert interval_from_replicates(values, 0.5, point=2.0, method="bias-shifted").low == pytest.approx(1.25)
    with pytest.raises(ValueError, match="method"):
        interval_from_replicates(values, 0.5, point=2.0, method="bca")


def test_evaluation_cancels_inside_the_fad_bootstrap(rng):
    """The job's checkpoint reaches the resample blocks: a cancel raised there stops the metric stage."""
    from soundcheck.evaluation import FileEmbedding, evaluate_embeddings
    from soundcheck.jobspec import MetricOptions

    def files(n: int, shift: float) -> list[FileEmbedding]:
        return [FileEmbedding(f"f{i}.wav", rng.standard_normal((3, 8)).astype(np.float32) + shift) for i in range(n)]

    calls = []

    class Canceled(Exception):
        pass

    def checkpoint() -> None:
        calls.append(1)
        if len(calls) == 3:  # the 1st is before the metric; the 2nd and 3rd after resample blocks
            raise Canceled

    with pytest.raises(Canceled):
        evaluate_embeddings(["fad"], files(40, 0.0), files(30, 0.3), MetricOptions(bootstrap=40),
                            checkpoint=checkpoint)
    assert len(calls) == 3


@pytest.mark.parametrize("sizes,n_ref", [((20, 40), 300), ((1, 12), 300), ((20, 40), 30), ((7, 8), 300)],
                         ids=["ragged", "ragged-with-singles", "singular-ref", "equal-lengths"])
def test_per_file_scatter_blocks_equal_the_streamed_resamples(rng, sizes, n_ref):
    """The "files" strategy (per-file scatters combined by one GEMM per block of resamples) against the
    straightforward per-resample scatter of the restacked frames ("frames"), to 1e-9 relative; both against
    the textbook FD of the restacked frames too. Small chunks and blocks, so that several of each are used."""
    from soundcheck.metrics import fad_blocks

    dim = 48
    ref_frames = rng.standard_normal((n_ref, dim)) @ (np.eye(dim) + 0.2 * rng.standard_normal((dim, dim)))
    ref = FrechetReference.of(GaussianStats.from_frames(ref_frames))
    files = [(rng.standard_normal((int(n), dim)) * 1.1 + 0.2).astype(np.float32)
             for n in rng.integers(*sizes, size=40)]
    weights = resample_weights(40, 11, seed=3)
    weights[4] = 0.0
    weights[4, 7] = 1.0  # one file of the draw only: NaN below 2 frames, else its own covariance
    streamed = FileGaussians(files, strategy="frames").fad(ref, weights)
    old = fad_blocks.CHUNK_BYTES, fad_blocks.BLOCK_BYTES
    fad_blocks.CHUNK_BYTES, fad_blocks.BLOCK_BYTES = 8 * 40 * 200, 4 * 8 * dim * dim  # ~200 cells, 4 per block
    try:
        blocks = fad_blocks.FileBlocks(*(lambda g: (g.frames, g.frame_file, g.counts, g.center))(
            FileGaussians(files)), np.eye(dim), 64)
        assert len(blocks.chunks) > 5 and fad_blocks.resamples_per_block(dim, 11) < 11
        calls = []
        got = FileGaussians(files, strategy="files").fad(ref, weights, checkpoint=lambda: calls.append(1))
    finally:
        fad_blocks.CHUNK_BYTES, fad_blocks.BLOCK_BYTES = old
    assert len(calls) >= 3  # one per block at least
    np.testing.assert_array_equal(np.isnan(got), np.isnan(streamed))
    keep = np.isfinite(streamed)
    np.testing.assert_allclose(got[keep], streamed[keep], rtol=1e-9)
    for b, idx in enumerate(resample_indices(40, 11, seed=3)):
        if b == 4:
            continue
        stacked = np.concatenate([files[i] for i in idx]).astype(np.float64)
        assert got[b] == pytest.approx(nuclear_fd(ref_frames, stacked), rel=1e-9)


def test_the_auto_strategy_uses_file_blocks_only_where_they_are_cheaper():
    from soundcheck.metrics.fad_blocks import prefer_file_blocks

    assert prefer_file_blocks(np.full(300, 10), 1024, 100)  # 300 x 10 frames at d = 1024 (the benchmark)
    assert prefer_file_blocks(np.full(1000, 7), 1024, 100)  # 1,000 x 7 (a YAMNet job of 4 s files)
    assert not prefer_file_blocks(np.full(300, 1), 1024, 100)  # m < d: the Gram path is cheaper
    assert not prefer_file_blocks(np.full(3000, 1), 1024, 100)  # one frame per file: no sharing
    assert not prefer_file_blocks(np.full(300, 10), 2048, 100)  # m ~ 1,900 < d: Gram path
    assert not prefer_file_blocks(np.full(300, 10), 1024, 1)  # one resample: nothing to share
    with pytest.raises(ValueError, match="strategy"):
        FileGaussians([np.zeros((2, 3))], strategy="fast")


def test_per_file_blocks_keep_the_bootstrap_memory_bounded(rng):
    """Memory of the blocked path is its packed block (BLOCK_BYTES), one chunk (CHUNK_BYTES) and the whitened
    frames: it does not grow with the number of resamples."""
    import tracemalloc

    from soundcheck.metrics import fad_blocks

    dim = 128
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((1000, dim))))
    files = list(rng.standard_normal((200, 6, dim)).astype(np.float32))
    old = fad_blocks.BLOCK_BYTES
    fad_blocks.BLOCK_BYTES = 8 * 8 * dim * dim  # 8 resamples per block
    peaks = []
    try:
        for resamples in (16, 64):
            gauss = FileGaussians(files, strategy="files")
            weights = resample_weights(200, resamples, seed=0)
            tracemalloc.start()
            gauss.fad(ref, weights)
            peaks.append(tracemalloc.get_traced_memory()[1] - weights.nbytes)
            tracemalloc.stop()
    finally:
        fad_blocks.BLOCK_BYTES = old
    assert peaks[1] < 1.1 * peaks[0] + 2**20


@pytest.mark.parametrize("sizes", [(1, 3), (20, 40)], ids=["gram", "scatter"])
def test_torch_batched_resamples_on_cuda_equal_the_numpy_path(rng, sizes):
    """Runs where a GPU is lent (skipped elsewhere): the batched CUDA eigenproblems against numpy, 1e-9."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    dim = 64
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((800, dim))))
    files = [rng.standard_normal((int(n), dim)) + 0.1 for n in rng.integers(*sizes, size=40)]
    weights = resample_weights(40, 30, seed=5)
    gauss = FileGaussians(files)
    got = gauss.fad(ref, weights, device="cuda")
    assert gauss.fallback is None
    np.testing.assert_allclose(got, FileGaussians(files).fad(ref, weights), rtol=1e-9)
