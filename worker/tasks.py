"""RQ tasks. Thin: read manifests → embed (cached) → core metrics → write result and progress to Redis."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from soundcheck import audio
from soundcheck.datastore import BlobStore, DatasetError, ManifestStore
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.embeddings.registry import ModelUnavailable
from soundcheck.evaluation import (
    FileEmbedding,
    MetricInputError,
    ReferenceSide,
    all_failed,
    evaluate_embeddings,
    failed_metric,
    metric_versions,
)
from soundcheck.jobspec import SIGNAL_METRICS, DatasetView, JobCreate
from soundcheck.jobstore import CANCEL_KEY, CANCELED, TERMINAL, JobStore
from soundcheck.metrics import GaussianStats
from soundcheck.metrics.coverage import NdbBins
from soundcheck.pipeline import FILES_PER_CHUNK, InputChanged, chunks, embed_stream, load_wave
from soundcheck.presets import PRESETS
from soundcheck.provenance import (
    embedding_key,
    ndb_bins_key,
    reference_pack_key,
    reference_stats_key,
    reference_term_key,
    result_provenance,
)
from soundcheck.references import ReferenceStore
from soundcheck.settings import get_settings
from soundcheck.signal_evaluation import evaluate_signals
from soundcheck.streaming import KEEP_STATS, SetFold, reference_keep
from worker import reference_pack
from worker.fanout import embed_dataset_fanned, helpers_for
from worker.preset_job import run_preset
from worker.runtime import get_runtime
from worker.stats_cache import StatsCache

log = logging.getLogger("soundcheck.worker")


class JobCanceled(RuntimeError):
    """DELETE /v1/jobs/{id} asked this job to stop."""


class Superseded(RuntimeError):
    """This attempt was taken for dead (no heartbeat for the TTL: a frozen process, a long Redis outage) and
    the job was given to another attempt; this one stops without touching the record."""


#: Errors that are the input's fault: the job fails with this message, the worker carries on.
USER_ERRORS = (audio.AudioError, MetricInputError, InputChanged, ModelUnavailable, DatasetError, JobCanceled)
#: Metrics that need only the reference's Gaussian statistics, not its frames.
STATS_ONLY = frozenset({"fad", "fad_inf", "fad_per_file"})


class _HardCancel(JobCanceled):
    """Raised into the job's thread by its :class:`CancelWatch` when no checkpoint came in time."""

    def __init__(self) -> None:
        super().__init__(CANCELED)


#: Stages made only of computation (no lock, no cache write): a cancel may interrupt them anywhere.
INTERRUPTIBLE_STAGES = ("computing", "signal metrics")


class CancelWatch:
    """Polls the job's cancel key from a thread, so checking for a cancel in the job's hot loops costs no Redis
    round trip (one EXISTS every ``interval_s`` per running job, whatever the job does).

    Once canceled, the job stops at its next checkpoint. If none comes within ``grace_s`` and the job is in a
    computation-only stage (:data:`INTERRUPTIBLE_STAGES`: metric maths, which hold no lock and write no file),
    the watch raises :class:`JobCanceled` in the job's thread, as RQ's time limit raises its exception, so a
    DELETE takes effect within seconds even inside a long metric with no checkpoint of its own."""

    def __init__(self, redis: Redis, job_id: str, attempt: int | None = None, interval_s: float = 0.5,
                 grace_s: float = 1.0) -> None:
        self.redis, self.key, self.interval_s, self.grace_s = redis, CANCEL_KEY.format(job_id), interval_s, grace_s
        self.attempt = attempt
        self.canceled = threading.Event()
        self._stop = threading.Event()
        self._region = threading.Lock()  # guards ``interruptible`` against the watch firing at a stage change
        self._interruptible = False
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._poll, name="soundcheck-cancel", daemon=True)

    def set_stage(self, stage: str) -> None:
        with self._region:
            self._interruptible = stage.startswith(INTERRUPTIBLE_STAGES)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                if self.redis.exists(self.key):
                    self.canceled.set()
                    log.info("%s: cancel requested", self.key)
                    break
            except RedisError as exc:  # a blip; the next poll may get through
                log.warning("cancel check failed: %s", exc)
            self._stop.wait(self.interval_s)
        deadline = time.monotonic() + self.grace_s
        while self.canceled.is_set() and not self._stop.wait(0.1):
            with self._region:
                if self._interruptible and time.monotonic() >= deadline and not self._stop.is_set():
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target),
                                                               ctypes.py_object(_HardCancel))
                    log.info("%s: no checkpoint within %.1f s; interrupting the metric computation", self.key,
                             self.grace_s)
                    return

    def __enter__(self) -> CancelWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._region:
            self._stop.set()
        self._thread.join(timeout=2)


