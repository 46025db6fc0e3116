"""Gaussian statistics built one file at a time (as the worker and evaluation do) against np.cov of the stacked
frames, same inputs, same run (interleaved, median of the repeats).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stats.py [--smoke] [--files 2000] [--dim 2048] [--frames 1]

Prints ``name: ours=…, peer=…, ratio=…, target=…, ok|short`` and the relative difference of the covariances.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy

from soundcheck.metrics import GaussianStats

TARGET = 2.0  # ours / peer


def ours(files: list[np.ndarray], dim: int) -> np.ndarray:
    stats = GaussianStats(dim)
    for f in files:
        stats.update(f)
    return stats.cov


def peer(stacked: np.ndarray) -> np.ndarray:
    return np.cov(stacked, rowvar=False)


def timed(fn, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=1, help="frames per file")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.smoke:
        args.files, args.dim, args.repeats = 1000, 256, 3
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, scipy {scipy.__version__}")
    rng = np.random.default_rng(0)
    files = [rng.standard_normal((args.frames, args.dim)).astype(np.float32) + 1.0 for _ in range(args.files)]
    stacked = np.concatenate(files)
    t_ours, t_peer = [], []
    for _ in range(args.repeats):  # interleaved
        t, c_ours = timed(ours, files, args.dim)
        t_ours.append(t)
        t, c_peer = timed(peer, stacked)
        t_peer.append(t)
    a, b = statistics.median(t_ours), statistics.median(t_peer)
    ratio = a / b
    rel = float(np.linalg.norm(c_ours - c_peer) / np.linalg.norm(c_peer))
    name = f"stats_per_file_update[{args.files}x{args.frames}x{args.dim}]"
    print(f"{name}: ours={a:.3f}s, peer={b:.3f}s (np.cov of stacked frames), ratio={ratio:.2f}, target<={TARGET}, "
          f"{'ok' if ratio <= TARGET else 'short'} (relative difference {rel:.1e})")


if __name__ == "__main__":
    main()
