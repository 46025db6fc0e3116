"""Fréchet distance: ours (Cholesky + symmetric eigenvalues) against the peer approach (scipy.linalg.sqrtm of
S1 S2, as in frechet_audio_distance / pytorch-fid / the classic FID code), same inputs, same run.

    .venv/bin/python benchmarks/bench_frechet.py [--dims 128 512 2048] [--repeats 3]

Prints the best-of-N wall time of each, the ratio, and the relative difference of the two values.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy.linalg

from soundcheck.metrics import frechet_distance


def peer_fd(mu1, sigma1, mu2, sigma2) -> float:
    covmean = np.real(scipy.linalg.sqrtm(sigma1.dot(sigma2)))
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def inputs(dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4 * dim, dim))
    y = rng.standard_normal((4 * dim, dim)) * 1.1 + 0.05
    return x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)


def best_time(fn, args, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        time.sleep(0.5)  # let OpenBLAS threads of the other library stop spinning
        start = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"scipy {scipy.__version__}")
    print("| dim | soundcheck (s) | sqrtm peer (s) | speed-up | relative difference |")
    print("|---:|---:|---:|---:|---:|")
    for dim in args.dims:
        data = inputs(dim)
        ours, v_ours = best_time(frechet_distance, data, args.repeats)
        peer, v_peer = best_time(peer_fd, data, 1 if dim >= 2048 else args.repeats)
        print(f"| {dim} | {ours:.4f} | {peer:.3f} | {peer / ours:.1f}x | {abs(v_ours - v_peer) / abs(v_peer):.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
