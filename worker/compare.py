"""RQ task of POST /v1/comparisons: embed the reference (or read its cached statistics) and every candidate,
then ``soundcheck.comparison.compare_embeddings``. Thin, like ``worker.tasks.evaluate``, whose embedding path,
caches and progress reporter it reuses."""

from __future__ import annotations

import logging
import time
from typing import Any

from redis import Redis
from rq import get_current_job

from soundcheck.comparespec import ComparisonCreate
from soundcheck.comparestore import ComparisonStore
from soundcheck.comparison import compare_embeddings
from soundcheck.evaluation import FileEmbedding
from soundcheck.metrics import GaussianStats
from soundcheck.provenance import reference_stats_key, result_provenance
from soundcheck.settings import get_settings
from worker.runtime import get_runtime
from worker.stats_cache import StatsCache
from worker.tasks import USER_ERRORS, Reporter, _embed, _manifest, _no_retry, _summary

log = logging.getLogger("soundcheck.worker")
TASK = "worker.compare.compare"


def compare(comparison_id: str, spec_json: dict[str, Any]) -> dict[str, Any]:
    """Entry point enqueued by the api; the record says finished or failed whatever happens here."""
    rq_job = get_current_job()
    redis: Redis = rq_job.connection if rq_job is not None else Redis.from_url(get_settings().redis_url)
    store = ComparisonStore(redis)
    worker = rq_job.worker_name if rq_job is not None and rq_job.worker_name else "local"
    if store.start(comparison_id, worker) is None:
        return {"comparison": comparison_id, "status": "skipped"}
    try:
        result = run_comparison(redis, comparison_id, ComparisonCreate.model_validate(spec_json), store)
    except USER_ERRORS as exc:
        log.info("comparison %s failed: %s", comparison_id, exc)
        store.fail(comparison_id, str(exc))
        return {"comparison": comparison_id, "status": "failed", "error": str(exc)}
    except BaseException as exc:  # the time limit, a bug: the record must not stay running
        _no_retry(rq_job)
        store.fail(comparison_id, f"internal error ({type(exc).__name__}: {exc}); the worker log has the traceback")
        raise
    store.finish(comparison_id, result)
    return {"comparison": comparison_id, "status": "finished"}


def run_comparison(redis: Redis, comparison_id: str, spec: ComparisonCreate, store: ComparisonStore
                   ) -> dict[str, Any]:
    settings = get_settings()
    started = time.monotonic()
    stores = get_runtime(settings).storage()  # the shared storage (local dir or s3://) and this host's cache
    manifests = stores.manifests(redis)
    blobs = stores.blobs()
    reference = _manifest(manifests, spec.reference, "reference")
    candidates = [_manifest(manifests, c, f"candidate {i + 1}") for i, c in enumerate(spec.candidates)]
    runtime = get_runtime(settings)
    model = runtime.model(spec.embedding)
    emb_prov, emb_key = runtime.embedding_provenances[spec.embedding], runtime.embedding_keys[spec.embedding]
    cache = stores.embeddings(emb_key)
    stats_cache = StatsCache(redis)
    stats_key = reference_stats_key(reference.id, emb_key)
    cached = stats_cache.get(stats_key)
    ref_stats = GaussianStats.from_bytes(cached) if cached is not None else None
    needs_frames = "kad" in spec.metrics or ref_stats is None
    total = len(reference.files or []) * needs_frames + sum(len(c.files or []) for c in candidates)
    reporter = Reporter(comparison_id, store, total)  # type: ignore[arg-type]  # same progress/get signatures
    ref_files: list[FileEmbedding] = []
    if needs_frames:
        reporter.set_stage("embedding reference")
        ref_files = [f for chunk in _embed(redis, comparison_id, reference, model, emb_key, blobs, cache, reporter)
                     for f in chunk]
        if ref_stats is None:
            ref_stats = GaussianStats(model.spec.dim)
            for f in ref_files:
                ref_stats.update(f.frames)
            stats_cache.put(stats_key, ref_stats.to_bytes())  # evaluation jobs of this reference reuse it
    cand_files = []
    for i, candidate in enumerate(candidates):
        reporter.set_stage(f"embedding candidate {spec.candidate_labels()[i]}")
        cand_files.append([f for chunk in _embed(redis, comparison_id, candidate, model, emb_key, blobs, cache,
                                                 reporter) for f in chunk])
    part = compare_embeddings(spec.metrics, spec.candidate_labels(), cand_files, spec.options,
                              reference_stats=ref_stats, reference=ref_files, on_stage=reporter.set_stage,
                              checkpoint=reporter.checkpoint, device=runtime.device,
                              kad_max_frames=settings.kad_max_frames or None)
    for entry, dataset in zip(part["candidates"], spec.candidates, strict=True):
        entry["dataset"] = dataset
    warnings = part.pop("warnings", [])
    rates = {tuple(reference.sample_rates)} | {tuple(c.sample_rates) for c in candidates}
    if len(rates) > 1:
        warnings.append("the sets have different sample rates: resampling can change the numbers")
    reporter.set_stage("finishing")
    return {"reference": _summary(reference), "embedding": spec.embedding, **part,
            "provenance": result_provenance(emb_prov, part.get("metric_versions", {})),
            "cache": {"reference_stats": "hit" if cached is not None else "miss"}, "warnings": warnings,
            "timing_s": {"total": round(time.monotonic() - started, 3), "stages": reporter.durations}}
