"""Peak memory of a FAD job as the reference grows: the worker streams the reference into statistics.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_memory.py [--small 1000] [--large 10000] [--repeats 3]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_memory.py --smoke

A temp dir gets ``large`` short files (1 s, 16 kHz, noise + a tone); the ``small`` reference is the first
``small`` of them, the candidate 100 others. Our own redis-server holds the two manifests (registered paths). Each
measurement is a fresh Python process that runs the worker's entry point ``worker.tasks.evaluate`` in-process
(real Redis, `mel` model on a CPU worker, FAD with default options) on a cold cache (reference statistics and per-file
embeddings deleted first, so every file is decoded and embedded) and reports its peak RSS (VmHWM of
/proc/self/status). Small and large runs are interleaved; the median of ``repeats`` each is compared.

``--code DIR`` runs the job processes with another checkout first on the import path (e.g. main, to see the
in-memory path); the data preparation always uses this one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_files(folder: Path, n: int, seconds: float, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for i in range(n):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(len(t))
        path = folder / f"{i:06d}.wav"
        sf.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def manifest(paths: list[Path], seconds: float):
    from soundcheck.datastore import build_manifest
    from soundcheck.jobspec import FileEntry

    entries = [FileEntry(name=p.name, sha256=hashlib.sha256(p.read_bytes()).hexdigest(), bytes=p.stat().st_size,
                         duration_s=seconds, sample_rate=RATE, channels=1, format="WAV", path=str(p))
               for p in paths]
    return build_manifest(entries, "path", root=str(paths[0].parent))


CHILD = r"""
import json, sys, uuid
from soundcheck.jobspec import JobCreate
from soundcheck.jobstore import JobStore
from soundcheck.settings import get_settings
from redis import Redis
from worker import tasks

def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

ref, cand = sys.argv[1], sys.argv[2]
spec = JobCreate(reference=ref, candidate=cand, embedding="mel", metrics=["fad"])
redis = Redis.from_url(get_settings().redis_url)
job_id = uuid.uuid4().hex
JobStore(redis).create(job_id, spec)
from worker.runtime import get_runtime
get_runtime(get_settings())  # the model is loaded at worker start, before any job
before = peak_kb()
out = tasks.evaluate(job_id, spec.model_dump(mode="json", by_alias=True))
view = JobStore(redis).get(job_id)
assert out["status"] == "finished", out
print(json.dumps({"peak_kb": peak_kb(), "before_kb": before, "fad": view.result["metrics"]["fad"]["value"],
                  "stages": view.result["timing_s"]["stages"]}))
"""


def run_job(env: dict[str, str], redis_url: str, data_dir: Path, ref: str, cand: str, code: str) -> dict:
    from redis import Redis

    client = Redis.from_url(redis_url)
    for key in client.scan_iter("sc:stats:*"):  # cold: our own Redis, our own keys
        client.delete(key)
    shutil.rmtree(data_dir / "embeddings", ignore_errors=True)
    # cwd = the checkout: `python -c` puts the working directory first on sys.path
    done = subprocess.run([sys.executable, "-c", CHILD, ref, cand], env=env, capture_output=True, text=True,
                          check=False, timeout=3600, cwd=code)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--candidate", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, default=None, help="checkout to run the job processes with")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.small, args.large, args.candidate, args.repeats = 10, 100, 10, 1

    from redis import Redis

    from soundcheck.datastore import ManifestStore
    from soundcheck.serve import redis_answers, start_redis, wait_until

    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, root / "redis", env={})
    try:
        wait_until(lambda: redis_answers(url), 20, "redis-server", proc)
        ref_paths = write_files(root / "ref", args.large, args.seconds, seed=1)
        cand_paths = write_files(root / "cand", args.candidate, args.seconds, seed=2)
        store = ManifestStore(Redis.from_url(url), root / "data" / "datasets")
        small = store.save(manifest(ref_paths[: args.small], args.seconds)).id
        large = store.save(manifest(ref_paths, args.seconds)).id
        cand = store.save(manifest(cand_paths, args.seconds)).id
        code = str(args.code.resolve()) if args.code else os.environ.get("PYTHONPATH", os.getcwd())
        env = dict(os.environ, PYTHONPATH=code, SOUNDCHECK_REDIS_URL=url, SOUNDCHECK_DATA_DIR=str(root / "data"),
                   SOUNDCHECK_MODEL_DIR=str(root / "models"), SOUNDCHECK_PRELOAD="mel", SOUNDCHECK_TORCH_THREADS="1",
                   SOUNDCHECK_DEVICE="cpu",  # a mel-only CPU worker: "auto" would import torch (~650 MB) to ask
                   SOUNDCHECK_QUEUE_NAME=f"bench-{uuid.uuid4().hex[:8]}")
        runs: dict[str, list[dict]] = {"small": [], "large": []}
        for _ in range(args.repeats):
            for which, ds in (("small", small), ("large", large)):
                runs[which].append(run_job(env, url, root / "data", ds, cand, code))
        peak = {k: statistics.median(r["peak_kb"] for r in v) / 1024 for k, v in runs.items()}
        before = {k: statistics.median(r["before_kb"] for r in v) / 1024 for k, v in runs.items()}
        ratio = peak["large"] / peak["small"]
        print(f"# {args.large} vs {args.small} reference files of {args.seconds} s, {args.candidate} candidate "
              f"files, mel, FAD (default options), cold caches, median of {args.repeats}; code: {code}")
        for which in ("small", "large"):
            stages = runs[which][-1]["stages"]
            parts = ", ".join(f"{k}={v:.2f}s" for k, v in stages.items() if k.startswith("embedding"))
            print(f"#   {which}: peak {peak[which]:.1f} MiB (after model load {before[which]:.1f} MiB), "
                  f"fad={runs[which][-1]['fad']:.4f}; {parts}")
        print(f"fad_job_peak_rss_{args.large}_vs_{args.small}_files: ours={peak['large']:.1f}MiB, "
              f"peer={peak['small']:.1f}MiB, ratio={ratio:.3f}, target=1.2, {'ok' if ratio <= 1.2 else 'short'}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
