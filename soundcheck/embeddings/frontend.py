"""Numpy front ends shared by the weight-free `mel` model and the AudioSet models (YAMNet, VGGish).

The mel matrix follows the construction of the VGGish/YAMNet papers' reference code (HTK mel scale,
triangles in mel space, DC bin zeroed); the framing is "valid" (no centre padding). float64 inside.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hertz, dtype=np.float64) / 700.0)


def mel_matrix(
    n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float
) -> np.ndarray:
    """Weights ``[n_fft // 2 + 1, n_mels]`` mapping a magnitude spectrum to mel bands (no normalisation)."""
    nyquist = sample_rate / 2.0
    if not 0.0 <= fmin < fmax <= nyquist:
        raise ValueError(f"need 0 <= fmin < fmax <= {nyquist}, got {fmin}, {fmax}")
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, n_fft // 2 + 1))
    edges = np.linspace(hertz_to_mel(fmin), hertz_to_mel(fmax), n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def periodic_hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def frame(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Valid frames ``[n, length]`` (no padding); zero frames when the signal is shorter than one."""
    n = 1 + (len(signal) - length) // hop if len(signal) >= length else 0
    if n == 0:
        return np.zeros((0, length), dtype=signal.dtype)
    return np.lib.stride_tricks.sliding_window_view(signal, length)[::hop][:n]


#: Frames windowed and transformed at a time: the window product and the complex spectrum of a whole long file
#: would be ~4x the size of the magnitudes (2 GB for an hour at 16 kHz); each row is transformed on its own,
#: so the result is the same to the last bit.
STFT_BLOCK_FRAMES = 4096


def stft_magnitude(signal: np.ndarray, n_fft: int, hop: int, window_length: int) -> np.ndarray:
    """|STFT| ``[n_frames, n_fft // 2 + 1]`` with a periodic Hann window, frames not centred."""
    signal = np.asarray(signal)
    if signal.dtype not in (np.float32, np.float64):
        signal = signal.astype(np.float64)
    frames = frame(signal, window_length, hop)  # a view; each block is widened to float64 (exactly) on its own
    window = periodic_hann(window_length)
    out = np.empty((len(frames), n_fft // 2 + 1), dtype=np.float64)
    for start in range(0, len(frames), STFT_BLOCK_FRAMES):
        stop = start + STFT_BLOCK_FRAMES
        out[start:stop] = np.abs(np.fft.rfft(frames[start:stop].astype(np.float64) * window, n=n_fft))
    return out


def log_mel_spectrogram(
    signal: np.ndarray,
    sample_rate: int = 16000,
    window_s: float = 0.025,
    hop_s: float = 0.010,
    n_mels: int = 64,
    fmin: float = 125.0,
    fmax: float = 7500.0,
    log_offset: float = 0.01,
) -> np.ndarray:
    """log(mel(|STFT|) + offset) ``[n_frames, n_mels]``: the VGGish (offset 0.01) / YAMNet (0.001) front end."""
    window = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    n_fft = 2 ** int(np.ceil(np.log2(window)))
    spec = stft_magnitude(signal, n_fft, hop, window)
    out = spec @ mel_matrix(n_mels, n_fft, sample_rate, fmin, fmax)
    del spec  # the largest array of a long file; free it before the next ones
    out += log_offset  # in place: the same operations as log(spec @ mel + offset), without two more copies
    return np.log(out, out=out)


def patches(features: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Cut ``[n_frames, bands]`` into ``[n_patches, length, bands]`` (whole patches only)."""
    if len(features) < length:
        return np.zeros((0, length, features.shape[1]), dtype=features.dtype)
    n = 1 + (len(features) - length) // hop
    idx = np.arange(length)[None, :] + hop * np.arange(n)[:, None]
    return features[idx]


def fixed_size_chunks(rows: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(chunk, n_real)``: ``rows`` cut into chunks of exactly ``size`` rows, the last padded with zeros.

    Models run every chunk with one shape, so the kernels (and their float32 rounding) chosen for a row never
    depend on how many other rows came with it: a file's numbers are the same for any batch size.
    """
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        n_real = len(chunk)
        if n_real < size:
            chunk = np.concatenate([chunk, np.zeros((size - n_real, *rows.shape[1:]), dtype=rows.dtype)])
        yield chunk, n_real
