"""Signal metrics against hand-computed cases, analytic identities and (MCD) the reference package pysptk."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from soundcheck.metrics import (
    align_pair,
    log_spectral_distance,
    mel_cepstral_distortion,
    mfcc_distance,
    multi_resolution_stft_distance,
    si_sdr,
    snr,
)
from soundcheck.metrics.mcep import allpass_powers, mel_alpha, mel_cepstrum
from soundcheck.metrics.signal import MAX_DB, MCD_EPS, dtw_path, mfcc


def _pysptk():
    """pysptk 1.0.1 (test extra) imports pkg_resources only to locate its example file; setuptools >= 81 no longer
    ships it, so a stand-in module is enough for the analysis functions."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.modules.setdefault("pkg_resources", types.ModuleType("pkg_resources"))
    return pytest.importorskip("pysptk")


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
    assert mel_cepstral_distortion(s, s, 16000, "dtw") == 0.0
    assert mfcc_distance(s, s, 16000) == 0.0
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
    assert mfcc_distance(s, 2 * s, 16000) == pytest.approx(0.0, abs=1e-6)
    assert mel_cepstral_distortion(s, 2 * s, 16000) == pytest.approx(0.0, abs=1e-6)


def test_mfcc_and_mfcc_distance_equal_a_direct_loop_formula(rng):
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
    assert mfcc_distance(s, e, sr) == pytest.approx(expected, rel=1e-9)


def test_align_pair_trims_and_reports_length_differences_over_one_percent(rng):
    a, b, info = align_pair(np.ones(1000), np.ones(1005))
    assert len(a) == len(b) == 1000 and not info.mismatch
    _, _, info = align_pair(np.ones(1000), np.ones(1020))
    assert info.mismatch and info.relative_difference == pytest.approx(20 / 1020)


# --- MCD: SPTK mel-cepstral analysis ------------------------------------------------------------------------------

def test_mel_alpha_is_the_published_value_per_sample_rate():
    """pysptk.util.mcepalpha's values (also ESPnet's table): the least-squares fit of the all-pass phase to the mel
    scale. The 0.42 of HTS recipes at 16 kHz is a rounded tradition; the fit gives 0.410."""
    pysptk = _pysptk()
    published = {16000: 0.41, 22050: 0.455, 24000: 0.466, 44100: 0.544, 48000: 0.554}
    for rate, alpha in published.items():
        assert mel_alpha(rate) == pytest.approx(alpha, abs=1e-9)
    for rate in (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000):
        assert mel_alpha(rate) == pytest.approx(pysptk.util.mcepalpha(rate), abs=1e-9)


@pytest.mark.parametrize("alpha,pole", [(0.42, 0.9), (0.55, -0.6), (-0.3, 0.5)])
def test_allpass_warping_of_a_one_pole_cepstrum_is_analytic(alpha, pole):
    """ln 1/(1 - p z^-1) has cepstrum p^n / n; with z^-1 = (w + a)/(1 + a w) it is
    -ln(1 - p a) - ln(1 + q w) + ln(1 + a w), q = (a - p)/(1 - p a), whose series is closed-form."""
    n_in, n_out = 400, 30
    cep = np.r_[0.0, pole ** np.arange(1, n_in + 1) / np.arange(1, n_in + 1)]
    q = (alpha - pole) / (1 - pole * alpha)
    k = np.arange(1, n_out + 1)
    expected = np.r_[-np.log(1 - pole * alpha), (-1.0) ** k * (q**k - alpha**k) / k]
    np.testing.assert_allclose(allpass_powers(alpha, n_in, n_out) @ cep, expected, rtol=1e-10, atol=1e-12)
    k = np.arange(1, 301)  # un-warping the (long) warped series recovers the linear cepstrum
    warped = np.r_[-np.log(1 - pole * alpha), (-1.0) ** k * (q**k - alpha**k) / k]
    np.testing.assert_allclose(allpass_powers(-alpha, 300, 40) @ warped, cep[:41], atol=1e-10)


