"""FAD bootstrap (B file resamples, streamed) against its floor: B symmetric eigenvalue problems of d x d
(scipy.linalg.eigh eigvals_only, what one FAD's trace term costs), measured in the same run, interleaved,
median of the repeats; and the extra peak memory of the bootstrap (numpy allocations, tracemalloc).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_bootstrap.py [--smoke] [--dims 1024 2048] [--files 300]
        [--frames 1 10] [--resamples 100] [--device cuda] [--strategy auto|frames|files]

Prints ``name: ours=…, limit=…, ratio=…, target=…, ok|short`` for time and memory of each case.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc

import numpy as np
import scipy
import scipy.linalg

from soundcheck.metrics import GaussianStats, resample_weights
from soundcheck.metrics.fad_bootstrap import FileGaussians
from soundcheck.metrics.frechet import FrechetReference, _small_problem_threads

TIME_TARGET = 1.5  # ours / (B x one eigvalsh)
MEMORY_LIMIT = 512 * 2**20


def case(dim: int, files: int, frames: int, resamples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = FrechetReference.of(GaussianStats.from_frames(rng.standard_normal((2 * dim, dim))))
    cand = [(rng.standard_normal((frames, dim)) * 1.1 + 0.05).astype(np.float32) for _ in range(files)]
    return ref, cand, resample_weights(files, resamples, seed)


def ours(ref, cand, weights, device, strategy="auto") -> np.ndarray:
    return FileGaussians(cand, strategy=strategy).fad(ref, weights, device=device)


def one_eigvalsh(matrix: np.ndarray) -> float:
    """One d x d eigenvalue problem, under the same BLAS thread policy as ours (one thread below SMALL_DIM)."""
    with _small_problem_threads(len(matrix)):
        start = time.perf_counter()
        scipy.linalg.eigh(matrix, eigvals_only=True, check_finite=False)
        return time.perf_counter() - start


def peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 10], help="frames per file (cases)")
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="torch device for the batched path (e.g. cuda)")
    parser.add_argument("--strategy", default="auto", choices=["auto", "frames", "files"],
                        help="how resample matrices are formed (FileGaussians strategy; auto = the default)")
    args = parser.parse_args()
    if args.smoke:
        args.dims, args.files, args.frames, args.resamples = [256], 100, [1, 4], 10
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"device {args.device or 'numpy/LAPACK'}")
    for dim in args.dims:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((2 * dim, dim))
        spd = x.T @ x / (2 * dim)
        for frames in args.frames:
            ref, cand, weights = case(dim, args.files, frames, args.resamples)
            t_ours, t_eig = [], []
            for _ in range(args.repeats):  # interleaved: ours, then the floor, each repeat
                start = time.perf_counter()
                values = ours(ref, cand, weights, args.device, args.strategy)
                t_ours.append(time.perf_counter() - start)
                t_eig.append(statistics.median(one_eigvalsh(spd) for _ in range(3)))
            assert np.isfinite(values).all()
            a, limit = statistics.median(t_ours), args.resamples * statistics.median(t_eig)
            name = f"fad_bootstrap[d={dim},files={args.files}x{frames},B={args.resamples}]"
            if args.strategy != "auto":
                name += f"[{args.strategy}]"
            print(f"{name}: ours={a:.2f}s, limit={limit:.2f}s (B x eigvalsh {dim}x{dim}), ratio={a / limit:.2f}, "
                  f"target<={TIME_TARGET}, {'ok' if a <= TIME_TARGET * limit else 'short'}", flush=True)
            if args.device is None:
                peak = peak_bytes(ours, ref, cand, weights, None, args.strategy)
                print(f"{name} peak memory: ours={peak / 2**20:.0f}MiB, limit={MEMORY_LIMIT / 2**20:.0f}MiB, "
                      f"ratio={peak / MEMORY_LIMIT:.2f}, target<=1, {'ok' if peak <= MEMORY_LIMIT else 'short'}",
                      flush=True)


if __name__ == "__main__":
    main()
