"""Audio in: decode with libsndfile (soundfile), validate, downmix, resample with a named resampler (soxr).

Everything a model sees goes through :func:`load_mono`, so the resampler recorded in provenance is the one
that produced the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

#: soxr quality used everywhere; part of the provenance of every embedding.
SOXR_QUALITY = "HQ"
RESAMPLER = f"soxr-{soxr.__version__}-{SOXR_QUALITY}"
LIBSNDFILE_VERSION = sf.__libsndfile_version__
#: Peak below which a file counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4
MIN_SAMPLE_RATE = 1000


class AudioError(ValueError):
    """A file that cannot be used, with a message that says why and what to do."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _why(exc: BaseException) -> str:
    """libsndfile's reason without the server-side path (blob paths mean nothing to the user)."""
    return getattr(exc, "error_string", None) or type(exc).__name__


def probe(path: Path | str, name: str | None = None) -> AudioInfo:
    """Read the header only; :class:`AudioError` when libsndfile cannot parse it or it holds no audio."""
    label = name or str(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(
            f"{label}: not a readable audio file ({_why(exc)}). Supported: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF."
        ) from None
    if info.frames <= 0:
        raise AudioError(f"{label}: the file holds no audio samples (empty).")
    if info.samplerate < MIN_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {info.samplerate} Hz is below {MIN_SAMPLE_RATE} Hz.")
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), str(info.format))


def decode(path: Path | str, name: str | None = None) -> tuple[np.ndarray, int]:
    """Samples ``[frames, channels]`` float32 and the sample rate; rejects NaN/Inf and empty files."""
    label = name or str(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{label}: cannot decode ({_why(exc)}).") from None
    if data.size == 0:
        raise AudioError(f"{label}: the file holds no audio samples (empty).")
    if not np.isfinite(data).all():
        raise AudioError(f"{label}: contains NaN or infinite samples; re-export it as finite PCM or float.")
    return data, int(rate)


def scan_peak(path: Path | str, name: str | None = None, block: int = 1 << 18) -> float:
    """Peak |sample| read block by block (bounded memory); AudioError on NaN/Inf or undecodable data."""
    label = name or str(path)
    peak = 0.0
    try:
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            if not np.isfinite(chunk).all():
                raise AudioError(f"{label}: contains NaN or infinite samples; re-export it as finite PCM or float.")
            if chunk.size:
                peak = max(peak, float(np.abs(chunk).max()))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{label}: cannot decode ({_why(exc)}).") from None
    return peak



def to_mono(data: np.ndarray) -> np.ndarray:
    """Average channels (float64 sum), returning float32 ``[frames]``."""
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    return data.astype(np.float64).mean(axis=1).astype(np.float32)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, rate_in, rate_out, quality=SOXR_QUALITY).astype(np.float32, copy=False)


def load_mono(path: Path | str, sample_rate: int, name: str | None = None) -> np.ndarray:
    """Decode, downmix and resample to ``sample_rate``: the one way audio reaches a model."""
    data, rate = decode(path, name)
    return resample(to_mono(data), rate, sample_rate)
