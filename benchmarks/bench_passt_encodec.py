"""PaSST and EnCodec 24 kHz on CPU: ours vs hear21passt 0.0.26 and encodec 0.1.1 on the same waveforms, same run.

    .venv/bin/python benchmarks/bench_passt_encodec.py [--files 2] [--seconds 10] [--repeats 3] [--threads 2]
        [--models passt,encodec] [--smoke]

No weights are downloaded: each reference is built with random weights (``get_model(..., pretrained=False)``,
``encodec_model_24khz(pretrained=False)``; speed does not depend on the values), saved under the official file
name and loaded by us through ``registry.load``. Both run end to end on each file: ours through ``model.embed``
(PaSST: the ``passt`` framing, one window per file of <= 10 s; EnCodec: one whole-file pass), the references the
way stable-audio-metrics / audiocraft (PaSST wrapper, one window per call) and fadtk (``model.encoder`` per file)
call them. Runs are interleaved; the median of ``--repeats`` is reported. Ratio = peer time / our time (> 1: ours
is faster). The max abs difference of the outputs is printed as a check that both did the same work.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from soundcheck.embeddings import registry
from soundcheck.embeddings.base import sha256_file


def waves(files: int, seconds: float, sr: int) -> list[np.ndarray]:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    return [(0.2 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (220.0 + 110 * i) * t)).astype(np.float32)
            for i in range(files)]


def load_trusted(model_id: str, model_dir: Path):
    """Declare the random checkpoint official (as the tests do) and load it through the registry."""
    spec = registry.SPECS[model_id]
    files = tuple(dataclasses.replace(w, sha256=sha256_file(registry.weight_path(model_dir, w)))
                  for w in spec.weight_files)
    registry.SPECS[model_id] = dataclasses.replace(spec, weight_files=files)
    return registry.load(model_id, model_dir, device="cpu")


def race(name: str, fns: dict[str, Callable[[], np.ndarray]], repeats: int, audio_s: float) -> None:
    for fn in fns.values():
        fn()  # warm-up (first-call overheads)
    times: dict[str, list[float]] = {k: [] for k in fns}
    results: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            results[key] = fn()
            times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(t) for k, t in times.items()}
    assert results["ours"].shape == results["peer"].shape, (results["ours"].shape, results["peer"].shape)
    for key in fns:
        print(f"{name} {key:>4}: median {med[key]:.3f} s ({audio_s / med[key]:.2f} s of audio per s); runs "
              + ", ".join(f"{t:.3f}" for t in times[key]))
    print(f"{name} max |ours - peer| = {float(np.abs(results['ours'] - results['peer']).max()):.2e}")
    ratio = med["peer"] / med["ours"]
    print(f"{name}: ours={med['ours']:.3f}s, peer={med['peer']:.3f}s, ratio={ratio:.2f}, target>=1.00, "
          f"{'ok' if ratio >= 1.0 else 'short'}")


def bench_passt(tmp: Path, audio: list[np.ndarray], repeats: int) -> None:
    from hear21passt.models.passt import get_model
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    with contextlib.redirect_stdout(io.StringIO()):
        net = get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
        mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                             htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    peer = PasstBasicWrapper(mel=mel, net=net, mode="all").eval()
    torch.save(net.state_dict(), tmp / registry.PASST_WEIGHTS.name)
    ours = load_trusted("passt", tmp)

    def run_ours() -> np.ndarray:
        embs = ours.embed(audio, batch_size=64)
        return np.concatenate([np.log(np.concatenate([e.probs for e in embs])), np.concatenate([e.frames for e in embs])
                               ], axis=1)

    def run_peer() -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            out = torch.cat([peer(torch.from_numpy(w)[None]) for w in audio])
        return torch.cat([torch.log_softmax(out[:, :527], dim=1), out[:, 527:]], dim=1).numpy()

    race("passt_vs_hear21passt", {"ours": run_ours, "peer": run_peer}, repeats, sum(len(w) for w in audio) / 32000)


def bench_encodec(tmp: Path, audio: list[np.ndarray], repeats: int) -> None:
    from encodec import EncodecModel

    peer = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    torch.save(peer.state_dict(), tmp / registry.ENCODEC_24K_WEIGHTS.name)
    ours = load_trusted("encodec-24k", tmp)

    def run_ours() -> np.ndarray:
        return np.concatenate([e.frames for e in ours.embed(audio)])

    def run_peer() -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([peer.encoder(torch.from_numpy(w)[None, None])[0].T.numpy() for w in audio])

    race("encodec_vs_encodec", {"ours": run_ours, "peer": run_peer}, repeats, sum(len(w) for w in audio) / 24000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="per file (PaSST: at most 10 s, one window)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--models", default="passt,encodec", help="comma-separated: passt, encodec")
    parser.add_argument("--smoke", action="store_true", help="one 1 s file, 1 repeat")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.seconds, args.repeats = 1, 1.0, 1
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # hear21passt's old stft call, encodec's weight_norm
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads; "
          f"{args.files} file(s) x {args.seconds} s, {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        if "passt" in args.models:
            bench_passt(Path(tmp), waves(args.files, min(args.seconds, 10.0), 32000), args.repeats)
        if "encodec" in args.models:
            bench_encodec(Path(tmp), waves(args.files, args.seconds, 24000), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
