"""Blockwise KAD: wall time and peak memory for N reference x N candidate frames (128-d), with and without a
file bootstrap; the dense N x N kernel is never built (20k x 20k float64 would be 3.2 GB per matrix).

    .venv/bin/python benchmarks/bench_kad.py [--sizes 5000 10000 20000] [--bootstrap 100]

Peak memory is numpy's allocations traced by tracemalloc during the call (inputs excluded).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from soundcheck.metrics.bootstrap import resample_weights
from soundcheck.metrics.kernel import KernelTerms


def run(n: int, dim: int, bootstrap: int, frames_per_file: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(n)
    ref = rng.standard_normal((n, dim)).astype(np.float32)
    cand = (rng.standard_normal((n, dim)) + 0.05).astype(np.float32)
    files = np.array_split(cand, n // frames_per_file)
    tracemalloc.start()
    start = time.perf_counter()
    terms = KernelTerms(ref, files)
    weights = resample_weights(len(files), bootstrap, seed=0) if bootstrap else None
    value, _ = terms.point_and_resamples(weights)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20, 100.0 * value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--frames-per-file", type=int, default=10)
    args = parser.parse_args()
    print(f"# {os.cpu_count()} cores, dim {args.dim}, {args.frames_per_file} frames per candidate file")
    print("| frames per set | KAD (s) | peak MB | KAD + bootstrap B (s) | peak MB | dense N x N would be (MB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        t0, m0, _ = run(n, args.dim, 0, args.frames_per_file)
        if args.bootstrap:
            t1, m1, _ = run(n, args.dim, args.bootstrap, args.frames_per_file)
            boot = f"{t1:.1f} (B={args.bootstrap}) | {m1:.0f}"
        else:
            boot = "- | -"
        print(f"| {n} | {t0:.1f} | {m0:.0f} | {boot} | {n * n * 8 / 2**20:.0f} |", flush=True)


if __name__ == "__main__":
    main()
