"""OpenL3 mel256 on CPU: our implementation vs torchopenl3 1.0.1 on the same waveforms, in the same run.

    .venv/bin/python benchmarks/bench_openl3.py [--files 2] [--seconds 0.9] [--repeats 3] [--threads 2] [--smoke]

No weights are downloaded: torchopenl3's ``PytorchOpenl3`` is built with random weights (speed does not depend
on the values), saved under the official file name and loaded by us through ``registry.load``. Both run end to
end (framing, front end, network) at hop 0.1 s: ours through ``model.embed`` (batch 64, its fixed CPU chunk),
the reference through ``torchopenl3.get_audio_embedding`` on the list of files (its default batch of 32).
Runs are interleaved; the median of ``--repeats`` is reported. Ratio = peer time / our time (> 1: ours is
faster). The max abs difference between the two embeddings is printed as a check that both did the same work.
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

from soundcheck.embeddings import registry
from soundcheck.embeddings.base import sha256_file

MODEL_ID = "openl3-mel256-music-512"
SR = 48000


def waves(files: int, seconds: float) -> list[np.ndarray]:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    return [(0.2 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (220.0 + 110 * i) * t)).astype(np.float32)
            for i in range(files)]


def windows_of(seconds: float, hop_s: float = 0.1) -> int:
    length = int(seconds * SR) + SR // 2
    return 1 if length <= SR else 1 + -(-(length - SR) // int(hop_s * SR))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--smoke", action="store_true", help="one 0.3 s file (one window), 3 repeats")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.seconds, args.repeats = 1, 0.3, 3
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # librosa's "empty filters" warning on torchopenl3's mel matrix
    import torchopenl3
    from torchopenl3.models import PytorchOpenl3

    peer = PytorchOpenl3(content_type="music", input_repr="mel256", embedding_size=512).eval()
    with tempfile.TemporaryDirectory() as tmp:
        weight = registry.openl3_weights("music", 512)
        torch.save(peer.state_dict(), Path(tmp) / weight.name)
        spec = registry.SPECS[MODEL_ID]  # declare the random checkpoint official, as the tests do
        trusted = dataclasses.replace(weight, sha256=sha256_file(Path(tmp) / weight.name))
        registry.SPECS[MODEL_ID] = dataclasses.replace(spec, weight_files=(trusted,))
        ours = registry.load(MODEL_ID, Path(tmp), device="cpu")
    audio = waves(args.files, args.seconds)
    n_windows = args.files * windows_of(args.seconds)

    def run_ours() -> np.ndarray:
        return np.concatenate([e.frames for e in ours.embed(audio, batch_size=64)])

    def run_peer() -> np.ndarray:
        embs, _ = torchopenl3.get_audio_embedding([w.copy() for w in audio], SR, model=peer, hop_size=0.1,
                                                  center=True, verbose=False)
        return np.concatenate([e.cpu().numpy() for e in embs])

    fns = {"ours": run_ours, "peer": run_peer}
    ours_tiny = ours.embed([audio[0][:100]])[0].frames  # warm-up on one window each (first-call overheads)
    torchopenl3.get_audio_embedding(audio[0][:100].copy(), SR, model=peer, hop_size=0.1, verbose=False)
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    assert results["ours"].shape == results["peer"].shape == (n_windows, 512) and ours_tiny.shape == (1, 512)
    diff = float(np.abs(results["ours"] - results["peer"]).max())
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads; "
          f"{args.files} file(s) x {args.seconds} s = {n_windows} windows (hop 0.1 s), {args.repeats} repeats")
    for name in fns:
        print(f"{name:>5}: median {med[name]:.3f} s = {n_windows / med[name]:.2f} windows/s "
              f"({args.files * args.seconds / med[name]:.3f} s of audio per s); runs "
              + ", ".join(f"{t:.3f}" for t in times[name]))
    print(f"max |ours - peer| = {diff:.2e}")
    ratio = med["peer"] / med["ours"]
    print(f"openl3_vs_torchopenl3: ours={med['ours']:.3f}s, peer={med['peer']:.3f}s, ratio={ratio:.2f}, "
          f"target>=1.00, {'ok' if ratio >= 1.0 else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
