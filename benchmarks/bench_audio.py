"""Streamed decode (soundcheck.audio.load_mono) against the whole-file path it replaced (sf.read of all
samples, float64 channel mean, one-shot soxr resample), on the same multichannel FLAC, interleaved, median of
``--repeats``. Memory is numpy's peak allocation traced by tracemalloc (the returned waveform included);
libsndfile's own buffers are the same for both.

    .venv/bin/python benchmarks/bench_audio.py [--seconds 120] [--channels 8] [--rate 48000] [--smoke]

Targets: peak memory at most the output waveform plus 64 MB (ratio to the whole-file peak printed), wall time
at most 1.25x the whole-file path's (streaming must not cost speed for its memory bound). The two outputs are
compared sample for sample.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from soundcheck import audio


def whole_file(path: Path, rate_out: int) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.astype(np.float64).mean(axis=1).astype(np.float32)
    return soxr.resample(mono, rate, rate_out, quality=audio.SOXR_QUALITY).astype(np.float32, copy=False)


def streamed(path: Path, rate_out: int) -> np.ndarray:
    return audio.load_mono(path, rate_out)


def measure(fn: Callable[[Path, int], np.ndarray], path: Path, rate_out: int) -> tuple[float, float, np.ndarray]:
    tracemalloc.start()
    start = time.perf_counter()
    out = fn(path, rate_out)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20, out


def write_flac(path: Path, seconds: int, rate: int, channels: int) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, channels, format="FLAC", subtype="PCM_16") as fh:
        for _ in range(seconds):
            fh.write((0.1 * rng.standard_normal((rate, channels))).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--rate-out", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="5 s, 1 repeat: finishes in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.repeats = 5, 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.flac"
        write_flac(path, args.seconds, args.rate, args.channels)
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "peer": []}
        outputs: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, fn in (("ours", streamed), ("peer", whole_file)):  # interleaved
                elapsed, peak, out = measure(fn, path, args.rate_out)
                runs[name].append((elapsed, peak))
                outputs[name] = out
    same = np.array_equal(outputs["ours"], outputs["peer"])
    out_mb = outputs["ours"].nbytes / 2**20
    t_ours, t_peer = (statistics.median(t for t, _ in runs[k]) for k in ("ours", "peer"))
    m_ours, m_peer = (statistics.median(m for _, m in runs[k]) for k in ("ours", "peer"))
    limit = out_mb + 64
    print(f"# {args.seconds} s x {args.channels} ch x {args.rate} Hz FLAC -> {args.rate_out} Hz mono "
          f"({out_mb:.0f} MB out), median of {args.repeats}; outputs identical: {same}")
    print(f"decode_peak_mb: ours={m_ours:.0f}, limit={limit:.0f}, ratio={m_ours / limit:.2f}, target<=1.00, "
          f"{'ok' if m_ours <= limit else 'short'} (whole-file peer={m_peer:.0f} MB, {m_peer / m_ours:.1f}x ours)")
    ratio = t_ours / t_peer
    print(f"decode_time_s: ours={t_ours:.2f}, peer={t_peer:.2f}, ratio={ratio:.2f}, target<=1.25, "
          f"{'ok' if ratio <= 1.25 else 'short'}")
    if not same:
        raise SystemExit("streamed and whole-file outputs differ")


if __name__ == "__main__":
    main()
