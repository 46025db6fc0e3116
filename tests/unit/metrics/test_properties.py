"""Property tests (hypothesis): symmetry, identity, non-negativity, exact mergeable statistics."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from soundcheck.metrics import GaussianStats, frechet_distance, kernel_audio_distance, si_sdr
from soundcheck.metrics.coverage import jensen_shannon

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)


def frames(min_rows: int = 2, max_rows: int = 30, dim: int = 4):
    return arrays(np.float64, st.tuples(st.integers(min_rows, max_rows), st.just(dim)), elements=finite)


def gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.cov(x, rowvar=False)


def scale(*xs: np.ndarray) -> float:
    return 1.0 + max(float(np.abs(x).max()) for x in xs) ** 2


@SETTINGS
@given(frames(), frames())
def test_fd_is_symmetric_and_non_negative(x, y):
    ab, ba = frechet_distance(*gaussian(x), *gaussian(y)), frechet_distance(*gaussian(y), *gaussian(x))
    assert ab >= 0 and ba >= 0
    assert abs(ab - ba) <= 1e-6 * scale(x, y) * x.shape[1]


@SETTINGS
@given(frames())
def test_fd_of_a_gaussian_with_itself_is_zero(x):
    mu, sigma = gaussian(x)
    assert frechet_distance(mu, sigma, mu, sigma) <= 1e-6 * scale(x) * x.shape[1]


@SETTINGS
@given(frames(1, 20), frames(1, 20), frames(1, 20))
def test_merge_is_associative_and_equals_one_pass(a, b, c):
    sa, sb, sc = (GaussianStats.from_frames(x) for x in (a, b, c))
    left, right = sa.merge(sb).merge(sc), sa.merge(sb.merge(sc))
    whole = GaussianStats.from_frames(np.concatenate([a, b, c]))
    tol = 1e-9 * scale(a, b, c)
    assert left.n == right.n == whole.n
    np.testing.assert_allclose(left.mean_, right.mean_, atol=tol)
    np.testing.assert_allclose(left.m2, right.m2, atol=tol * whole.n)
    np.testing.assert_allclose(left.m2, whole.m2, atol=tol * whole.n)


@SETTINGS
@given(frames(2, 40), st.integers(1, 7))
def test_stats_do_not_depend_on_batch_size(x, batch):
    stats = GaussianStats(x.shape[1])
    for start in range(0, len(x), batch):
        stats.update(x[start:start + batch])
    tol = 1e-9 * scale(x)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), atol=tol)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), atol=tol)


@SETTINGS
@given(frames(0, 10))
def test_stats_bytes_round_trip(x):
    stats = GaussianStats(4).update(x)
    back = GaussianStats.from_bytes(stats.to_bytes())
    assert back.n == stats.n and np.array_equal(back.mean_, stats.mean_) and np.array_equal(back.m2, stats.m2)


@SETTINGS
@given(frames(2, 15), frames(2, 15), st.floats(0.5, 50.0))
def test_kad_with_a_fixed_bandwidth_is_symmetric(x, y, h):
    a = kernel_audio_distance(x, y, bandwidth=h, scale=1.0).mmd2
    b = kernel_audio_distance(y, x, bandwidth=h, scale=1.0).mmd2
    assert abs(a - b) <= 1e-9


@SETTINGS
@given(arrays(np.float64, 6, elements=st.floats(0, 1)), arrays(np.float64, 6, elements=st.floats(0, 1)))
def test_jsd_is_symmetric_and_bounded(p, q):
    if p.sum() == 0 or q.sum() == 0:
        return
    p, q = p / p.sum(), q / q.sum()
    assert abs(jensen_shannon(p, q) - jensen_shannon(q, p)) <= 1e-12
    assert -1e-12 <= jensen_shannon(p, q) <= np.log(2) + 1e-12


@SETTINGS
@given(arrays(np.float64, 64, elements=st.floats(-1, 1)), st.floats(0.01, 100.0))
def test_si_sdr_is_scale_invariant(x, gain):
    ref = np.sin(np.arange(64))
    est = ref + x
    a, b = si_sdr(ref, est), si_sdr(ref, gain * est)
    assert np.isnan(a) and np.isnan(b) or abs(a - b) <= 1e-6
