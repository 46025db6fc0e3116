"""KAD against a direct O(n^2) NumPy computation of the unbiased MMD^2 with a Gaussian RBF kernel."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from soundcheck.metrics import kernel, kernel_audio_distance, median_pairwise_distance, pairwise
from soundcheck.metrics.bootstrap import resample_weights
from soundcheck.metrics.kernel import KernelReference, KernelTerms
from soundcheck.metrics.pairwise import median_of_pairs


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


# --- the median by blockwise selection, against scipy pdist + np.median -------------------------------------
# Tolerance: the blockwise distances are ||a||^2 + ||b||^2 - 2 a.b of median-centred points, whose rounding error
# is ~eps sqrt(dim) (||a||^2 + ||b||^2); centring makes the norms of the order of the distances, so each squared
# distance, and hence any order statistic of them, is within ~1e-14 relative of pdist's direct sum of squares.
# 1e-12 leaves two orders of magnitude for unlucky sets (the outlier set below is the worst we know).
MEDIAN_RTOL = 1e-12


def pdist_median(x: np.ndarray) -> float:
    return float(np.median(pdist(x)))


@pytest.mark.parametrize("name", ["gauss", "offset", "clusters", "duplicates", "integers", "outlier", "odd"])
def test_blockwise_median_equals_pdist_median(name):
    rng = np.random.default_rng(11)
    x = {
        "gauss": lambda: rng.standard_normal((1600, 24)),  # 1.28M pairs: more than SELECT_CAP, one pass
        "offset": lambda: rng.standard_normal((700, 64)) * 0.1 + 1e3,  # a large common offset
        "clusters": lambda: np.concatenate([rng.standard_normal((600, 8)) * 0.01 + 50,
                                            rng.standard_normal((900, 8)) * 0.01 - 50]),
        "duplicates": lambda: np.repeat(rng.standard_normal((30, 4)), 50, axis=0),  # many ties, many zeros
        "integers": lambda: rng.integers(0, 3, size=(1500, 3)).astype(float),  # few distinct distances
        "outlier": lambda: np.concatenate([rng.standard_normal((1499, 8)), np.full((1, 8), 1e6)]),
        "odd": lambda: rng.standard_normal((3, 5)),  # 3 pairs: the middle one, not a mean of two
    }[name]()
    assert median_of_pairs(x, block=256) == pytest.approx(pdist_median(x), rel=MEDIAN_RTOL)


@pytest.mark.parametrize("cap, pilot", [(500, 512), (50_000, 8), (20, 4)])
def test_selection_narrows_when_the_bracket_misses_or_overflows(monkeypatch, cap, pilot):
    """A tiny cap forces histogram passes; a tiny pilot gives brackets that miss the median's rank."""
    monkeypatch.setattr(pairwise, "SELECT_CAP", cap)
    monkeypatch.setattr(pairwise, "_PILOT_POINTS", pilot)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((300, 6)), rng.standard_normal((40, 6)) * 5 + 3])
    squared = np.sort(pdist(x) ** 2)
    ranks = [0, 17, len(squared) // 2, len(squared) - 1]
    got = pairwise.pair_order_statistics(x - np.median(x, axis=0), ranks, block=64)
    np.testing.assert_allclose(got, squared[ranks], rtol=MEDIAN_RTOL)
    assert median_of_pairs(x, block=64) == pytest.approx(pdist_median(x), rel=MEDIAN_RTOL)


def test_selection_of_tied_distances_with_a_tiny_cap(monkeypatch):
    monkeypatch.setattr(pairwise, "SELECT_CAP", 10)
    x = np.repeat(np.eye(3), 40, axis=0)  # distances 0 and sqrt(2) only
    assert median_of_pairs(x, block=32) == pdist_median(x)


def test_median_of_a_subsample_is_pdist_of_that_subsample(rng):
    x = rng.standard_normal((900, 10)) * 3.0
    h, used = median_pairwise_distance(x, max_points=500, seed=4)
    sub = x[np.random.default_rng(4).choice(900, 500, replace=False)]
    assert used == 500 and h == pytest.approx(pdist_median(sub), rel=MEDIAN_RTOL)


def test_median_selection_memory_is_bounded(rng):
    """3,000 points have 4.5M pairs (36 MB as float64, pdist + np.median's copy 72 MB); the selection keeps
    the pairs of a 1,024-point pilot (4 MB), those of one bracket and one block."""
    x = rng.standard_normal((3000, 8))
    tracemalloc.start()
    median_of_pairs(x, block=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 * 2**20


# --- the cacheable reference side ---------------------------------------------------------------------------

@pytest.mark.parametrize("bandwidth", [None, 1.7])
def test_a_cached_kernel_reference_gives_bit_equal_kad(rng, bandwidth):
    ref = rng.standard_normal((300, 6)).astype(np.float32)
    files = [rng.standard_normal((int(n), 6)).astype(np.float32) + 0.1 for n in rng.integers(1, 6, size=40)]
    weights = resample_weights(40, 7, seed=2)
    cold = KernelTerms(ref, files, bandwidth, block_size=64, seed=5)
    cold_point, cold_boot = cold.point_and_resamples(weights)
    cached = KernelReference.from_bytes(KernelReference.of(ref, bandwidth, seed=5, block_size=64).to_bytes())
    assert cached.frames.dtype == np.float32 and cached.n == 300
    warm = KernelTerms(None, files, bandwidth, block_size=64, seed=5, reference=cached)
    warm_point, warm_boot = warm.point_and_resamples(weights)
    assert warm_point == cold_point and np.array_equal(warm_boot, cold_boot)
    assert warm.bandwidth == cold.bandwidth and warm.ref_term == cold.ref_term
    assert warm.result(warm_point) == cold.result(cold_point)


def test_a_kernel_reference_refuses_other_options(rng):
    ref, files = rng.standard_normal((50, 3)), [rng.standard_normal((20, 3))]
    median = KernelReference.of(ref, None, seed=1)
    given = KernelReference.of(ref, 2.0)
    for reference, kwargs in [(median, {"seed": 2}), (median, {"bandwidth": 2.0}), (given, {"bandwidth": 3.0}),
                              (given, {"bandwidth": 2.0, "block_size": 16}), (given, {"bandwidth": 2.0,
                                                                                        "max_frames": 10})]:
        with pytest.raises(ValueError, match="other options"):
            KernelTerms(None, files, reference=reference, **kwargs)


def test_a_kernel_reference_stored_without_frames_takes_them_back_and_checks_them(rng):
    ref = rng.standard_normal((400, 5)).astype(np.float32)
    files = [rng.standard_normal((4, 5)) for _ in range(20)]
    full = KernelReference.of(ref, seed=2, max_frames=300)
    small = full.to_bytes(include_frames=False)
    assert len(small) <= len(full.to_bytes()) - full.frames.nbytes
    with pytest.raises(ValueError, match="without its frames"):
        KernelReference.from_bytes(small)
    back = KernelReference.from_bytes(small, frames=ref)
    assert np.array_equal(back.frames, full.frames)
    cold = KernelTerms(ref, files, seed=2, max_frames=300).point_and_resamples(resample_weights(20, 4, seed=0))
    warm = KernelTerms(None, files, seed=2, max_frames=300, reference=back).point_and_resamples(
        resample_weights(20, 4, seed=0))
    assert cold[0] == warm[0] and np.array_equal(cold[1], warm[1])
    other = ref.copy()
    other[:, 0] += 1.0  # every row: the subsample keeps 300 of them
    with pytest.raises(ValueError, match="not those"):
        KernelReference.from_bytes(small, frames=other)


def test_kernel_reference_bytes_are_npz_without_pickle(rng):
    data = KernelReference.of(rng.standard_normal((20, 3))).to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert all(z[name].dtype != object for name in z.files)


# --- bootstrap in resample blocks ---------------------------------------------------------------------------

def direct_resample_mmd2(x: np.ndarray, files: list[np.ndarray], row: np.ndarray, h: float) -> float:
    """One resample, straightforwardly: restack the copies, leave out pairs of two copies of one file."""
    copies = [(f, c) for f, w in enumerate(row) for c in range(int(w))]
    y = np.concatenate([files[f] for f, _ in copies])
    tag = np.concatenate([[f * 100 + c] * len(files[f]) for f, c in copies])
    owner = np.concatenate([[f] * len(files[f]) for f, _ in copies])
    k = gram(y, y, h)
    keep = ~np.eye(len(y), dtype=bool) & ~((owner[:, None] == owner[None, :]) & (tag[:, None] != tag[None, :]))
    kxx = gram(x, x, h)
    n = len(x)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + k[keep].sum() / keep.sum() - 2 * gram(x, y, h).mean())


@pytest.mark.parametrize("resample_block", [1, 3, 256])
def test_resamples_in_blocks_equal_a_direct_computation_per_resample(rng, monkeypatch, resample_block):
    monkeypatch.setattr(kernel, "RESAMPLE_BLOCK", resample_block)
    x = rng.standard_normal((40, 3))
    files = [rng.standard_normal((int(n), 3)) + 0.2 for n in rng.integers(1, 5, size=12)]
    weights = resample_weights(12, 8, seed=1)
    point, boot = KernelTerms(x, files, bandwidth=1.3, block_size=5).point_and_resamples(weights)
    assert point == pytest.approx(direct_mmd2(x, np.concatenate(files), 1.3), rel=1e-9, abs=1e-13)
    for row, value in zip(weights, boot, strict=True):
        assert value == pytest.approx(direct_resample_mmd2(x, files, row, 1.3), rel=1e-9, abs=1e-13)


def test_the_point_estimate_does_not_depend_on_the_resamples(rng):
    x, files = rng.standard_normal((60, 4)), [rng.standard_normal((3, 4)) for _ in range(30)]
    terms = KernelTerms(x, files, block_size=16)
    alone = terms.point_and_resamples(None)[0]
    assert terms.point_and_resamples(resample_weights(30, 300, seed=0))[0] == alone


def test_bootstrap_memory_does_not_grow_with_resamples(rng):
    """Before: a frames x B weight matrix (3,000 x 2,000 float64 = 48 MB) and a block x B product."""
    x, files = rng.standard_normal((500, 8)), [rng.standard_normal((10, 8)) for _ in range(300)]
    terms = KernelTerms(x, files, bandwidth=3.0, block_size=512)
    peaks = {}
    for b in (200, 2000):
        weights = resample_weights(300, b, seed=0)
        tracemalloc.start()
        terms.point_and_resamples(weights)
        peaks[b] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[2000] < peaks[200] + 2 * 2**20, peaks


# --- torch backend, cap, checkpoint -------------------------------------------------------------------------

def test_torch_backend_on_cpu_tensors_equals_numpy(rng):
    pytest.importorskip("torch")
    x = rng.standard_normal((90, 5)) + 1.0
    files = [rng.standard_normal((int(n), 5)) for n in rng.integers(1, 6, size=25)]
    weights = resample_weights(25, 9, seed=3)
    ours = KernelTerms(x, files, block_size=32).point_and_resamples(weights)
    torch_terms = KernelTerms(x, files, block_size=32, device="cpu")
    theirs = torch_terms.point_and_resamples(weights)
    assert torch_terms.backend == "torch:cpu" and torch_terms.reference.backend == "torch:cpu"
    with pytest.raises(ValueError, match="computed with numpy"):
        KernelTerms(None, files, block_size=32, device="cpu", reference=KernelReference.of(x, block_size=32))
    assert theirs[0] == pytest.approx(ours[0], rel=1e-9)
    np.testing.assert_allclose(theirs[1], ours[1], rtol=1e-9)


def test_torch_backend_on_cuda_equals_numpy(rng):
    """Runs where a GPU is lent (skipped elsewhere): the CUDA sums against numpy, same tolerance."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = rng.standard_normal((700, 32)) + 1.0
    files = [rng.standard_normal((int(n), 32)) for n in rng.integers(1, 12, size=120)]
    weights = resample_weights(120, 300, seed=3)
    ours = KernelTerms(x, files, block_size=256).point_and_resamples(weights)
    cuda = KernelTerms(x, files, block_size=256, device="cuda")
    theirs = cuda.point_and_resamples(weights)
    assert cuda.backend == "torch:cuda"
    assert theirs[0] == pytest.approx(ours[0], rel=1e-9)
    np.testing.assert_allclose(theirs[1], ours[1], rtol=1e-9)


def test_auto_device_never_imports_torch():
    code = ("import sys, numpy as np; from soundcheck.metrics.kernel import kernel_audio_distance;"
            "r = np.random.default_rng(0); print(kernel_audio_distance(r.standard_normal((20, 3)),"
            " r.standard_normal((20, 3)), device='auto').backend, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["numpy", "False"]


def test_max_frames_takes_a_seeded_subsample_named_in_the_result(rng):
    ref = rng.standard_normal((120, 4))
    files = [rng.standard_normal((10, 4)) + 0.3 for _ in range(9)]
    got = kernel_audio_distance(ref, files, seed=7, max_frames=50)
    ref_sub = ref[np.sort(np.random.default_rng([7, 0]).choice(120, 50, replace=False))]
    cand_sub = np.concatenate(files)[np.sort(np.random.default_rng([7, 1]).choice(90, 50, replace=False))]
    assert got.subsampled_from == {"reference": 120, "candidate": 90, "seed": 7, "max_frames": 50}
    assert got.bandwidth == pytest.approx(brute_median(ref_sub), rel=1e-12)
    assert got.mmd2 == pytest.approx(direct_mmd2(ref_sub, cand_sub, got.bandwidth), rel=1e-9)
    assert kernel_audio_distance(ref, files, seed=7, max_frames=500).subsampled_from is None


def test_a_raising_checkpoint_stops_kad_between_blocks(rng):
    calls = []

    def checkpoint() -> None:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("canceled")

    with pytest.raises(RuntimeError, match="canceled"):
        KernelTerms(rng.standard_normal((200, 3)), [rng.standard_normal((200, 3))], block_size=16,
                    checkpoint=checkpoint)
    assert len(calls) == 5


def test_evaluation_names_the_kad_subsample(rng):
    from soundcheck.evaluation import FileEmbedding, evaluate_embeddings
    from soundcheck.jobspec import MetricOptions

    ref = [FileEmbedding(f"r{i}", rng.standard_normal((10, 4)).astype(np.float32)) for i in range(10)]
    cand = [FileEmbedding(f"c{i}", rng.standard_normal((5, 4)).astype(np.float32)) for i in range(8)]
    res = evaluate_embeddings(["kad"], ref, cand, MetricOptions.model_validate({"bootstrap": 5, "seed": 3}),
                              kad_device="numpy", kad_max_frames=60)
    kad = res["metrics"]["kad"]
    assert kad["subsampled_from"] == {"reference": 100, "candidate": None, "seed": 3, "max_frames": 60}
    assert kad["backend"] == "numpy" and kad["interval"] is not None
    r = np.concatenate([f.frames for f in ref]).astype(np.float64)
    expected = kernel_audio_distance(r[np.sort(np.random.default_rng([3, 0]).choice(100, 60, replace=False))],
                                     np.concatenate([f.frames for f in cand]), seed=3)
    assert kad["value"] == pytest.approx(expected.value, rel=1e-12)
