"""Signal metrics against hand-computed cases and analytic identities."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.metrics import (
    align_pair,
    log_spectral_distance,
    mel_cepstral_distortion,
    multi_resolution_stft_distance,
    si_sdr,
    snr,
)
from soundcheck.metrics.signal import MAX_DB, mfcc


def test_snr_hand_case():
    s, e = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0])
    assert snr(s, e) == pytest.approx(10 * np.log10(30.0 / 1.0))


def test_snr_of_known_white_noise_level(rng):
    """sum n^2 of N Gaussian samples has relative sd sqrt(2/N) = 0.35% at N = 160,000, i.e. 0.015 dB; 0.1 dB
    is > 6 sd."""
    t = np.arange(160_000) / 16_000
    s = np.sin(2 * np.pi * 440 * t)  # power 1/2
    sigma = 0.05
    e = s + rng.normal(scale=sigma, size=len(s))
    assert snr(s, e) == pytest.approx(10 * np.log10(0.5 / sigma**2), abs=0.1)


def test_snr_and_si_sdr_are_capped_and_nan_for_silence(rng):
    s = rng.standard_normal(1000)
    assert snr(s, s) == MAX_DB
    assert si_sdr(s, 0.25 * s) == MAX_DB  # a scaled copy: scale invariant, capped instead of inf
    assert np.isnan(si_sdr(np.zeros(10), s[:10])) and np.isnan(snr(np.zeros(10), s[:10]))


def test_si_sdr_with_orthogonal_noise_is_exact(rng):
    s = rng.standard_normal(4000)
    n = rng.standard_normal(4000)
    s, n = s - s.mean(), n - n.mean()  # Le Roux et al. take zero-mean signals
    n -= (n @ s) / (s @ s) * s  # Gram-Schmidt: n orthogonal to s (and still zero-mean)
    n *= 0.1 * np.linalg.norm(s) / np.linalg.norm(n)  # 20 dB below the target
    assert si_sdr(s, 3.0 * s + n) == pytest.approx(10 * np.log10(9.0 / 0.01), rel=1e-10)
    assert si_sdr(s, 3.0 * s + n) == pytest.approx(si_sdr(s, -7.0 * (3.0 * s + n)), rel=1e-12)
    assert si_sdr(s + 5.0, 3.0 * s + n - 2.0) == pytest.approx(10 * np.log10(9.0 / 0.01), rel=1e-10)  # DC offsets


def test_identical_signals_have_zero_spectral_distances(rng):
    s = rng.standard_normal(8000)
    assert log_spectral_distance(s, s) == 0.0
    assert mel_cepstral_distortion(s, s, 16000) == 0.0
    res = multi_resolution_stft_distance(s, s)
    assert res["value"] == 0.0 and set(res["per_fft_size"]) == {"512", "1024", "2048"}


def test_a_gain_of_two_gives_the_analytic_spectral_distances(rng):
    """Doubling the amplitude adds 20 log10(2) dB to every bin (LSD), ln 2 to every log magnitude and 1 to the
    spectral convergence (||S - 2S|| / ||S||), and only shifts c0 of the MFCC (MCD excludes c0)."""
    s = rng.standard_normal(16000)
    assert log_spectral_distance(s, 2 * s) == pytest.approx(20 * np.log10(2), rel=1e-6)
    res = multi_resolution_stft_distance(s, 2 * s)
    assert res["spectral_convergence"] == pytest.approx(1.0, rel=1e-12)
    assert res["log_magnitude_l1"] == pytest.approx(np.log(2), rel=1e-6)
    assert mel_cepstral_distortion(s, 2 * s, 16000) == pytest.approx(0.0, abs=1e-6)


def test_mfcc_and_mcd_equal_a_direct_loop_formula(rng):
    sr, s, e = 8000, rng.standard_normal(2000), rng.standard_normal(2000)
    win, hop, n_fft, mels = 200, 80, 256, 40

    def direct_mfcc(x):
        from soundcheck.embeddings.frontend import mel_matrix
        x = np.pad(x, (win // 2, win // 2))
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
        weights = mel_matrix(mels, n_fft, sr, 0.0, sr / 2)
        m = np.arange(mels)
        basis = np.array([np.sqrt((1 if k == 0 else 2) / mels) * np.cos(np.pi * k * (2 * m + 1) / (2 * mels))
                          for k in range(13)])
        rows = []
        for start in range(0, len(x) - win + 1, hop):
            power = np.abs(np.fft.rfft(x[start:start + win] * window, n=n_fft)) ** 2
            rows.append(basis @ np.log(power @ weights + 1e-10))
        return np.array(rows)

    np.testing.assert_allclose(mfcc(s, sr), direct_mfcc(s), rtol=1e-9, atol=1e-9)
    diff = direct_mfcc(s)[:, 1:] - direct_mfcc(e)[:, 1:]
    expected = np.mean(10 / np.log(10) * np.sqrt(2 * (diff**2).sum(axis=1)))
    assert mel_cepstral_distortion(s, e, sr) == pytest.approx(expected, rel=1e-9)


def test_align_pair_trims_and_reports_length_differences_over_one_percent(rng):
    a, b, info = align_pair(np.ones(1000), np.ones(1005))
    assert len(a) == len(b) == 1000 and not info.mismatch
    _, _, info = align_pair(np.ones(1000), np.ones(1020))
    assert info.mismatch and info.relative_difference == pytest.approx(20 / 1020)
