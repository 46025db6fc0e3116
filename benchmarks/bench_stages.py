"""Is the metric stage at most the embedding stage on CPU with default options? Where a job's time goes.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_stages.py [--files 1000] [--repeats 3]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_stages.py --smoke

1. The example sets (``soundcheck.examples.write_examples``: 72 + 72 files of 4 s) through the worker's entry point
   ``worker.tasks.evaluate`` in this process (our own redis-server, `mel`, cold caches), default options, for the
   default metric (fad) and for the embedding metrics that apply to mel: ``timing_s.stages`` split into
   embedding (decode, front end, forward, cache, statistics) and metrics.
2. A job of ``--files`` reference + ``--files`` candidate files at 1024-d (YAMNet's width): the metric stage on
   synthetic embeddings (7 frames per file, the YAMNet frames of a 4 s file) with ``evaluate_embeddings``; the
   embedding stage as YAMNet's measured seconds per 4 s example file (decode + model, cold) times the files.

Each pair is measured in the same run (median of ``repeats``) and printed as ``name: ours=<metric stage>,
limit=<embedding stage>, ratio=..., target=1.0, ok|short``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

APPLICABLE = ["fad", "fad_inf", "fad_per_file", "kad", "ndb", "prdc", "accuracy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def verdict(name: str, ours: float, limit: float) -> str:
    ratio = ours / limit
    return (f"{name}: ours={ours:.2f}s, limit={limit:.2f}s, ratio={ratio:.3f}, target=1.0, "
            f"{'ok' if ratio <= 1.0 else 'short'}")


def split_stages(stages: dict[str, float]) -> tuple[float, float, dict[str, float]]:
    """(embedding seconds, metric seconds, embedding parts) of a result's ``timing_s.stages``."""
    embedding = sum(v for k, v in stages.items() if k in ("embedding reference", "embedding candidate"))
    metrics = sum(v for k, v in stages.items() if k.startswith("computing"))
    parts: dict[str, float] = {}
    for key, value in stages.items():
        if ": " in key and key.startswith("embedding"):
            part = key.split(": ", 1)[1]
            parts[part] = parts.get(part, 0.0) + value
    return embedding, metrics, parts


def example_jobs(root: Path, repeats: int, per_class: int) -> None:
    from redis import Redis

    from soundcheck.datastore import ManifestStore, build_manifest, describe
    from soundcheck.embeddings.base import sha256_file
    from soundcheck.examples import write_examples
    from soundcheck.jobspec import JobCreate
    from soundcheck.jobstore import JobStore
    from soundcheck.settings import get_settings
    from worker import tasks

    settings = get_settings()
    redis = Redis.from_url(settings.redis_url)
    ref_dir, cand_dir = write_examples(root / "examples", per_class=per_class)
    ids = []
    for folder in (ref_dir, cand_dir):
        entries = [describe(str(p.relative_to(folder)), p, sha256_file(p), p.stat().st_size, str(p))[0]
                   for p in sorted(folder.rglob("*.wav"))]
        ids.append(ManifestStore(redis, settings.data_dir / "datasets").save(build_manifest(entries, "path")).id)
    for metrics in (["fad"], APPLICABLE):
        emb, met, parts_all = [], [], []
        for _ in range(repeats):
            for key in redis.scan_iter("sc:stats:*"):  # cold: our own Redis
                redis.delete(key)
            shutil.rmtree(settings.embedding_cache_dir, ignore_errors=True)
            spec = JobCreate(reference=ids[0], candidate=ids[1], embedding="mel", metrics=metrics)
            job_id = uuid.uuid4().hex
            JobStore(redis).create(job_id, spec)
            out = tasks.evaluate(job_id, spec.model_dump(mode="json", by_alias=True))
            assert out["status"] == "finished", out
            result = JobStore(redis).get(job_id).result
            e, m, parts = split_stages(result["timing_s"]["stages"])
            emb.append(e)
            met.append(m)
            parts_all.append(parts)
        parts = {k: statistics.median(p[k] for p in parts_all) for k in parts_all[0]}
        shown = ", ".join(f"{k}={v:.2f}s" for k, v in parts.items())
        timed = ", ".join(f"{k}={v:.2f}s" for k, v in result["timing_s"]["metrics"].items())
        print(f"#   examples {'+'.join(metrics)}: embedding parts {shown}; metric stages {timed}")
        print(verdict(f"examples_{'fad' if metrics == ['fad'] else 'applicable'}_metric_vs_embedding_stage",
                      statistics.median(met), statistics.median(emb)))


