"""Fréchet distance: ours (Cholesky + symmetric eigenvalues) against the peer approach (scipy.linalg.sqrtm of
S1 S2, as in frechet_audio_distance / pytorch-fid / the classic FID code), same inputs, same run.

    .venv/bin/python benchmarks/bench_frechet.py [--dims 128 512 2048] [--repeats 3] [--smoke]

Both are timed in turn (interleaved, so load from other processes hits them alike); prints the median wall time
of each, the speed-up, the relative difference of the two values, and one summary line per dimension.
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


def interleaved_medians(fns: dict[str, tuple], repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall time and the value of each ``name: (fn, args)``, run in turn ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    values: dict[str, float] = {}
    for _ in range(repeats):
        for name, (fn, args) in fns.items():
            time.sleep(0.5)  # let OpenBLAS threads of the other library stop spinning
            start = time.perf_counter()
            values[name] = fn(*args)
            times[name].append(time.perf_counter() - start)
    return {name: (float(np.median(times[name])), values[name]) for name in fns}


#: Ours must beat the sqrtm peer by at least this factor (measured 9-33x, RESULTS.md).
TARGET_SPEEDUP = 2.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.dims, args.repeats = [64, 128], 1
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"scipy {scipy.__version__}")
    print("| dim | soundcheck (s) | sqrtm peer (s) | speed-up | relative difference |")
    print("|---:|---:|---:|---:|---:|")
    summaries = []
    for dim in args.dims:
        data = inputs(dim)
        runs = interleaved_medians({"ours": (frechet_distance, data), "peer": (peer_fd, data)},
                                   1 if dim >= 2048 else args.repeats)
        (ours, v_ours), (peer, v_peer) = runs["ours"], runs["peer"]
        print(f"| {dim} | {ours:.4f} | {peer:.3f} | {peer / ours:.1f}x | {abs(v_ours - v_peer) / abs(v_peer):.1e} |",
              flush=True)
        ratio = peer / ours
        summaries.append(f"frechet_distance[d={dim}]: ours={ours:.4f}s, peer={peer:.4f}s (sqrtm), ratio={ratio:.1f}, "
                         f"target>={TARGET_SPEEDUP:g}, {'ok' if ratio >= TARGET_SPEEDUP else 'short'}")
    print()
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
