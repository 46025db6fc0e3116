"""Mel-cepstral analysis as SPTK's ``mcep`` defines it (Fukada, Tokuda, Kobayashi & Imai, ICASSP 1992), in numpy.

A frame's periodogram I(w) is modelled as |H(e^jw)|^2 with H(z) = exp(sum_{m=0}^{M} c~(m) z~^-m), where
z~^-1 = (z^-1 - alpha) / (1 - alpha z^-1) is a first-order all-pass whose phase approximates the mel scale.
c~ minimises the unbiased log-spectral criterion (1/2pi) int [E - ln E - 1] dw, E = I / |H|^2, which is convex in
c~; Newton-Raphson steps start from the warped real cepstrum. Every warping is an exact linear map: the power-series
coefficients of powers of the all-pass (built once per alpha and size), so each step is a few matrix products,
vectorised over frames, in float64.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: SPTK's defaults for mcep (and pysptk's): at least 2, at most 30 Newton steps, stop when the warped residual
#: energy r~(0) changes by less than this fraction.
MIN_ITER, MAX_ITER, THRESHOLD = 2, 30, 1e-3


@lru_cache(maxsize=64)
def mel_alpha(sample_rate: float, points: int = 1000, step: float = 0.001) -> float:
    """All-pass constant whose normalised phase response best matches the normalised mel scale (least squares on
    ``points`` uniform frequencies in [0, sr/2), alpha on a grid of ``step``). The mel scale is Fant's
    1000 log2(1 + f / 1000) as in the mcep_alpha_calc tool that ``pysptk.util.mcepalpha`` follows: 0.410 at
    16 kHz, 0.455 at 22.05 kHz, 0.466 at 24 kHz, 0.544 at 44.1 kHz, 0.554 at 48 kHz."""
    frac = np.arange(points, dtype=np.float64) / points
    mel = np.log1p(frac * sample_rate / 2.0 / 1000.0)
    mel /= mel[-1]
    omega = np.pi * frac
    alphas = np.arange(0.0, 1.0, step)[:, None]
    phase = omega + 2.0 * np.arctan2(alphas * np.sin(omega), 1.0 - alphas * np.cos(omega))
    phase /= phase[:, -1:]
    return float(np.round(alphas[int(np.argmin(((phase - mel) ** 2).mean(axis=1))), 0], 6))


@lru_cache(maxsize=64)
def allpass_powers(alpha: float, n_in: int, n_out: int) -> np.ndarray:
    """P [n_out + 1, n_in + 1]: column n holds the first n_out + 1 power-series coefficients (in w) of
    ((w + alpha) / (1 + alpha w))^n. With w = z~^-1 that is z^-n, so P maps a causal cepstrum to its warped
    version (and P(-alpha) maps back)."""
    series = np.empty(n_out + 1)
    series[0] = alpha
    series[1:] = (1.0 - alpha * alpha) * (-alpha) ** np.arange(n_out)
    out = np.zeros((n_out + 1, n_in + 1))
    out[0, 0] = 1.0
    for n in range(1, n_in + 1):
        out[:, n] = np.convolve(out[:, n - 1], series)[: n_out + 1]
    out.flags.writeable = False
    return out


@lru_cache(maxsize=64)
def _newton_maps(alpha: float, n_fft: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Two matrices that make a Newton step two products: ``to_log_amp`` [order + 1, n_fft/2 + 1] takes c~ to
    ln|H| on the FFT bins (un-warp with P(-alpha), then the cosine series of a causal cepstrum), ``to_corr``
    [n_fft/2 + 1, 2 order + 1] takes E = I / |H|^2 on the bins to the warped autocorrelation r~(k) =
    (1/2pi) int E(w) cos(k beta(w)) dw = sum_n g_kn r(n): r(n) is the inverse DFT of E, and g_kn, the coefficient
    of z^-n in z~^-k, is P(-alpha) transposed."""
    half = n_fft // 2
    n = np.arange(half + 1)
    cos = np.cos(2.0 * np.pi * np.outer(n, n) / n_fft)  # [n, k], symmetric
    to_log_amp = allpass_powers(-alpha, order, half).T @ cos
    weights = np.full(half + 1, 2.0 / n_fft)
    weights[0] = weights[half] = 1.0 / n_fft  # the real inverse DFT of a spectrum symmetric about n_fft/2
    to_corr = (cos * weights[:, None]) @ allpass_powers(-alpha, 2 * order, half)
    for m in (to_log_amp, to_corr):
        m.flags.writeable = False
    return to_log_amp, to_corr


def mel_cepstrum(frames: np.ndarray, order: int, alpha: float, n_fft: int, eps: float,
                 min_iter: int = MIN_ITER, max_iter: int = MAX_ITER, threshold: float = THRESHOLD) -> np.ndarray:
    """Mel-cepstra c~(0..order) [n_frames, order + 1] of windowed frames [n_frames, <= n_fft] (zero-padded to
    ``n_fft``, a power of two as SPTK requires); ``eps`` is added to the periodogram (SPTK's -e) so silence stays
    finite. A frame stops at the rule of SPTK: from step ``min_iter`` on, when r~(0) moved by less than
    ``threshold`` relative to the previous step (the first comparison is against the initial cepstrum's c(0))."""
    frames = np.atleast_2d(np.asarray(frames, dtype=np.float64))
    half = n_fft // 2
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2 + eps  # periodogram, bins 0..n_fft/2
    cep = np.fft.irfft(np.log(power), n=n_fft, axis=1)[:, : half + 1]
    cep[:, 0] /= 2.0  # the causal (minimum-phase) cepstrum of the amplitude: c(0) and c(n/2) once, c(n) twice
    cep[:, half] /= 2.0
    mc = cep @ allpass_powers(float(alpha), half, order).T
    previous = cep[:, 0].copy()
    to_log_amp, to_corr = _newton_maps(float(alpha), n_fft, order)
    target = (-alpha) ** np.arange(order + 1)  # (1/2pi) int cos(k beta) dw
    idx = np.arange(order + 1)
    diff_idx, sum_idx = np.abs(idx[:, None] - idx[None, :]), idx[:, None] + idx[None, :]
    active = np.ones(len(frames), dtype=bool)
    for step in range(1, max_iter + 1):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        residual = power[rows] / np.exp(2.0 * (mc[rows] @ to_log_amp))  # E = I / |H|^2
        r = residual @ to_corr  # r~(0 .. 2 order)
        if step >= min_iter:
            done = np.abs((r[:, 0] - previous[rows]) / r[:, 0]) < threshold
            active[rows[done]] = False
            previous[rows] = r[:, 0]
            rows, r = rows[~done], r[~done]
            if not len(rows):
                break
        hessian = r[:, diff_idx] + r[:, sum_idx]  # Toeplitz + Hankel (half the Hessian; gradient halved too)
        mc[rows] += _solve(hessian, r[:, : order + 1] - target, active, rows)
    return mc


def _solve(a: np.ndarray, b: np.ndarray, active: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Newton steps of a batch; a frame whose system is singular (a degenerate spectrum) keeps its estimate."""
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.zeros_like(b)
        for k in range(len(b)):
            try:
                out[k] = np.linalg.solve(a[k], b[k])
            except np.linalg.LinAlgError:
                active[rows[k]] = False
        return out
