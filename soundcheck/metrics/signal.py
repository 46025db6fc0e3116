"""Signal metrics on paired mono waveforms (reference s, candidate s_hat), trimmed to the shorter one (except MCD
with DTW alignment, which pairs the frames of the whole files).

Spectra use a periodic Hann window, frames centred with zero padding (so a short file still has frames),
float64 throughout. Ratios are capped at ``MAX_DB`` so a perfect copy gives a large finite number, never inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dct

from soundcheck.embeddings.frontend import mel_matrix
from soundcheck.metrics.mcep import mel_alpha, mel_cepstrum

#: Cap of SNR and SI-SDR: above 16-bit quantisation (~96 dB) a copy is as good as identical.
MAX_DB = 100.0
LENGTH_TOLERANCE = 0.01
LSD_FFT, LSD_HOP, POWER_FLOOR = 2048, 512, 1e-10
MFCC_WINDOW_S, MFCC_HOP_S, MFCC_MELS, MFCC_COEFFS = 0.025, 0.010, 40, 13
#: MCD analysis: 25 ms Hamming frames every 5 ms (the WORLD frame period of pymcd and Merlin), FFT the next power of
#: two, mel-cepstrum of order 24 (c1..c24 compared), periodogram floor 1e-8 (SPTK's -e as pymcd and Merlin use it).
MCD_WINDOW_S, MCD_HOP_S, MCD_ORDER, MCD_EPS = 0.025, 0.005, 24, 1e-8
MCD_ALIGNMENTS = ("plain", "dtw")
#: DTW keeps an N x M cost table (8 bytes a cell): 16M cells is 20 s against 20 s at the 5 ms hop (128 MB).
DTW_MAX_CELLS = 16_000_000
#: Frames analysed at once: bounds memory to ~MCD_BLOCK x n_fft x 8 bytes a few times (16 MB at 48 kHz).
MCD_BLOCK = 1024
_DB = 10.0 / np.log(10.0)
MRSTFT_FFTS, MAG_FLOOR = (512, 1024, 2048), 1e-7


class SignalInputError(ValueError):
    """A pair this metric cannot take with these settings (DTW beyond its table size): the user's to fix."""


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


def mfcc(x: np.ndarray, sample_rate: int, n_coeffs: int = MFCC_COEFFS) -> np.ndarray:
    """MFCC [frames, n_coeffs]: 25 ms Hann / 10 ms hop, 40 HTK mel bands 0..sr/2, natural log of mel power
    (+1e-10), orthonormal DCT-II."""
    win = int(round(MFCC_WINDOW_S * sample_rate))
    n_fft = 2 ** int(np.ceil(np.log2(win)))
    power = stft_magnitude(x, n_fft, int(round(MFCC_HOP_S * sample_rate)), win) ** 2
    mel = power @ mel_matrix(MFCC_MELS, n_fft, sample_rate, 0.0, sample_rate / 2.0)
    return dct(np.log(mel + POWER_FLOOR), type=2, norm="ortho", axis=1)[:, :n_coeffs]