#: The watch of the job this process is running (a SimpleWorker runs one job at a time).
_watch: CancelWatch | None = None


class Reporter:
    """Writes progress to the RQ job's meta and the job record, at most every ``interval_s``; raises
    :class:`JobCanceled` at any progress update or checkpoint once the job was canceled."""

    def __init__(self, job_id: str, store: JobStore, total: int, interval_s: float = 0.5) -> None:
        self.job_id, self.store, self.total, self.interval_s = job_id, store, total, interval_s
        self.done, self.stage, self._last = 0, "starting", 0.0
        self.rq_job = get_current_job()
        self.watch = _watch
        #: Seconds spent in each stage (where a job's time went; reported as ``timing_s.stages``).
        self.durations: dict[str, float] = {}
        self._stage_started = time.monotonic()

    def set_stage(self, stage: str) -> None:
        now = time.monotonic()
        self.durations[self.stage] = round(self.durations.get(self.stage, 0.0) + now - self._stage_started, 4)
        self.stage, self._stage_started = stage, now
        if self.watch is not None:
            self.watch.set_stage(stage)
        self.flush(force=True)

    def checkpoint(self) -> None:
        """Between blocks of work: stop at once when the job was canceled. Free with a cancel watch (an Event
        read); without one (a job run outside a worker), one EXISTS at most every ``interval_s``."""
        if self.watch is not None:
            if self.watch.canceled.is_set():
                raise JobCanceled(CANCELED)
            return
        now = time.monotonic()
        if now - self._last_polled >= self.interval_s:
            self._last_polled = now
            if self.store.redis.exists(CANCEL_KEY.format(self.job_id)):
                raise JobCanceled(CANCELED)

    _last_polled = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        self.flush()

    def flush(self, force: bool = False) -> None:
        self.checkpoint()
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        attempt = self.watch.attempt if self.watch is not None else None
        if not self.store.progress(self.job_id, self.done, self.total, self.stage, attempt=attempt):
            view = self.store.get(self.job_id, with_result=False)
            if view is not None and view.status not in TERMINAL and attempt is not None:
                raise Superseded(f"attempt {attempt} of job {self.job_id} was superseded (now {view.status}, "
                                 f"attempt {view.attempts})")
        if self.rq_job is not None:
            self.rq_job.meta["progress"] = {"done": self.done, "total": self.total, "stage": self.stage}
            self.rq_job.save_meta()


def _no_retry(rq_job: Job | None) -> None:
    """The task failed by itself (a bug, the time limit): RQ must not run it again (its record is final)."""
    if rq_job is not None:
        rq_job.retries_left = 0