def yamnet_seconds_per_file(root: Path, n: int) -> float:
    """Decode + YAMNet of one 4 s example file, cold (median of the per-file times over ``n`` files)."""
    from soundcheck import audio
    from soundcheck.embeddings import registry
    from soundcheck.examples import write_examples

    model = registry.load("yamnet", root)
    ref_dir, _ = write_examples(root / "examples", per_class=max(1, n // 3))
    paths = sorted(ref_dir.rglob("*.wav"))[:n]
    model.embed([audio.load_mono(paths[0], 16000)])  # session warm-up
    started = time.perf_counter()
    waves = (audio.load_mono(p, 16000) for p in paths)
    for _, _emb in model.embed_iter(enumerate(waves)):
        pass
    return (time.perf_counter() - started) / len(paths)


def synthetic_job(files: int, repeats: int, root: Path, all_metrics: bool) -> None:
    from soundcheck.evaluation import FileEmbedding, evaluate_embeddings
    from soundcheck.jobspec import MetricOptions

    rng = np.random.default_rng(0)
    basis = rng.standard_normal((1024, 1024)) / 32

    def set_of(shift: float) -> list[FileEmbedding]:
        return [FileEmbedding(name=f"{i}.wav", frames=(rng.standard_normal((7, 1024)) @ basis + shift).astype(
            np.float32), label=f"c{i % 3}") for i in range(files)]

    ref, cand = set_of(0.0), set_of(0.05)
    per_file = yamnet_seconds_per_file(root, 24)
    embedding = per_file * 2 * files
    for metrics in (["fad"], APPLICABLE) if all_metrics else (["fad"],):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            out = evaluate_embeddings(metrics, ref, cand, MetricOptions())
            times.append(time.perf_counter() - started)
        print(f"#   {files}+{files} files x 7 frames x 1024-d, {'+'.join(metrics)}: metric stages "
              + ", ".join(f"{k}={v:.2f}s" for k, v in out["timing_s"].items())
              + f"; yamnet {per_file * 1000:.1f} ms per 4 s file")
        print(verdict(f"job_{files}_files_1024d_{'fad' if metrics == ['fad'] else 'applicable'}_metric_vs_embedding",
                      statistics.median(times), embedding))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=24, help="example files per class (24: 72 per set)")
    parser.add_argument("--synthetic-repeats", type=int, default=0, help="repeats of part 2 (default --repeats)")
    parser.add_argument("--all", action="store_true", help="part 2 also for every applicable metric (slow)")
    parser.add_argument("--no-examples", action="store_true", help="part 2 only")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.repeats, args.per_class = 20, 1, 2
    root = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    from soundcheck.serve import redis_answers, start_redis, wait_until

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, root / "redis", env={})
    os.environ.update(SOUNDCHECK_REDIS_URL=url, SOUNDCHECK_DATA_DIR=str(root / "data"), SOUNDCHECK_DEVICE="cpu",
                      SOUNDCHECK_MODEL_DIR=str(root / "models"), SOUNDCHECK_PRELOAD="mel",
                      SOUNDCHECK_QUEUE_NAME=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        wait_until(lambda: redis_answers(url), 20, "redis-server", proc)
        print(f"# CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; default options "
              "(bootstrap 100); median of", args.repeats)
        if not args.no_examples:
            example_jobs(root, args.repeats, args.per_class)
        synthetic_job(args.files, args.synthetic_repeats or args.repeats, root, args.all)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
