"""MCD analysis speed: our vectorised mcep (all frames at once) against pysptk's C mcep called frame by frame, as
ESPnet's MCD script calls it, on the same Hamming frames (25 ms, 5 ms hop, order 24). Interleaved, median of 3.

    .venv/bin/python benchmarks/bench_mcd.py [--seconds 10] [--rate 22050] [--smoke]

Prints ``mcep: ours=…, peer=…, ratio=…, target=…, ok|short`` (ratio = ours / peer, time; target <= 1) and the
largest coefficient difference. Needs pysptk (test extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types

import numpy as np
from scipy.signal import lfilter

from soundcheck.metrics.mcep import mel_alpha, mel_cepstrum
from soundcheck.metrics.signal import MCD_EPS, MCD_ORDER, _mcd_frame_view


def speech_like(seconds: float, rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    x = np.zeros(n)
    x[:: rate // 120] = 1.0
    x += 0.02 * rng.standard_normal(n)
    for freq, bw in ((700.0, 80.0), (1200.0, 100.0), (2500.0, 150.0)):
        r = np.exp(-np.pi * bw / rate)
        x = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / rate), r * r], x)
    return x / np.abs(x).max() * 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=22050)
    parser.add_argument("--smoke", action="store_true", help="0.5 s of audio: checks the script in seconds")
    args = parser.parse_args()
    try:
        import pkg_resources  # noqa: F401  (pysptk 1.0.1 imports it; setuptools >= 81 dropped it)
    except ImportError:
        sys.modules.setdefault("pkg_resources", types.ModuleType("pkg_resources"))
    import pysptk

    seconds = 0.5 if args.smoke else args.seconds
    view, window, n_fft = _mcd_frame_view(speech_like(seconds, args.rate), args.rate)
    frames = view * window
    alpha = mel_alpha(args.rate)
    ours_t, peer_t = [], []
    for _ in range(3):
        start = time.perf_counter()
        ours = mel_cepstrum(frames, MCD_ORDER, alpha, n_fft, MCD_EPS)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer = np.stack([pysptk.mcep(np.pad(f, (0, n_fft - len(f))), order=MCD_ORDER, alpha=alpha, etype=1,
                                     eps=MCD_EPS) for f in frames])
        peer_t.append(time.perf_counter() - start)
    o, p = statistics.median(ours_t), statistics.median(peer_t)
    ratio = o / p
    print(f"# {len(frames)} frames of {seconds:g} s at {args.rate} Hz, n_fft {n_fft}, alpha {alpha}")
    print(f"mcep: ours={o:.3f}s, peer={p:.3f}s, ratio={ratio:.2f}, target=1.00, {'ok' if ratio <= 1.0 else 'short'}")
    print(f"max |ours - pysptk| = {np.abs(ours - peer).max():.1e}")


if __name__ == "__main__":
    main()