def evaluate(job_id: str, spec_json: dict[str, Any]) -> dict[str, Any]:
    """Entry point enqueued by the api (``worker.tasks.evaluate``)."""
    global _watch
    rq_job = get_current_job()
    redis: Redis = rq_job.connection if rq_job is not None else Redis.from_url(get_settings().redis_url)
    store = JobStore(redis)
    if redis.exists(CANCEL_KEY.format(job_id)):  # canceled while RQ handed it over (or before a retry)
        store.fail(job_id, CANCELED)
        return {"job": job_id, "status": "failed", "error": CANCELED}
    worker = rq_job.worker_name if rq_job is not None and rq_job.worker_name else "local"
    started = store.start(job_id, worker=worker)
    if started is None:
        return {"job": job_id, "status": "skipped", "error": "the job record is gone or already final"}
    try:
        with CancelWatch(redis, job_id, started.attempts) as _watch:
            result = run_job(redis, job_id, JobCreate.model_validate(spec_json), store)
    except Superseded as exc:
        log.warning("%s; stopping", exc)
        return {"job": job_id, "status": "superseded"}
    except USER_ERRORS as exc:
        log.info("job %s failed: %s", job_id, exc)
        store.fail(job_id, str(exc), attempt=started.attempts)
        return {"job": job_id, "status": "failed", "error": str(exc)}
    except JobTimeoutException:
        _no_retry(rq_job)
        # a fresh connection: the alarm may have interrupted a command on the job's one
        JobStore(Redis.from_url(get_settings().redis_url)).fail(
            job_id, f"the job exceeded the time limit of {get_settings().job_timeout_s} s "
                    "(SOUNDCHECK_JOB_TIMEOUT_S); split the sets or raise the limit")
        raise
    except Exception as exc:
        _no_retry(rq_job)
        store.fail(job_id, f"internal error ({type(exc).__name__}: {exc}); the worker log has the traceback",
                   attempt=started.attempts)
        raise
    finally:
        _watch = None
    notes = store.attempt_notes(job_id)
    if notes:  # a worker died under an earlier attempt: say so next to the numbers
        result["warnings"] = [f"retried: {n}" for n in notes] + result.get("warnings", [])
    if not store.finish(job_id, result, attempt=started.attempts):
        log.warning("job %s: attempt %d finished after another attempt took the job over; result dropped", job_id,
                    started.attempts)
        return {"job": job_id, "status": "superseded"}
    return {"job": job_id, "status": "finished"}


def _manifest(manifests: ManifestStore, dataset_id: str, role: str) -> DatasetView:
    view = manifests.get(dataset_id)
    if view is None or view.files is None:
        raise DatasetError(f"{role} dataset {dataset_id!r} not found")
    return view


def run_job(redis: Redis, job_id: str, spec: JobCreate, store: JobStore) -> dict[str, Any]:
    if spec.imported_reference is not None:  # statistics brought from elsewhere: the FAD family only
        from worker.imported import run_imported_job  # it builds on this module's helpers

        return run_imported_job(redis, job_id, spec, store)
    settings = get_settings()
    stores = get_runtime(settings).storage()
    manifests = stores.manifests(redis)
    blobs = stores.blobs()
    reference = _manifest(manifests, spec.reference_dataset or "", "reference")
    candidate = _manifest(manifests, spec.candidate, "candidate")
    embedding_metrics = [m for m in spec.metrics if m not in SIGNAL_METRICS]
    signal_metrics = [m for m in spec.metrics if m in SIGNAL_METRICS]
    started = time.monotonic()
    result: dict[str, Any] = {
        "reference": _summary(reference), "candidate": _summary(candidate), "embedding": spec.embedding,
        "metrics": {}, "diagnostics": {}, "warnings": list(_dataset_warnings(reference, candidate)),
    }
    if spec.preset is not None:  # one evaluation per number of the peer's table (worker.preset_job)
        return _run_preset(redis, job_id, spec, store, reference, candidate, blobs, result, started)
    emb_prov = None
    total = (len(reference.files or []) + len(candidate.files or [])) * bool(embedding_metrics)
    ref_names = {f.name for f in reference.files or []}
    total += sum(f.name in ref_names for f in candidate.files or []) * bool(signal_metrics)
    reporter = Reporter(job_id, store, total)
    both = bool(embedding_metrics and signal_metrics)
    if embedding_metrics:
        try:
            emb_prov, part = _embedding_part(redis, job_id, spec, embedding_metrics, reference, candidate, blobs,
                                             reporter)
        except MetricInputError as exc:
            if not both:
                raise
            part = _failed_part(embedding_metrics, str(exc))
        _merge(result, part)
    if signal_metrics:
        reporter.set_stage("signal metrics")
        pairs = _signal_pairs(reference, candidate, blobs, reporter)
        try:
            part = evaluate_signals(signal_metrics, pairs, spec.options)
        except MetricInputError as exc:
            if not both or all_failed(result["metrics"]):
                raise MetricInputError("; ".join([*(f"{m}: {e['error']}" for m, e in result["metrics"].items()),
                                                  str(exc)])) from exc
            part = _failed_part(signal_metrics, str(exc))
        _merge(result, part)
    result["provenance"] = result_provenance(emb_prov, metric_versions())
    reporter.set_stage("finishing")
    result["timing_s"] = {"total": round(time.monotonic() - started, 3), "stages": reporter.durations,
                          "metrics": result.pop("metric_timing_s", {})}
    return result


