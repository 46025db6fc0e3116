"""LAION-CLAP (HTSAT-tiny, no fusion) on CPU: ours vs laion_clap 1.1.7 on the same waveforms, in the same run.

    .venv/bin/python benchmarks/bench_clap.py [--seconds 3] [--repeats 3] [--threads 2] [--smoke]

No weights are downloaded: laion_clap's own ``create_model`` is built offline with random weights (speed does
not depend on the values; see tests/unit/embeddings/clap_reference.py), saved under the official file name and
loaded by us through ``registry.load``. Both embed one file with fadtk's windows (10 s at every whole second,
zero-padded): ours through ``model.embed`` (its fixed CPU pass of one window), the reference through laion_clap's
``get_audio_features`` + ``get_audio_embedding`` per window, as fadtk's ``CLAPLaionModel`` calls it. Runs are
interleaved; the median of ``--repeats`` is reported; ratio = reference time / our time (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soundcheck.embeddings import registry  # noqa: E402
from soundcheck.embeddings.base import sha256_file  # noqa: E402
from tests.unit.embeddings import clap_reference as ref  # noqa: E402

MODEL_ID = "clap-laion-audio"
SR = 48000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--smoke", action="store_true", help="one 1 s file (one window), 1 repeat")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.repeats = 1.0, 1
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    clap_module, data = ref.laion_modules()
    net, cfg = ref.build_clap(clap_module, "HTSAT-tiny", False, seed=1)
    t = np.arange(int(args.seconds * SR)) / SR
    wave = (0.2 * np.random.default_rng(0).standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 330 * t))
    wave = wave.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        weight = registry.clap_weights(MODEL_ID)
        ref.save_official(net, Path(tmp) / weight.name)
        spec = registry.SPECS[MODEL_ID]
        registry.SPECS[MODEL_ID] = dataclasses.replace(spec, weight_files=(
            dataclasses.replace(weight, sha256=sha256_file(Path(tmp) / weight.name)), *spec.weight_files[1:]))
        ours_model = registry.load(MODEL_ID, Path(tmp))
        ours_t, peer_t = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            ours = ours_model.embed([wave])[0].frames
            ours_t.append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs = ref.fadtk_embeddings(net, cfg, data, wave)
            peer_t.append(time.perf_counter() - started)
    windows = len(ours)
    o, p = statistics.median(ours_t), statistics.median(peer_t)
    print(f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"| {args.seconds:g} s file | {windows} windows | ours {o:.3f} s | laion_clap {p:.3f} s | "
          f"ours {windows / o:.2f} windows/s | ratio {p / o:.2f} | max abs diff {np.abs(ours - theirs).max():.1e} |")
    # target: not slower than the reference package on the same weights and waveforms (ratio = peer / ours)
    print(f"clap_vs_laion_clap: ours={o:.3f}s, peer={p:.3f}s, ratio={p / o:.2f}, target>=1.0 (peer/ours), "
          f"{'ok' if p / o >= 1.0 else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
