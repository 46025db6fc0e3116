"""KAD's default bandwidth, the median pairwise distance of the reference frames: ours (blockwise BLAS distances
and an exact selection, soundcheck.metrics.pairwise) against the peer it replaced, ``np.median(pdist(x))``, on
the same 4,000-frame subsample (MEDIAN_MAX_POINTS), same run, interleaved, median of ``--repeats``.

    .venv/bin/python benchmarks/bench_median.py [--points 4000] [--dims 128 1024] [--repeats 3] [--smoke]

Peak memory is numpy's allocations traced by tracemalloc during the call (inputs excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import pdist

from soundcheck.metrics.pairwise import median_of_pairs


def peer(x: np.ndarray) -> float:
    return float(np.median(pdist(x)))


def measure(fn: Callable[[np.ndarray], float], x: np.ndarray) -> tuple[float, float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    value = fn(x)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak / 2**20, value


def line(name: str, ours: float, limit: float, unit: str, target: float, kind: str = "peer") -> None:
    ratio = ours / limit
    print(f"{name}: ours={ours:.3f}{unit}, {kind}={limit:.3f}{unit}, ratio={ratio:.3f}, target<={target}, "
          f"{'ok' if ratio <= target else 'short'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=4000)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, finishes in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.points, args.dims, args.repeats = 400, [16], 3
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, load {os.getloadavg()[0]:.1f}")
    for dim in args.dims:
        x = np.random.default_rng(dim).standard_normal((args.points, dim)).astype(np.float32).astype(np.float64)
        runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "peer": []}
        for _ in range(args.repeats):  # interleaved
            runs["ours"].append(measure(median_of_pairs, x))
            runs["peer"].append(measure(peer, x))
        t_ours, t_peer = (float(np.median([r[0] for r in runs[k]])) for k in ("ours", "peer"))
        m_ours, m_peer = (float(np.median([r[1] for r in runs[k]])) for k in ("ours", "peer"))
        rel = abs(runs["ours"][0][2] - runs["peer"][0][2]) / runs["peer"][0][2]
        tag = f"median_{args.points}x{dim}"
        line(f"{tag}_time", t_ours, t_peer, "s", 0.5)
        line(f"{tag}_peak", m_ours, m_peer, "MB", 0.25)
        print(f"{tag}_value: ours={runs['ours'][0][2]!r}, peer={runs['peer'][0][2]!r}, relative difference={rel:.1e}, "
              f"target<=1e-12, {'ok' if rel <= 1e-12 else 'short'}")


if __name__ == "__main__":
    main()