def mfcc_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Mean over time-aligned frames of (10 / ln 10) sqrt(2 sum_{k=1}^{12} (c_k - c_hat_k)^2) on 13 MFCC (c0
    excluded): the Kubichek constant on log-mel MFCC, soundcheck's `mcd` before version 2. Its values are 10-30x
    those of the mel-cepstral MCD, so it is no MCD to compare with papers."""
    s, e, _ = align_pair(ref, est)
    diff = mfcc(s, sample_rate)[:, 1:] - mfcc(e, sample_rate)[:, 1:]
    return float((_DB * np.sqrt(2.0 * (diff**2).sum(axis=1))).mean())


def _mcd_frame_view(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Frames [n, win] as a view (centred, zero padding as the other spectra here), the Hamming window, n_fft."""
    win, hop = int(round(MCD_WINDOW_S * sample_rate)), max(1, int(round(MCD_HOP_S * sample_rate)))
    x = np.pad(np.asarray(x, dtype=np.float64).ravel(), (win // 2, win // 2))
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    return np.lib.stride_tricks.sliding_window_view(x, win)[::hop], np.hamming(win), 2 ** int(np.ceil(np.log2(win)))


def _cepstra(view: np.ndarray, window: np.ndarray, n_fft: int, sample_rate: int, rows: slice) -> np.ndarray:
    return mel_cepstrum(view[rows] * window, MCD_ORDER, mel_alpha(sample_rate), n_fft, MCD_EPS)


def mel_cepstra(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mel-cepstra c0..c24 [frames, 25] by SPTK's mcep analysis, alpha from the sample rate (in blocks of frames,
    so an hour of audio never holds more than MCD_BLOCK spectra)."""
    view, window, n_fft = _mcd_frame_view(x, sample_rate)
    return np.concatenate([_cepstra(view, window, n_fft, sample_rate, slice(k, k + MCD_BLOCK))
                           for k in range(0, len(view), MCD_BLOCK)])


def _check_dtw_size(n: int, m: int) -> None:
    if n * m > DTW_MAX_CELLS:
        raise SignalInputError(f"DTW of {n} x {m} frames exceeds {DTW_MAX_CELLS} cells (about 20 s against 20 s at the "
                         "5 ms hop); use alignment 'plain' or shorter files")


def dtw_path(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of the cheapest monotone path from (0, 0) to (N-1, M-1) with steps (1,1), (1,0), (0,1) and
    Euclidean frame cost (the DTW that pymcd approximates with fastdtw, here exact). Anti-diagonals are
    filled at once; ties prefer the diagonal step."""
    n, m = len(a), len(b)
    _check_dtw_size(n, m)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        cost = np.sqrt(((a[i - 1] - b[j - 1]) ** 2).sum(axis=1))
        acc[i, j] = cost + np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        steps = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
        k = int(np.argmin(steps))
        i, j = (i - 1, j - 1) if k == 0 else (i - 1, j) if k == 1 else (i, j - 1)
    idx = np.array(path[::-1])
    return idx[:, 0], idx[:, 1]


def mel_cepstral_distortion(ref: np.ndarray, est: np.ndarray, sample_rate: int, alignment: str = "plain") -> float:
    """MCD (Kubichek 1993) in dB: mean over frames of (10 / ln 10) sqrt(2 sum_{k=1}^{24} (c~_k - c~hat_k)^2), c~
    the order-24 mel-cepstra of SPTK's mcep analysis (c0, the gain, excluded). ``alignment`` 'plain' pairs
    frame t with frame t after trimming both signals to the shorter; 'dtw' pairs the frames of the whole
    signals along the DTW path on c~1..c~24 and averages over the path."""
    if alignment not in MCD_ALIGNMENTS:
        raise ValueError(f"alignment must be one of {MCD_ALIGNMENTS}, not {alignment!r}")
    if alignment == "dtw":
        _check_dtw_size(len(_mcd_frame_view(ref, sample_rate)[0]), len(_mcd_frame_view(est, sample_rate)[0]))
        a, b = mel_cepstra(ref, sample_rate)[:, 1:], mel_cepstra(est, sample_rate)[:, 1:]
        i, j = dtw_path(a, b)
        return float(_frame_distortion(a[i], b[j]).mean())
    ref, est, _ = align_pair(ref, est)
    (va, window, n_fft), (vb, _, _) = _mcd_frame_view(ref, sample_rate), _mcd_frame_view(est, sample_rate)
    total = 0.0
    for k in range(0, len(va), MCD_BLOCK):
        rows = slice(k, k + MCD_BLOCK)
        a, b = _cepstra(va, window, n_fft, sample_rate, rows), _cepstra(vb, window, n_fft, sample_rate, rows)
        total += float(_frame_distortion(a[:, 1:], b[:, 1:]).sum())
    return total / len(va)


def _frame_distortion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(10 / ln 10) sqrt(2 sum_k (a_k - b_k)^2) per frame, dB."""
    return _DB * np.sqrt(2.0 * ((a - b) ** 2).sum(axis=1))


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
