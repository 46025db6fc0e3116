"""A job against an imported reference (issue 10.5): the reference is a mean and a covariance brought from
elsewhere (soundcheck.references), so only the candidate is embedded and only the FAD family is computed.

The result says so: ``reference`` names the imported statistics and the importer's declared provenance (shown
as declared, never verified), and a warning repeats that the numbers are comparable only if the statistics were
made with the same embedding, front end and resampling as this job's candidate.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from soundcheck.datastore import DatasetError
from soundcheck.evaluation import MetricInputError, evaluate_embeddings, metric_versions
from soundcheck.jobspec import JobCreate
from soundcheck.jobstore import JobStore
from soundcheck.provenance import result_provenance
from soundcheck.references import ReferenceStore
from soundcheck.settings import get_settings
from worker.runtime import get_runtime
from worker.tasks import Reporter, _embed, _manifest, _record_timing, _summary


def run_imported_job(redis: Redis, job_id: str, spec: JobCreate, store: JobStore) -> dict[str, Any]:
    settings = get_settings()
    ref_id = spec.imported_reference
    stores = get_runtime(settings).storage()  # the shared storage: the api wrote the arrays there
    references = ReferenceStore(redis, stores.storage)
    view = references.get(ref_id) if ref_id else None
    gaussian = references.gaussian(ref_id) if ref_id else None
    if view is None or gaussian is None:
        raise DatasetError(f"imported reference {ref_id!r} not found")
    candidate = _manifest(stores.manifests(redis), spec.candidate, "candidate")
    runtime = get_runtime(settings)
    model = runtime.model(spec.embedding)
    if model.spec.dim != gaussian.dim:
        raise MetricInputError(f"the imported reference has dimension {gaussian.dim}, embedding "
                               f"{spec.embedding!r} gives {model.spec.dim}")
    emb_prov, emb_key = runtime.embedding_provenances[spec.embedding], runtime.embedding_keys[spec.embedding]
    started = time.monotonic()
    reporter = Reporter(job_id, store, len(candidate.files or []))
    reporter.set_stage("embedding candidate")
    timing: dict[str, float] = {}
    cache = stores.embeddings(emb_key)
    cand_files = [f for chunk in _embed(redis, job_id, candidate, model, emb_key, stores.blobs(),
                                        cache, reporter, timing) for f in chunk]
    _record_timing(reporter, "embedding candidate", timing)
    reporter.set_stage("computing metrics")
    part = evaluate_embeddings(spec.metrics, [], cand_files, spec.options, reference_stats=gaussian,
                               on_stage=lambda stage: reporter.set_stage(f"computing {stage}"),
                               checkpoint=reporter.checkpoint, device=runtime.device)
    declared = view.declared
    said = declared.embedding if declared is not None else "?"
    warnings = [f"reference {ref_id[:12]} is imported statistics: their provenance ({said}) is as declared by the "
                "importer, not verified; the numbers compare only if they were made with the same embedding, front "
                "end and resampling as this candidate"]
    if declared is not None and declared.embedding != spec.embedding:
        warnings.append(f"the imported reference declares embedding {declared.embedding!r}, this job embeds the "
                        f"candidate with {spec.embedding!r}")
    result: dict[str, Any] = {
        "reference": {"imported": ref_id, "dim": view.dim, "layout": view.layout, "n_frames": view.n_frames,
                      "declared": declared.model_dump(mode="json") if declared else None, "verified": False},
        "candidate": _summary(candidate), "embedding": spec.embedding, "metrics": part["metrics"],
        "diagnostics": part.get("diagnostics", {}), "warnings": warnings + part.get("warnings", []),
        "provenance": result_provenance(emb_prov, metric_versions()),
    }
    reporter.set_stage("finishing")
    result["timing_s"] = {"total": round(time.monotonic() - started, 3), "stages": reporter.durations,
                          "metrics": part.get("timing_s", {})}
    return result
