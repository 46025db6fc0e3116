"""Blockwise KAD at scale: time and peak memory per N reference x N candidate frames, what the bootstrap costs,
and what a job against a cached reference (``KernelReference``) still computes.

    .venv/bin/python benchmarks/bench_kad.py [--sizes 10000] [--dims 128 1024] [--ratio-size 3000]
                                             [--repeats 3] [--device numpy|cpu|cuda] [--smoke]

Ratio lines (``name: ours=…, limit|peer=…, ratio=…, target=…, ok|short``), both sides measured in the same run,
interleaved, median of ``--repeats``, at ``--ratio-size`` frames per set (128-d):
- kad_warm_vs_candidate_side: a job given a cached KernelReference (decoded from bytes) against the
  candidate-side kernel work alone (cross sums + candidate within sums, same resamples): the reference side
  left in a warm job. Target <= 1.05.
- kad_warm_vs_cold: the same warm job against a cold one (median bandwidth + reference term + the rest); at
  equal set sizes the reference term is a quarter of the kernel pairs, so target <= 0.75.
- kad_bootstrap_peak_B1000_vs_B10: peak memory with 1,000 resamples against 10 (bounded independently of B).
- kad_bootstrap_time_B100_vs_B0: what 100 resamples cost on top of the point estimate.
Then one table row per size and dim (single runs: cold job, warm job, peak), the dense N x N float64 matrix
for scale. Peak memory is numpy's allocations traced by tracemalloc (torch allocations are not traced).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from soundcheck.metrics import kernel
from soundcheck.metrics._kernel_backend import backend_for
from soundcheck.metrics.bootstrap import resample_weights
from soundcheck.metrics.kernel import KernelReference, KernelTerms


def data(n: int, dim: int, frames_per_file: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(n + dim)
    ref = rng.standard_normal((n, dim)).astype(np.float32)
    cand = (rng.standard_normal((n, dim)) + 0.05).astype(np.float32)
    return ref, np.array_split(cand, max(n // frames_per_file, 1))


def traced(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and traced peak MiB of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return elapsed, peak


def cold_job(ref, files, weights, device):
    return KernelTerms(ref, files, device=device).point_and_resamples(weights)


def warm_job(blob: bytes, files, weights, device):
    reference = KernelReference.from_bytes(blob)
    return KernelTerms(None, files, reference=reference, device=device).point_and_resamples(weights)


def candidate_side(reference: KernelReference, files, weights, device):
    """The candidate-side work of a job, by hand: cross sums and the weighted candidate within sums."""
    be = backend_for(device)
    cand = np.concatenate([np.asarray(f, dtype=np.float64) for f in files]) - reference.shift
    frame_file = np.repeat(np.arange(len(files)), [len(f) for f in files])
    kernel._cross_column_sums(be, reference.shifted(), cand, reference.gamma, kernel.DEFAULT_BLOCK, None)
    blocks = [np.ones((1, len(files)))] + [weights[i:i + kernel.RESAMPLE_BLOCK]
                                            for i in range(0, len(weights), kernel.RESAMPLE_BLOCK)]
    kernel._within_weighted(be, cand, frame_file, blocks, len(files), reference.gamma, kernel.DEFAULT_BLOCK,
                            True, None)


def line(name: str, ours: float, limit: float, unit: str, target: float, kind: str = "limit") -> None:
    ratio = ours / limit
    print(f"{name}: ours={ours:.3f}{unit}, {kind}={limit:.3f}{unit}, ratio={ratio:.3f}, target<={target}, "
          f"{'ok' if ratio <= target else 'short'}", flush=True)


def ratios(n: int, repeats: int, frames_per_file: int, device: str | None) -> None:
    ref, files = data(n, 128, frames_per_file)
    weights = resample_weights(len(files), 100, seed=0)
    reference = KernelReference.of(ref, device=device)
    blob = reference.to_bytes()
    warm, side, cold = [], [], []
    for _ in range(repeats):
        warm.append(traced(lambda: warm_job(blob, files, weights, device))[0])
        side.append(traced(lambda: candidate_side(reference, files, weights, device))[0])
        cold.append(traced(lambda: cold_job(ref, files, weights, device))[0])
    line(f"kad_warm_vs_candidate_side_{n}x{n}_128d_B100", float(np.median(warm)), float(np.median(side)), "s", 1.05)
    line(f"kad_warm_vs_cold_{n}x{n}_128d_B100", float(np.median(warm)), float(np.median(cold)), "s", 0.75, "peer")
    small, large = resample_weights(len(files), 10, seed=0), resample_weights(len(files), 1000, seed=0)
    peaks = {10: [], 1000: []}
    for _ in range(repeats):
        for b, w in ((10, small), (1000, large)):
            peaks[b].append(traced(lambda w=w: warm_job(blob, files, w, device))[1])
    line(f"kad_bootstrap_peak_B1000_vs_B10_{n}x{n}_128d", float(np.median(peaks[1000])), float(np.median(peaks[10])),
         "MB", 1.25)
    t0, t100 = [], []
    for _ in range(repeats):
        t0.append(traced(lambda: warm_job(blob, files, None, device))[0])
        t100.append(traced(lambda: warm_job(blob, files, weights, device))[0])
    line(f"kad_bootstrap_time_B100_vs_B0_{n}x{n}_128d", float(np.median(t100)), float(np.median(t0)), "s", 1.5)


def table_row(n: int, dim: int, bootstrap: int, frames_per_file: int, device: str | None) -> None:
    ref, files = data(n, dim, frames_per_file)
    weights = resample_weights(len(files), bootstrap, seed=0) if bootstrap else None
    t_cold, m_cold = traced(lambda: cold_job(ref, files, weights, device))
    box: dict[str, bytes] = {}
    t_ref, _ = traced(lambda: box.setdefault("blob", KernelReference.of(ref, device=device).to_bytes()))
    t_warm, m_warm = traced(lambda: warm_job(box["blob"], files, weights, device))
    print(f"| {n} | {dim} | {t_cold:.1f} | {m_cold:.0f} | {t_ref:.1f} | {t_warm:.1f} | {m_warm:.0f} | "
          f"{n * n * 8 / 2**20:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--ratio-size", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--frames-per-file", type=int, default=10)
    parser.add_argument("--device", default=None, help="None/numpy, or a torch device: cpu, cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, finishes in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.dims, args.ratio_size, args.repeats = [400], [16], 300, 3
    device = None if args.device in (None, "numpy") else args.device
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, device {device or 'numpy'}, "
          f"load {os.getloadavg()[0]:.1f}, {args.frames_per_file} frames per candidate file")
    ratios(args.ratio_size, args.repeats, args.frames_per_file, device)
    print(f"| frames per set | dim | cold job B={args.bootstrap} (s) | peak MB | reference side (s) | "
          "warm job (s) | peak MB | dense N x N float64 (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dim in args.dims:
        for n in args.sizes:
            table_row(n, dim, args.bootstrap, args.frames_per_file, device)

if __name__ == "__main__":
    main()
