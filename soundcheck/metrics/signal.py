"""Signal metrics on paired mono waveforms (reference s, candidate s_hat), trimmed to the shorter one.

Spectra use a periodic Hann window, frames centred with zero padding (so a short file still has frames),
float64 throughout. Ratios are capped at ``MAX_DB`` so a perfect copy gives a large finite number, never inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dct

from soundcheck.embeddings.frontend import mel_matrix

#: Cap of SNR and SI-SDR: above 16-bit quantisation (~96 dB) a copy is as good as identical.
MAX_DB = 100.0
LENGTH_TOLERANCE = 0.01
LSD_FFT, LSD_HOP, POWER_FLOOR = 2048, 512, 1e-10
MCD_WINDOW_S, MCD_HOP_S, MCD_MELS, MCD_COEFFS = 0.025, 0.010, 40, 13
MRSTFT_FFTS, MAG_FLOOR = (512, 1024, 2048), 1e-7


@dataclass(frozen=True)
class Alignment:
    reference_samples: int
    candidate_samples: int
    relative_difference: float

    @property
    def mismatch(self) -> bool:
        return self.relative_difference > LENGTH_TOLERANCE


def align_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, Alignment]:
    """Trim both to the shorter length; report the relative length difference (> 1% is a mismatch)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    n = min(len(a), len(b))
    longest = max(len(a), len(b))
    info = Alignment(len(a), len(b), (longest - n) / longest if longest else 0.0)
    return a[:n], b[:n], info


def _ratio_db(signal_energy: float, noise_energy: float) -> float:
    if signal_energy <= 0:
        return float("nan")  # undefined for a silent reference
    if noise_energy <= signal_energy * 10 ** (-MAX_DB / 10):
        return MAX_DB
    return float(10.0 * np.log10(signal_energy / noise_energy))


def snr(ref: np.ndarray, est: np.ndarray) -> float:
    """10 log10(sum s^2 / sum (s - s_hat)^2) in dB, capped at MAX_DB; NaN for a silent reference."""
    s, e, _ = align_pair(ref, est)
    return _ratio_db(float(s @ s), float((s - e) @ (s - e)))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR (Le Roux et al., ICASSP 2019): both signals made zero-mean as the paper assumes, then
    target = (<s_hat, s>/||s||^2) s, SI-SDR = 10 log10(||target||^2 / ||s_hat - target||^2), capped at MAX_DB."""
    s, e, _ = align_pair(ref, est)
    s, e = s - s.mean(), e - e.mean()
    energy = float(s @ s)
    if energy <= 0:
        return float("nan")
    target = (float(e @ s) / energy) * s
    if float(target @ target) <= 0:
        return -MAX_DB  # silent or orthogonal estimate: none of the reference is there (floor, never NaN)
    return _ratio_db(float(target @ target), float((e - target) @ (e - target)))


def stft_magnitude(x: np.ndarray, n_fft: int, hop: int, win_length: int | None = None) -> np.ndarray:
    """|STFT| [frames, n_fft // 2 + 1], periodic Hann window, centred frames (zero padding)."""
    win_length = win_length or n_fft
    x = np.pad(np.asarray(x, dtype=np.float64), (win_length // 2, win_length // 2))
    if len(x) < win_length:
        x = np.pad(x, (0, win_length - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win_length)[::hop]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    return np.abs(np.fft.rfft(frames * window, n=n_fft))


def log_spectral_distance(ref: np.ndarray, est: np.ndarray, n_fft: int = LSD_FFT, hop: int = LSD_HOP) -> float:
    """mean over frames of sqrt(mean over bins of (10 log10 P - 10 log10 P_hat)^2), in dB; P = |STFT|^2 +
    1e-10 (the floor keeps digital silence finite)."""
    s, e, _ = align_pair(ref, est)
    p = 10.0 * np.log10(stft_magnitude(s, n_fft, hop) ** 2 + POWER_FLOOR)
    q = 10.0 * np.log10(stft_magnitude(e, n_fft, hop) ** 2 + POWER_FLOOR)
    return float(np.sqrt(((p - q) ** 2).mean(axis=1)).mean())


def mfcc(x: np.ndarray, sample_rate: int, n_coeffs: int = MCD_COEFFS) -> np.ndarray:
    """MFCC [frames, n_coeffs]: 25 ms Hann / 10 ms hop, 40 HTK mel bands 0..sr/2, natural log of mel power
    (+1e-10), orthonormal DCT-II."""
    win = int(round(MCD_WINDOW_S * sample_rate))
    n_fft = 2 ** int(np.ceil(np.log2(win)))
    power = stft_magnitude(x, n_fft, int(round(MCD_HOP_S * sample_rate)), win) ** 2
    mel = power @ mel_matrix(MCD_MELS, n_fft, sample_rate, 0.0, sample_rate / 2.0)
    return dct(np.log(mel + POWER_FLOOR), type=2, norm="ortho", axis=1)[:, :n_coeffs]


def mel_cepstral_distortion(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Mean over time-aligned frames (no DTW) of (10 / ln 10) sqrt(2 sum_{k=1}^{12} (c_k - c_hat_k)^2) dB:
    13 MFCC c0..c12 with the energy term c0 excluded; the constant of Kubichek (1993) as used by TTS toolkits."""
    s, e, _ = align_pair(ref, est)
    diff = mfcc(s, sample_rate)[:, 1:] - mfcc(e, sample_rate)[:, 1:]
    return float((10.0 / np.log(10.0) * np.sqrt(2.0 * (diff**2).sum(axis=1))).mean())


def multi_resolution_stft_distance(ref: np.ndarray, est: np.ndarray, fft_sizes: tuple[int, ...] = MRSTFT_FFTS
                                   ) -> dict:
    """Spectral convergence ||S - S_hat||_F / ||S||_F plus mean |ln S - ln S_hat| (magnitudes floored at 1e-7),
    per FFT size (hop n/4, window n, as Parallel WaveGAN's loss), averaged over sizes; value = SC + log-mag."""
    s, e, _ = align_pair(ref, est)
    per_size = {}
    for n_fft in fft_sizes:
        a, b = stft_magnitude(s, n_fft, n_fft // 4), stft_magnitude(e, n_fft, n_fft // 4)
        norm = np.linalg.norm(a)
        sc = float(np.linalg.norm(a - b) / norm) if norm > 0 else float("nan")
        mag = float(np.abs(np.log(np.maximum(a, MAG_FLOOR)) - np.log(np.maximum(b, MAG_FLOOR))).mean())
        per_size[str(n_fft)] = {"spectral_convergence": sc, "log_magnitude_l1": mag}
    sc_mean = float(np.mean([v["spectral_convergence"] for v in per_size.values()]))
    mag_mean = float(np.mean([v["log_magnitude_l1"] for v in per_size.values()]))
    return {"value": sc_mean + mag_mean, "spectral_convergence": sc_mean, "log_magnitude_l1": mag_mean,
            "per_fft_size": per_size}