def _speech_like(rng, n, sr):
    """Glottal pulses at 120 Hz through two resonances, plus breath noise: a harmonic spectrum with formants."""
    from scipy.signal import lfilter

    pulses = np.zeros(n)
    pulses[:: sr // 120] = 1.0
    x = pulses + 0.02 * rng.standard_normal(n)
    for freq, bw in ((700.0, 80.0), (1200.0, 100.0)):
        r = np.exp(-np.pi * bw / sr)
        x = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], x)
    return x / np.abs(x).max() * 0.5


def _espeak(tmp_path, text, *args):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / f"{abs(hash((text, args)))}.wav"
    subprocess.run(["espeak-ng", *args, "-w", str(path), text], check=True, capture_output=True)
    x, sr = sf.read(path)
    return x, sr


@pytest.mark.parametrize("sr,win,n_fft", [(16000, 400, 512), (22050, 551, 1024), (48000, 1200, 2048)])
def test_mel_cepstrum_equals_pysptk_mcep_frame_by_frame(rng, sr, win, n_fft):
    """Same frames, same settings: our vectorised Newton iterations reproduce SPTK's mcep (as pysptk wraps it) to
    rounding, on white noise, a harmonic speech-like signal and digital silence (the floor alone)."""
    pysptk = _pysptk()
    alpha = pysptk.util.mcepalpha(sr)
    window = np.hamming(win)
    signals = [0.1 * rng.standard_normal(sr // 4), _speech_like(rng, sr // 4, sr), np.zeros(2 * win)]
    for x in signals:
        frames = np.stack([np.pad(x[i:i + win] * window, (0, n_fft - win)) for i in range(0, len(x) - win, win // 2)])
        ours = mel_cepstrum(frames, 24, alpha, n_fft, MCD_EPS)
        ref = np.stack([pysptk.mcep(f, order=24, alpha=alpha, etype=1, eps=MCD_EPS) for f in frames])
        np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-9)


def _reference_mcd(pysptk, ref, est, sr, path=None):
    """The published pipeline written out with pysptk: centred 25 ms Hamming frames every 5 ms, zero-padded to a
    power of two, pysptk.mcep order 24 with pysptk's alpha, (10 / ln 10) sqrt(2 sum_1^24 d^2) averaged."""
    win, hop = round(0.025 * sr), round(0.005 * sr)
    n_fft = 1 << (win - 1).bit_length()
    alpha, window = pysptk.util.mcepalpha(sr), np.hamming(win)

    def cepstra(x):
        x = np.pad(x, (win // 2, win // 2))
        return np.array([pysptk.mcep(np.pad(x[i:i + win] * window, (0, n_fft - win)), order=24, alpha=alpha,
                                     etype=1, eps=1e-8) for i in range(0, len(x) - win + 1, hop)])

    a, b = cepstra(ref), cepstra(est)
    if path is None:
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
    else:
        a, b = a[path[0]], b[path[1]]
    return float(np.mean(10 / np.log(10) * np.sqrt(2 * ((a[:, 1:] - b[:, 1:]) ** 2).sum(axis=1))))


def test_mcd_equals_the_pysptk_pipeline_on_speech(tmp_path, rng):
    """espeak-ng speech (22.05 kHz) against a noisy copy and a low-passed copy; a synthetic pair at 16 kHz. The
    reference pipeline differs from ours only in code, so the values agree to rounding."""
    pysptk = _pysptk()
    from scipy.signal import butter, lfilter

    speech, sr = _espeak(tmp_path, "Mel cepstral distortion of a short sentence.")
    noisy = speech + 0.003 * rng.standard_normal(len(speech))
    low = lfilter(*butter(4, 6000 / (sr / 2)), speech)
    for cand in (noisy, low):
        assert mel_cepstral_distortion(speech, cand, sr) == pytest.approx(_reference_mcd(pysptk, speech, cand, sr),
                                                                          rel=1e-9)
    a, b = _speech_like(rng, 8000, 16000), _speech_like(rng, 8000, 16000) + 0.01 * rng.standard_normal(8000)
    assert mel_cepstral_distortion(a, b, 16000) == pytest.approx(_reference_mcd(pysptk, a, b, 16000), rel=1e-9)


def test_mcd_in_blocks_of_frames_equals_the_pysptk_pipeline(rng, monkeypatch):
    """Long files are analysed in blocks of MCD_BLOCK frames; block edges must not change a value."""
    pysptk = _pysptk()
    from soundcheck.metrics import signal

    a = _speech_like(rng, 6000, 16000)
    b = a + 0.02 * rng.standard_normal(6000)
    monkeypatch.setattr(signal, "MCD_BLOCK", 37)  # 76 frames: blocks of 37, 37 and 2
    expected = _reference_mcd(pysptk, a, b, 16000)
    assert mel_cepstral_distortion(a, b, 16000) == pytest.approx(expected, rel=1e-9)
    assert mel_cepstral_distortion(a, b[:5000], 16000, "dtw") > 0.0


def _direct_dtw(a, b):
    """Textbook DTW: a cell-by-cell loop over the accumulated cost, then the backtrack, ties to the diagonal."""
    n, m = len(a), len(b)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = np.linalg.norm(a[i - 1] - b[j - 1]) + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        k = int(np.argmin([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]]))
        i, j = [(i - 1, j - 1), (i - 1, j), (i, j - 1)][k]
    return acc[n, m], np.array(path[::-1]).T


def test_dtw_path_equals_a_direct_loop(rng):
    a, b = rng.standard_normal((23, 4)), rng.standard_normal((31, 4))
    total, (pi, pj) = _direct_dtw(a, b)
    i, j = dtw_path(a, b)
    np.testing.assert_array_equal(i, pi)
    np.testing.assert_array_equal(j, pj)
    assert np.linalg.norm(a[i] - b[j], axis=1).sum() == pytest.approx(total, rel=1e-12)


def test_mcd_with_dtw_equals_the_pysptk_pipeline_on_its_path_and_realigns_a_delay(tmp_path, rng):
    """A candidate that starts 0.2 s late: plain alignment compares shifted frames, DTW finds the shift. The DTW
    value equals the pysptk pipeline averaged over the path of the direct-loop DTW on pysptk's cepstra."""
    pysptk = _pysptk()
    speech, sr = _espeak(tmp_path, "Time warping.")
    late = np.concatenate([np.zeros(int(0.2 * sr)), speech]) + 1e-3 * rng.standard_normal(len(speech) + int(0.2 * sr))
    dtw = mel_cepstral_distortion(speech, late, sr, "dtw")
    plain = mel_cepstral_distortion(speech, late, sr)
    assert dtw < 0.5 * plain

    win, hop = round(0.025 * sr), round(0.005 * sr)
    n_fft, alpha = 1 << (win - 1).bit_length(), pysptk.util.mcepalpha(sr)

    def cepstra(x):
        x = np.pad(x, (win // 2, win // 2))
        return np.array([pysptk.mcep(np.pad(x[i:i + win] * np.hamming(win), (0, n_fft - win)), order=24,
                                     alpha=alpha, etype=1, eps=1e-8)[1:] for i in range(0, len(x) - win + 1, hop)])

    _, path = _direct_dtw(cepstra(speech), cepstra(late))
    assert dtw == pytest.approx(_reference_mcd(pysptk, speech, late, sr, path=path), rel=1e-9)


def test_dtw_refuses_pairs_beyond_its_table_size():
    with pytest.raises(ValueError, match="alignment 'plain'"):
        dtw_path(np.zeros((5000, 2)), np.zeros((5000, 2)))
    with pytest.raises(ValueError, match="alignment must be"):
        mel_cepstral_distortion(np.ones(100), np.ones(100), 16000, "soft")


def test_mcd_of_typical_degradations_is_in_the_published_range(tmp_path, rng):
    """Not an expected value, a plausibility band: TTS papers report MCD of 4-8 dB for good systems and ~0 for a
    copy; a 30 dB-noisy copy of speech and a tone under 20 dB white noise are ordinary degradations (1-15 dB),
    and the MFCC-on-log-mel variant is an order of magnitude larger (why it is no longer called mcd)."""
    speech, sr = _espeak(tmp_path, "A speech file and a slightly perturbed copy.")
    noisy = speech + rng.normal(scale=np.sqrt((speech**2).mean() / 1000), size=len(speech))  # 30 dB SNR
    t = np.arange(48000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    tone_noise = tone + rng.normal(scale=np.sqrt(0.125 / 100), size=len(t))  # 20 dB SNR
    for ref, cand, rate in ((speech, noisy, sr), (tone, tone_noise, 16000)):
        value = mel_cepstral_distortion(ref, cand, rate)
        assert 1.0 < value < 15.0
        assert mfcc_distance(ref, cand, rate) > 5 * value


def test_evaluate_signals_names_the_mcd_analysis_and_alignment(rng):
    from soundcheck.evaluation import MetricInputError, metric_versions
    from soundcheck.jobspec import MetricOptions
    from soundcheck.signal_evaluation import evaluate_signals

    pairs = [(f"f{i}.wav", _speech_like(rng, 4000, 16000), _speech_like(rng, 4400, 16000) + 0.01 * rng.standard_normal(
        4400), 16000) for i in range(3)]
    options = MetricOptions.model_validate({"bootstrap": 0, "mcd": {"alignment": "dtw"}})
    res = evaluate_signals(["mcd", "mfcc_distance"], iter(pairs), options)
    mcd = res["metrics"]["mcd"]
    assert mcd["alignment"] == "dtw" and mcd["order"] == 24 and mcd["alpha"] == {"16000": pytest.approx(0.41)}
    assert mcd["value"] == pytest.approx(np.mean([mel_cepstral_distortion(a, b, sr, "dtw") for _, a, b, sr in pairs]))
    assert res["metrics"]["mfcc_distance"]["value"] == pytest.approx(
        np.mean([mfcc_distance(a, b, sr) for _, a, b, sr in pairs]))
    assert any("aligned the whole files" in w for w in res["warnings"])  # 10% longer candidates, not trimmed
    plain = evaluate_signals(["mcd"], iter(pairs), MetricOptions(bootstrap=0))["metrics"]["mcd"]
    assert plain["alignment"] == "plain" and plain["value"] != pytest.approx(mcd["value"])
    assert metric_versions()["mcd"] == "2" and metric_versions()["mfcc_distance"] == "1"
    long_pair = [("long.wav", np.zeros(16000 * 25), np.zeros(16000 * 25), 16000)]
    with pytest.raises(MetricInputError, match="mcd of long.wav: DTW"):
        evaluate_signals(["mcd"], long_pair, options)


def test_mcd_options_are_checked_at_the_door():
    from pydantic import ValidationError

    from soundcheck.jobspec import JobCreate

    spec = JobCreate.model_validate({"reference": "a", "candidate": "b", "metrics": ["mcd", "mfcc_distance"],
                                     "options": {"mcd": {"alignment": "dtw"}}})
    assert spec.options.mcd.alignment == "dtw"
    with pytest.raises(ValidationError, match="alignment"):
        JobCreate.model_validate({"reference": "a", "candidate": "b", "options": {"mcd": {"alignment": "soft"}}})


def test_a_singular_newton_system_stops_only_its_own_frame():
    from soundcheck.metrics.mcep import _solve

    a = np.stack([2.0 * np.eye(3), np.zeros((3, 3))])
    b = np.ones((2, 3))
    active = np.ones(5, dtype=bool)
    step = _solve(a, b, active, np.array([1, 3]))
    np.testing.assert_array_equal(step, [[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    assert active.tolist() == [True, True, True, False, True]