def _run_preset(redis: Redis, job_id: str, spec: JobCreate, store: JobStore, reference: DatasetView,
                candidate: DatasetView, blobs: BlobStore, result: dict[str, Any], started: float) -> dict[str, Any]:
    n_parts = len(PRESETS[spec.preset].metrics)
    reporter = Reporter(job_id, store, (len(reference.files or []) + len(candidate.files or [])) * n_parts)

    def run_part(part: JobCreate) -> tuple[dict, dict]:
        return _embedding_part(redis, job_id, part, part.metrics, reference, candidate, blobs, reporter)

    provenance = run_preset(spec, run_part, result)
    result["provenance"] = {**result_provenance(None, metric_versions()), "embedding": None, "embedding_key": None,
                            "embeddings": provenance,
                            "embedding_keys": {m: embedding_key(p) for m, p in provenance.items()}}
    reporter.set_stage("finishing")
    result["timing_s"] = {"total": round(time.monotonic() - started, 3), "stages": reporter.durations,
                          "metrics": result.pop("metric_timing_s", {})}
    return result


def _embedding_part(redis: Redis, job_id: str, spec: JobCreate, metrics: list[str], reference: DatasetView,
                    candidate: DatasetView, blobs: BlobStore, reporter: Reporter) -> tuple[dict, dict]:
    settings = get_settings()
    runtime = get_runtime(settings)
    model = runtime.model(spec.embedding)
    emb_prov, emb_key = runtime.embedding_provenances[spec.embedding], runtime.embedding_keys[spec.embedding]
    cache = runtime.storage().embeddings(emb_key)
    stats_cache = StatsCache(redis)
    stats_key = reference_stats_key(reference.id, emb_key)
    batch = settings.batch_size or 64  # operator classifiers: plain batches, 64 rows unless set
    keep = reference_keep(metrics, spec.options)  # what of the reference the metrics read (soundcheck.streaming)

    reporter.set_stage("reference statistics")  # its own stage: the reference side of a repeat job is measurable
    cached_stats = stats_cache.get(stats_key)
    ref_stats = GaussianStats.from_bytes(cached_stats) if cached_stats is not None else None
    ref_files: list[FileEmbedding] = []
    pack_status: str | None = None
    ref_rows: Any = None  # the packed reference's rows, when it came from the cache
    bins, bins_hit = None, False
    terms: dict[str, Any] = {}
    term_cache: dict[str, str] = {}
    if keep == KEEP_STATS and ref_stats is not None:
        reporter.advance(len(reference.files or []))
    else:
        reporter.set_stage("waiting for the reference (another worker is embedding it)")
        # one worker embeds a reference (and computes what its metrics need of it alone) at a time; the others
        # wait, then reuse its cached embeddings, statistics, bins and reference terms
        with stats_cache.lock(stats_key, on_wait=reporter.flush):
            if cached_stats is None:  # the worker we waited for may have cached them meanwhile
                cached_stats = stats_cache.get(stats_key)
                ref_stats = GaussianStats.from_bytes(cached_stats) if cached_stats is not None else None
            reporter.set_stage("embedding reference")
            with_probs = "kl" in metrics  # the one metric that reads the reference's class probabilities
            pack_key = reference_pack_key(reference.id, emb_key, keep, with_probs)
            packed = stats_cache.get(pack_key) if ref_stats is not None else None
            if packed is not None:  # the set as its metrics keep it, in one value: no file read one by one
                try:
                    ref_files, ref_rows = reference_pack.unpack(packed)
                except ValueError:  # not a pack this code wrote: read the set file by file and pack it again
                    packed = None
                else:
                    reporter.advance(len(ref_files))
            if packed is None:
                ref_files, ref_stats = _fold_reference(redis, job_id, reference, model, emb_key, blobs, cache,
                                                       reporter, keep, ref_stats)
                if keep != KEEP_STATS:  # a statistics-only job keeps no files: nothing to pack
                    _put_pack(stats_cache, pack_key, ref_files, with_probs)
            if keep != KEEP_STATS:
                pack_status = "hit" if packed is not None else "miss"
            if cached_stats is None:
                stats_cache.put(stats_key, ref_stats.to_bytes())
                ReferenceStore(redis).record_computed(  # listed, exportable
                    stats_key, reference.id, spec.embedding, emb_key, ref_stats.n, ref_stats.dim)
            side = ReferenceSide(metrics, ref_files, spec.options, device=runtime.device,
                                 kad_device=settings.kad_device, kad_max_frames=settings.kad_max_frames,
                                 checkpoint=reporter.checkpoint, rows=ref_rows, trusted=packed is not None)
            bins, bins_hit = _ndb_bins(stats_cache, spec, metrics, reference.id, emb_key, side, bool(ref_files))
            terms, term_cache = _reference_terms(stats_cache, side, reference.id, emb_key, reporter)
    reporter.set_stage("embedding candidate")
    # every embedding metric reads the candidate's frames (FAD: its statistics, bootstrap, per-file and subset FAD)
    timing: dict[str, float] = {}
    cand_files = [f for chunk in _embed(redis, job_id, candidate, model, emb_key, blobs, cache, reporter, timing)
                  for f in chunk]
    _record_timing(reporter, "embedding candidate", timing)
    classifier_prov = None
    if "accuracy" in metrics and spec.options.accuracy.classifier:
        reporter.set_stage(f"classifying with {spec.options.accuracy.classifier}")
        classifier_prov = _classify(spec.options.accuracy.classifier, candidate, cand_files, blobs, batch,
                                    reporter.checkpoint)
    text_problem = None
    if "clap_score" in metrics:
        reporter.set_stage("embedding captions")
        text_problem, text_prov = _embed_captions(model, cand_files)
        if text_prov is not None:
            emb_prov = {**emb_prov, "text": text_prov}
    reporter.set_stage("computing metrics")
    part = evaluate_embeddings(metrics, ref_files, cand_files, spec.options, reference_stats=ref_stats,
                               on_stage=lambda stage: reporter.set_stage(f"computing {stage}"), ndb_bins=bins,
                               n_reference_files=len(reference.files or []), checkpoint=reporter.checkpoint,
                               device=runtime.device, kad_device=settings.kad_device,
                               kad_max_frames=settings.kad_max_frames, reference_terms=terms,
                               class_scores=model.spec.class_scores, text_problem=text_problem)
    cache_info = part.setdefault("diagnostics", {}).setdefault("cache", {})
    cache_info["reference_stats"] = "hit" if cached_stats is not None else "miss"
    if pack_status is not None:
        cache_info["reference_files"] = pack_status
    cache_info.update(term_cache)
    part["diagnostics"]["reference_kept"] = keep
    if bins is not None:
        cache_info["ndb_bins"] = "hit" if bins_hit else "miss"
    if classifier_prov is not None:
        emb_prov = {**emb_prov, "classifier": classifier_prov}
    return emb_prov, part


