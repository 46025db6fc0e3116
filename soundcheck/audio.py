"""Audio in: decode with libsndfile (soundfile), validate, downmix, resample with a named resampler (soxr).

Everything a model sees goes through :func:`load_mono`, so the resampler recorded in provenance is the one
that produced the numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
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
#: Samples (frames x channels) decoded at a time: 4 MiB of float32, whatever the file's length or channels.
BLOCK_SAMPLES = 1 << 20
MIN_BLOCK_FRAMES = 1024


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


def _block_frames(channels: int) -> int:
    """Frames per decoded block: about BLOCK_SAMPLES samples whatever the channel count (bounded memory)."""
    return max(MIN_BLOCK_FRAMES, BLOCK_SAMPLES // max(channels, 1))


def iter_blocks(path: Path | str, name: str | None = None, block_frames: int | None = None) -> Iterator[np.ndarray]:
    """Finite float32 blocks ``[frames, channels]`` of a file, in order: O(block) memory, NaN/Inf checked
    per block (the message names the file). :class:`AudioError` when it cannot be decoded or is empty."""
    label = name or str(path)
    seen = 0
    try:
        with sf.SoundFile(str(path)) as fh:
            size = block_frames or _block_frames(fh.channels)
            while True:
                block = fh.read(size, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                if not np.isfinite(block).all():
                    raise AudioError(f"{label}: contains NaN or infinite samples; re-export it as finite PCM or "
                                     "float.")
                seen += len(block)
                yield block
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{label}: cannot decode ({_why(exc)}).") from None
    if seen == 0:
        raise AudioError(f"{label}: the file holds no audio samples (empty).")


def decode(path: Path | str, name: str | None = None) -> tuple[np.ndarray, int]:
    """The whole file as float32 ``[frames, channels]`` and its rate. Holds all of it in memory: for small
    files and tests only; the worker path is :func:`load_mono`, which streams."""
    info = probe(path, name)
    return np.concatenate(list(iter_blocks(path, name))), info.sample_rate


def scan_peak(path: Path | str, name: str | None = None, block: int | None = None) -> float:
    """Peak |sample| read block by block (bounded memory); AudioError on NaN/Inf or undecodable data."""
    peak = 0.0
    for chunk in iter_blocks(path, name, block):
        peak = max(peak, float(np.abs(chunk).max()))
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


class _Output:
    """A float32 buffer sized from the header's frame count, grown only if the decoder gives more."""

    def __init__(self, expected: int) -> None:
        self.data = np.empty(max(expected, 1), np.float32)
        self.n = 0

    def append(self, part: np.ndarray) -> None:
        if self.n + len(part) > len(self.data):
            grown = np.empty(max(2 * len(self.data), self.n + len(part)), np.float32)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : self.n + len(part)] = part
        self.n += len(part)

    def result(self) -> np.ndarray:
        """The samples, trimmed in place (realloc, no second copy of the waveform)."""
        self.data.resize(self.n, refcheck=False)
        return self.data


def load_mono(path: Path | str, sample_rate: int, name: str | None = None, *,
              block_frames: int | None = None) -> np.ndarray:
    """Decode, downmix and resample to ``sample_rate``: the one way audio reaches a model.

    Streamed: blocks of about BLOCK_SAMPLES samples are checked for NaN/Inf, averaged over channels in
    float64 (as :func:`to_mono`) and fed to a soxr ``ResampleStream``, so memory is one block plus the output
    waveform, never the decoded file. soxr's stream gives the same samples as its one-shot ``resample`` (the
    one-shot call runs the same engine over the whole input); tests check this bit for bit."""
    info = probe(path, name)
    rate = info.sample_rate
    out = _Output(int(np.ceil(info.frames * sample_rate / rate)) + 64)
    stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32",
                                                                  quality=SOXR_QUALITY)
    for block in iter_blocks(path, name, block_frames):
        mono = to_mono(block)
        out.append(mono if stream is None else stream.resample_chunk(mono))
    if stream is not None:
        out.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return out.result()


def load_channels(path: Path | str, sample_rate: int, channels: int, name: str | None = None, *,
                  block_frames: int | None = None) -> np.ndarray:
    """Decode and resample keeping the channels: ``[frames]`` for ``channels == 1`` (:func:`load_mono`), else
    ``[frames, max(file channels, channels)]`` float32: every channel of the file (a model picks its own, after
    normalising over all of them as stable-audio-metrics does), a file with fewer repeating its last one (a mono
    file gives L = R, as openl3_fd). Streamed like :func:`load_mono`; the same soxr engine per channel."""
    if channels == 1:
        return load_mono(path, sample_rate, name, block_frames=block_frames)
    info = probe(path, name)
    rate, width = info.sample_rate, max(info.channels, channels)
    stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, width, dtype="float32",
                                                                  quality=SOXR_QUALITY)
    parts = []
    for block in iter_blocks(path, name, block_frames):
        data = block[:, None] if block.ndim == 1 else block
        picked = np.ascontiguousarray(data[:, [min(c, data.shape[1] - 1) for c in range(width)]], dtype=np.float32)
        parts.append(picked if stream is None else stream.resample_chunk(picked))
    if stream is not None:
        parts.append(stream.resample_chunk(np.zeros((0, width), np.float32), last=True))
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, width), np.float32)
