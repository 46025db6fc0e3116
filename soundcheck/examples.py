"""Deterministic example sets (no download): a reference of tones, chords and noise textures, and a
candidate with the same file names and known degradations.

The candidate is the reference with: white noise at 20 dB SNR added to tones, chords detuned by a quarter
tone, and noise textures coloured differently (pink instead of brown-ish). So FAD/KAD are clearly > 0, the
labels (subfolders) still separate, and paired signal metrics (same names) have known SNRs for tones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
SECONDS = 4.0
PER_CLASS = 24
CLASSES = ("tones", "chords", "noise")


def _envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    attack = int(rng.uniform(0.01, 0.2) * RATE)
    env = np.ones(n)
    env[:attack] = np.linspace(0.0, 1.0, attack)
    return env * np.exp(-np.arange(n) / (RATE * rng.uniform(1.5, 6.0)))


def _tone(freq: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    harmonics = sum((0.5 ** k) * np.sin(2 * np.pi * freq * (k + 1) * t + rng.uniform(0, 2 * np.pi))
                    for k in range(4))
    return harmonics * _envelope(n, rng)


def _coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return noise / np.max(np.abs(noise))


def _normalise(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (peak * x / np.max(np.abs(x))).astype(np.float32)


def reference_clip(cls: str, index: int) -> np.ndarray:
    rng = np.random.default_rng([hash_class(cls), index])
    n = int(SECONDS * RATE)
    if cls == "tones":
        return _normalise(_tone(110.0 * 2 ** rng.uniform(0, 3), n, rng))
    if cls == "chords":
        root = 110.0 * 2 ** rng.uniform(0, 2)
        ratios = (1.0, 2 ** (4 / 12), 2 ** (7 / 12)) if index % 2 == 0 else (1.0, 2 ** (3 / 12), 2 ** (7 / 12))
        return _normalise(sum(_tone(root * r, n, rng) for r in ratios))
    return _normalise(_coloured_noise(n, 1.6, rng) * _envelope(n, rng))


def candidate_clip(cls: str, index: int) -> np.ndarray:
    rng = np.random.default_rng([hash_class(cls), index, 1])
    ref = reference_clip(cls, index).astype(np.float64)
    n = len(ref)
    if cls == "tones":
        noise = rng.standard_normal(n)
        noise *= np.sqrt(np.mean(ref**2) / np.mean(noise**2) / 10 ** (20 / 10))  # 20 dB SNR
        return (ref + noise).astype(np.float32)
    if cls == "chords":
        detuned = np.interp(np.arange(n) * 2 ** (0.5 / 12), np.arange(n), ref, right=0.0)
        return _normalise(detuned)
    return _normalise(_coloured_noise(n, 1.0, rng) * _envelope(n, rng))


def hash_class(cls: str) -> int:
    return CLASSES.index(cls) + 1


def write_examples(root: Path, per_class: int = PER_CLASS) -> tuple[Path, Path]:
    """Write ``root/reference`` and ``root/candidate`` (16-bit WAV, subfolder = label); idempotent."""
    ref_dir, cand_dir = root / "reference", root / "candidate"
    for cls in CLASSES:
        for index in range(per_class):
            for base, make in ((ref_dir, reference_clip), (cand_dir, candidate_clip)):
                path = base / cls / f"{cls}_{index:03d}.wav"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, make(cls, index), RATE, subtype="PCM_16")
    return ref_dir, cand_dir