def _embed_captions(model: EmbeddingModel, files: list[FileEmbedding]) -> tuple[str | None, dict | None]:
    """Give each captioned candidate file its caption's text embedding (CLAP models); (problem, provenance)."""
    embed_text = getattr(model, "embed_text", None)
    if embed_text is None:
        return f"clap_score needs a model with a text encoder (clap-laion-*), not {model.spec.id!r}", None
    captioned = [f for f in files if f.caption is not None]
    if not captioned:
        return None, None
    try:
        texts = embed_text([f.caption for f in captioned])
    except ModelUnavailable as exc:
        return str(exc), None
    for file, text in zip(captioned, texts, strict=True):
        file.text_embedding = text
    return None, model.text_provenance()


def _fold_reference(redis: Redis, job_id: str, reference: DatasetView, model: EmbeddingModel, emb_key: str,
                    blobs: BlobStore, cache: EmbeddingCache, reporter: Reporter, keep: str,
                    ref_stats: GaussianStats | None) -> tuple[list[FileEmbedding], GaussianStats]:
    """Stream the reference through the model, chunk by chunk, into its statistics (unless cached) and the files
    in the form ``keep`` says; frames that no metric reads are dropped as each chunk is folded."""
    timing: dict[str, float] = {}
    fold = SetFold(keep, GaussianStats(model.spec.dim) if ref_stats is None else None)
    fold.consume(_embed(redis, job_id, reference, model, emb_key, blobs, cache, reporter, timing))
    timing["statistics"] = fold.seconds
    _record_timing(reporter, "embedding reference", timing)
    return fold.files, ref_stats if ref_stats is not None else fold.stats  # type: ignore[return-value]


def _record_timing(reporter: Reporter, stage: str, timing: dict[str, float]) -> None:
    """Parts of an embedding stage as ``timing_s.stages["<stage>: decode|frontend|forward|cache|statistics"]``."""
    for part, seconds in timing.items():
        key = f"{stage}: {part}"
        reporter.durations[key] = round(reporter.durations.get(key, 0.0) + seconds, 4)


def _embed(redis: Redis, job_id: str, dataset: DatasetView, model: EmbeddingModel, emb_key: str, blobs: BlobStore,
           cache: EmbeddingCache, reporter: Reporter, timing: dict[str, float] | None = None
           ) -> Iterator[list[FileEmbedding]]:
    """Embeddings of every file of a set, chunk by chunk (``pipeline.embed_stream``); a large set is first shared
    out to idle workers with the same model, then read back from the cache."""
    settings = get_settings()
    files = dataset.files or []
    me = reporter.rq_job.worker_name if reporter.rq_job is not None and reporter.rq_job.worker_name else "local"
    if len(files) > settings.fanout_chunk_files and helpers_for(redis, model.spec.id, me) > 0:
        embed_dataset_fanned(redis, job_id, dataset.id, files, model, emb_key, blobs, cache, settings.batch_size,
                             me, settings.fanout_chunk_files, reporter.advance, reporter.flush)
        return embed_stream(files, model, blobs, cache, settings.batch_size, timing=timing)  # all cached: a read
    return embed_stream(files, model, blobs, cache, settings.batch_size, on_file=reporter.advance, timing=timing)


def _ndb_bins(stats_cache: StatsCache, spec: JobCreate, metrics: list[str], reference_id: str, emb_key: str,
              side: ReferenceSide, has_files: bool) -> tuple[NdbBins | None, bool]:
    """Fitted NDB bins of the reference, cached like reference statistics (content, provenance, K, whitening,
    seed); None when NDB is not asked or the reference is too small (the metric then says why). The samples
    come from ``side`` (``ndb_samples`` of its files), so the per-file means are computed once per job."""
    opts = spec.options.ndb
    if "ndb" not in metrics or not has_files:
        return None, False
    samples = side.ndb_samples(opts.unit, opts.max_frames, spec.options.seed)
    if len(samples) < 2 * opts.k:
        return None, False  # the metric itself says why
    cut = f"/{opts.max_frames}" if opts.unit == "frame" else ""  # frame samples depend on the cap
    key = ndb_bins_key(reference_id, emb_key, opts.k, opts.whiten, spec.options.seed,
                       f"{metric_versions()['ndb']}/{opts.unit}{cut}")
    cached = stats_cache.get(key)
    if cached is not None:
        return NdbBins.from_bytes(cached), True
    bins = NdbBins.fit(samples, k=opts.k, whiten=opts.whiten, seed=spec.options.seed)
    stats_cache.put(key, bins.to_bytes())
    return bins, False


def _put_pack(stats_cache: StatsCache, key: str, files: list[FileEmbedding], probs: bool) -> None:
    """Cache the reference as kept, unless it would take more than its share of the stats cache's bound."""
    data = reference_pack.pack(files, probs)
    bound = stats_cache.max_bytes if stats_cache.max_bytes is not None else get_settings().stats_cache_max_bytes
    if data is not None and len(data) <= bound * reference_pack.MAX_SHARE:
        stats_cache.put(key, data)


def _reference_terms(stats_cache: StatsCache, side: ReferenceSide, reference_id: str, emb_key: str,
                     reporter: Reporter) -> tuple[dict[str, Any], dict[str, str]]:
    """The reference-alone quantities of the job's metrics (KAD bandwidth and reference kernel sum, PRDC radii):
    read from the cache, or computed here (under the reference's lock) and cached. Returns the terms to seed
    ``evaluate_embeddings`` with, and ``hit``/``miss`` per term for ``diagnostics.cache``; a term the inputs
    cannot give is left to the metric, which then says why."""
    status: dict[str, str] = {}
    for name, options in side.options().items():
        label = "prdc_reference" if name.startswith("prdc_reference_") else name
        key = reference_term_key(reference_id, emb_key, name, options)
        cached = stats_cache.get(key)
        if cached is not None and side.load(name, cached):
            status[label] = "hit"
            continue
        reporter.set_stage(f"reference side: {label}")
        data = side.compute(name)
        if data is not None:
            stats_cache.put(key, data)
            status[label] = "miss"
    return side.terms, status


def _classify(name: str, candidate: DatasetView, cand_files: list, blobs: BlobStore, batch: int,
              checkpoint: Callable[[], None] = lambda: None) -> dict:
    """Predicted class of every candidate file by the operator's TorchScript classifier (loaded once); a cancel
    is seen between batches."""
    classifier = get_runtime(get_settings()).classifier(name)
    start = 0
    for part in chunks(candidate.files or [], FILES_PER_CHUNK):  # bounded memory, as for embedding
        waves = [load_wave(entry, blobs, classifier.sample_rate) for entry in part]
        for offset in range(0, len(waves), batch):
            checkpoint()
            labels = classifier.predict(waves[offset:offset + batch], batch)
            for file, label in zip(cand_files[start + offset:start + offset + len(labels)], labels, strict=True):
                file.predicted = label
        start += len(part)
    return classifier.provenance()


def _signal_pairs(reference: DatasetView, candidate: DatasetView, blobs: BlobStore, reporter: Reporter):
    """(name, reference wave, candidate wave, rate) for files with the same name, at the reference's rate."""
    ref_by_name = {f.name: f for f in reference.files or []}
    pairs = [(ref_by_name[c.name], c) for c in candidate.files or [] if c.name in ref_by_name]
    if not pairs:
        raise MetricInputError("signal metrics pair files by name, and no candidate file has the name of a "
                               "reference file; upload both sets with matching names")
    for ref, cand in pairs:
        ref_wave = load_wave(ref, blobs, ref.sample_rate)
        cand_wave = load_wave(cand, blobs, ref.sample_rate)
        reporter.advance(1)
        yield ref.name, ref_wave, cand_wave, ref.sample_rate


def _summary(view: DatasetView) -> dict[str, Any]:
    return {"id": view.id, "n_files": view.n_files, "duration_s": round(view.total_duration_s, 3),
            "sample_rates": view.sample_rates}


def _dataset_warnings(reference: DatasetView, candidate: DatasetView):
    if reference.sample_rates != candidate.sample_rates:
        yield (f"reference sample rates {reference.sample_rates} differ from candidate {candidate.sample_rates}: "
               "resampling can change the numbers")


def _failed_part(metrics: list[str], message: str) -> dict[str, Any]:
    """Every metric of one part failed for one reason; the job keeps the other part's metrics."""
    return {"metrics": {m: failed_metric(m, message) for m in metrics},
            "warnings": [f"{', '.join(metrics)} not computed: {message}"]}


def _merge(result: dict[str, Any], part: dict[str, Any]) -> None:
    result["metrics"].update(part.get("metrics", {}))
    result.setdefault("metric_timing_s", {}).update(part.get("timing_s", {}))
    result["diagnostics"].update(part.get("diagnostics", {}))
    result["warnings"].extend(w for w in part.get("warnings", []) if w not in result["warnings"])
