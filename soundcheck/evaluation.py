"""The evaluation dispatcher: embeddings (or waveform pairs) in, a JSON-safe result dict out.

Pure: no IO, no Redis, no logging; progress only through ``on_stage``. The worker embeds the files and calls
``evaluate_embeddings`` / ``evaluate_signals``; a ``MetricInputError`` becomes a failed job with its message.
All bootstrap intervals of one call share the same resamples of candidate files (seeded by ``options.seed``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soundcheck.jobspec import METRIC_NAMES, MetricOptions
from soundcheck.metrics import clap_score as clap
from soundcheck.metrics import diagnostics as diag
from soundcheck.metrics.bootstrap import interval_from_replicates, resample_weights
from soundcheck.metrics.class_scores import ClassScoreError, file_distributions, kl_divergence, shuffle_order
from soundcheck.metrics.classifier import (
    KL_EPS,
    classification_accuracy,
    distribution_from_window_softmax,
    inception_score,
    kl_audiocraft,
    kl_stable_audio,
    linear_probe,
    paired_kl,
)
from soundcheck.metrics.coverage import NdbBins, PrdcReference, PrdcTerms, nearest_files
from soundcheck.metrics.frechet import FileGaussians, FrechetReference, GaussianStats, fad_inf, fad_per_file
from soundcheck.metrics.kernel import DEFAULT_BLOCK, KernelReference, KernelTerms, backend_for
from soundcheck.metrics.subsample import described, subsample_files, subsample_frames
from soundcheck.references import ImportedGaussian

_VERSIONS = {name: "1" for name in METRIC_NAMES}
_VERSIONS["fad"] = _VERSIONS["fad_inf"] = _VERSIONS["fad_per_file"] = "2"  # centred stats, Cholesky trace
_VERSIONS["ndb"] = _VERSIONS["prdc"] = "2"  # one sample per file by default
_VERSIONS["mcd"] = "2"  # SPTK mel-cepstra of order 24 (version 1, on 13 log-mel MFCC, is now mfcc_distance)
_VERSIONS["kad"] = "2"  # sets over kad_max_frames are subsampled off CUDA; blockwise median bandwidth
_VERSIONS["fad"] = "3"  # basic bootstrap interval (the bias-shifted percentile undercovered)
_VERSIONS["ndb"] = _VERSIONS["prdc"] = "3"  # frame units: sets over options.<metric>.max_frames subsampled
FAD_FAMILY = frozenset({"fad", "fad_inf", "fad_per_file"})
#: FAD's interval: basic bootstrap (tests/unit/metrics/test_interval_coverage.py; docs/metrics-reference.md).
FAD_INTERVAL = "basic"
#: NDB names the files nearest the centre of at most this many differing bins (3 candidate, 3 reference each).
NDB_BIN_FILES_MAX = 50


class MetricInputError(ValueError):
    """The inputs cannot give this metric (missing labels, probabilities, too few frames...): the user's to fix."""


@dataclass
class FileEmbedding:
    name: str
    frames: np.ndarray  # [n_frames, dim] float32 (n may be 1)
    probs: np.ndarray | None = None  # [n_frames, n_classes] class probabilities (yamnet/cnn14), else None
    label: str | None = None  # intended class (subfolder name or manifest)
    predicted: str | None = None  # set when an operator TorchScript classifier already predicted the class
    sample_rate: int | None = None  # original sample rate of the file
    silent: bool = False
    #: Set when ``frames`` holds only the file's float64 mean (one row): how many frames made it (streamed sets).
    n_frames: int | None = None
    caption: str | None = None  # the text the file was generated from (dataset captions)
    text_embedding: np.ndarray | None = None  # the caption's CLAP text embedding, set by the worker for clap_score


def frame_count(file: FileEmbedding) -> int:
    return file.n_frames if file.n_frames is not None else len(np.atleast_2d(file.frames))


def file_means(frames: Sequence[np.ndarray]) -> np.ndarray:
    """One sample per file: the mean of its frames (float64), ``[n_files, dim]``. Files already one row (a
    streamed set kept as file means) are their own mean, exactly: stacked without a mean per file."""
    if frames and all(np.ndim(f) == 2 and len(f) == 1 for f in frames):
        return np.concatenate(frames).astype(np.float64, copy=False)
    return np.stack([np.asarray(f, dtype=np.float64).mean(axis=0) for f in frames])


def ndb_samples(files: Sequence[FileEmbedding], unit: str, max_frames: int | None = None, seed: int = 0) -> np.ndarray:
    """The samples NDB bins are fitted on, in the job's unit (used by the worker to cache the bins); frames
    above ``max_frames`` are cut to the seeded subsample ``_ndb`` uses."""
    frames = [np.atleast_2d(f.frames) for f in files]
    if unit != "frame":
        return file_means(frames)
    return subsample_frames(np.concatenate(frames), max_frames or None, seed)[0]


def metric_versions() -> dict[str, str]:
    """Version of each metric's definition; bumped whenever a number could change for the same input."""
    return dict(_VERSIONS)


def json_safe(value: Any) -> Any:
    """Plain Python containers and numbers; NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


@dataclass
class _Context:
    reference: Sequence[FileEmbedding]
    candidate: Sequence[FileEmbedding]
    options: MetricOptions
    reference_stats: GaussianStats | ImportedGaussian | None
    ndb_bins: NdbBins | None
    n_reference_files: int | None = None
    #: Called between blocks of work (bootstrap resamples, k-means fits, kernel blocks); raises to stop the job.
    checkpoint: Callable[[], None] = lambda: None
    #: The worker's torch device; "cuda..." runs the FAD bootstrap's eigenproblems batched on the GPU.
    device: str = "cpu"
    #: Where KAD's kernel sums run ("auto": the worker's device when it is CUDA, else numpy) and, off CUDA,
    #: the frame cap above which KAD uses a seeded subsample (None: never). Both from Settings via the worker.
    kad_device: str = "auto"
    kad_max_frames: int | None = 20_000
    #: What FileEmbedding.probs hold: "probabilities" or "logits" (the model's ModelSpec.class_scores).
    class_scores: str = "probabilities"
    #: Why the caption texts could not be embedded (the model has no text encoder, tokenizer files missing).
    text_problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def cand_frames(self) -> list[np.ndarray]:
        return self.cached("cand_frames", lambda: [np.atleast_2d(f.frames) for f in self.candidate])

    @property
    def ref_frames(self) -> list[np.ndarray]:
        return self.cached("ref_frames", lambda: [np.atleast_2d(f.frames) for f in self.reference])

    def samples(self, metric: str, unit: str) -> tuple[np.ndarray, list[np.ndarray]]:
        """Reference samples and candidate samples per file, in the unit the metric asks for."""
        ref = self.ref_samples(metric, unit)
        if unit == "frame":
            return ref, self.cand_frames
        return ref, self.cached("cand_means", lambda: [m[None, :] for m in file_means(self.cand_frames)])

    def ref_samples(self, metric: str, unit: str) -> np.ndarray:
        ref = self.ref_all(metric, frames=unit == "frame")
        return ref if unit == "frame" else self.cached("ref_means", lambda: file_means(self.ref_frames))

    def capped_samples(self, metric: str, unit: str,
                       max_frames: int) -> tuple[np.ndarray, list[np.ndarray], dict | None]:
        """``samples`` with, in frame units, each set over ``max_frames`` (0: never) cut to a seeded subsample
        (soundcheck.metrics.subsample); the third item says what was cut (None: nothing)."""
        ref, cand = self.samples(metric, unit)
        if unit != "frame" or not max_frames:
            return ref, cand, None
        seed = self.options.seed
        ref, ref_from = self.cached(f"{metric}_ref_cut", lambda: subsample_frames(ref, max_frames, seed))
        cand, cand_from = self.cached(f"{metric}_cand_cut", lambda: subsample_files(cand, max_frames, seed))
        return ref, cand, described(max_frames, seed, ref_from, cand_from)

    def ref_all(self, metric: str, frames: bool = True) -> np.ndarray:
        if not self.reference:
            raise MetricInputError(f"{metric} needs the reference embeddings, and none were given")
        if frames and any(f.n_frames is not None for f in self.reference):
            raise MetricInputError(f"{metric} needs the reference frames, and only file means were kept")
        return self.cached("ref_all", lambda: np.concatenate(self.ref_frames))

    def frechet_ref(self) -> FrechetReference:
        """The reference Gaussian prepared once for every FAD-family metric of the job: from the statistics, or
        the mean and covariance of an imported reference exactly as given."""
        def make() -> FrechetReference:
            given = self.reference_stats
            if isinstance(given, ImportedGaussian):
                return FrechetReference(given.mean, given.cov)
            return FrechetReference.of(self.ref_stats())
        return self.cached("frechet_ref", make)

    def ref_stats(self) -> GaussianStats:
        def make() -> GaussianStats:
            if self.reference_stats is not None:
                return self.reference_stats
            if not self.reference or any(f.n_frames is not None for f in self.reference):
                raise MetricInputError("FAD needs reference statistics or reference embeddings, and has neither")
            stats = GaussianStats(self.ref_frames[0].shape[1])
            for frames in self.ref_frames:
                stats.update(frames)
            return stats
        stats = self.cached("ref_stats", make)
        if stats.n < 2:
            raise MetricInputError(f"FAD needs at least 2 reference frames, got {stats.n}")
        return stats

    def cand_stats(self) -> GaussianStats:
        def make() -> GaussianStats:
            stats = GaussianStats(self.cand_frames[0].shape[1])
            for frames in self.cand_frames:
                stats.update(frames)
            return stats
        return self.cached("cand_stats", make)

    def weights(self, n_files: int | None = None) -> np.ndarray | None:
        """Shared bootstrap resamples ([B, F] multiplicities) of the candidate files, or None when off."""
        n_files = len(self.candidate) if n_files is None else n_files
        if self.options.bootstrap == 0:
            return None
        return self.cached(f"weights{n_files}", lambda: resample_weights(n_files, self.options.bootstrap,
                                                                          self.options.seed))

    def interval(self, values: np.ndarray | None, point: float, bounds: tuple[float, float] = (-np.inf, np.inf),
                 method: str = "bias-shifted") -> dict | None:
        """Bootstrap interval of ``values`` around ``point``; ``method`` as in bootstrap.METHOD_NAMES (FAD uses
        "basic", the method its coverage simulation supports; the others keep the bias-shifted percentile)."""
        if values is None:
            return None
        found = interval_from_replicates(values, self.options.confidence, point, bounds, method)
        return found.as_dict() if found is not None else None

    def sizes(self, uses_reference_frames: bool = True) -> dict:
        ref_frames = (self.reference_stats.n if self.reference_stats is not None and not self.reference
                      else sum(frame_count(f) for f in self.reference))
        return {"n_reference": len(self.reference) if self.reference else self.n_reference_files,
                "n_candidate": len(self.candidate), "frames_reference": None if ref_frames is None else int(ref_frames),
                "frames_candidate": int(sum(len(f) for f in self.cand_frames))}


def _fad(ctx: _Context) -> dict:
    ref = ctx.frechet_ref()
    cand = ctx.cand_stats()
    if cand.n < 2:
        raise MetricInputError(f"FAD needs at least 2 candidate frames, got {cand.n}")
    weights = ctx.weights()
    values = None
    if weights is not None:
        device = ctx.device if ctx.device.startswith("cuda") else None  # numpy/LAPACK on the CPU: no torch import
        gauss = FileGaussians(ctx.cand_frames)
        values = gauss.fad(ref, weights, checkpoint=ctx.checkpoint, device=device)
        if gauss.fallback is not None:
            ctx.warnings.append(f"fad: the bootstrap on {device} failed ({gauss.fallback}); it ran on the CPU")
    point = ref.distance(cand.mean, cand.cov)
    return {"value": point, "interval": ctx.interval(values, point, (0.0, np.inf), method=FAD_INTERVAL)}


def _fad_inf(ctx: _Context) -> dict:
    opts = ctx.options.fad_inf
    try:
        res = fad_inf(ctx.frechet_ref(), ctx.cand_frames, opts.sizes, opts.repeats, ctx.options.seed)
    except ValueError as exc:
        raise MetricInputError(f"fad_inf: {exc}; adjust options.fad_inf.sizes") from exc
    return {"value": res.value, "interval": None, "slope": res.slope, "r2": res.r2,
            "points": [{"n": n, "fad": v} for n, v in res.points], "repeats": res.repeats, "sampling": res.sampling}


def _fad_per_file(ctx: _Context) -> dict:
    scores = fad_per_file(ctx.frechet_ref(), ctx.cand_frames, [f.name for f in ctx.candidate])
    top = ctx.options.fad_per_file.top
    return {"value": float(np.median([s for _, s, _ in scores])), "statistic": "median of per-file FAD",
            "interval": None, "worst": [{"name": n, "fad": s, "frames": k} for n, s, k in scores[:top]],
            "single_frame_files": sum(1 for _, _, k in scores if k == 1),
            "note": "each file's own mean and covariance; a one-frame file has covariance 0"}


def _kad_setup(ctx: _Context) -> tuple[str, int | None]:
    """KAD's device and frame cap for this context (the cap applies off CUDA only)."""
    device = ctx.kad_device
    if device == "auto" and ctx.device.startswith("cuda"):
        device = ctx.device
    return device, (None if backend_for(device).is_cuda else (ctx.kad_max_frames or None))


def _kad_reference(ctx: _Context) -> KernelReference:
    device, max_frames = _kad_setup(ctx)
    return ctx.cached("kad_reference", lambda: KernelReference.of(
        ctx.ref_all("kad"), ctx.options.kad.bandwidth, ctx.options.seed, max_frames=max_frames, device=device,
        checkpoint=ctx.checkpoint))


def _prdc_ref_samples(ctx: _Context) -> np.ndarray:
    """PRDC's reference samples, cut to ``prdc.max_frames`` in frame units (as ``capped_samples``)."""
    opts = ctx.options.prdc
    ref = ctx.ref_samples("prdc", opts.unit)
    if opts.unit != "frame" or not opts.max_frames:
        return ref
    return ctx.cached("prdc_ref_cut", lambda: subsample_frames(ref, opts.max_frames, ctx.options.seed))[0]


def _prdc_reference(ctx: _Context) -> PrdcReference:
    k, unit = ctx.options.prdc.k, ctx.options.prdc.unit
    return ctx.cached(f"prdc_reference_{unit}", lambda: PrdcReference.of(_prdc_ref_samples(ctx), (k,),
                                                                          ctx.checkpoint))


def _kad(ctx: _Context) -> dict:
    """The reference side is one ``KernelReference`` (ctx cache key ``kad_reference``: a cached one put there
    is used as is and gives the same numbers). Sums run on ``kad_device``; off CUDA each set is capped at
    ``kad_max_frames`` frames by a seeded subsample, named in the result."""
    opts = ctx.options.kad
    device, max_frames = _kad_setup(ctx)
    seed = ctx.options.seed
    try:
        reference = _kad_reference(ctx)
        terms = KernelTerms(None, ctx.cand_frames, opts.bandwidth, opts.scale, seed=seed, reference=reference,
                            device=device, max_frames=max_frames, checkpoint=ctx.checkpoint)
    except ValueError as exc:
        raise MetricInputError(f"kad: {exc}") from exc
    point, boot = terms.point_and_resamples(ctx.weights())
    res = terms.result(point)
    values = boot * terms.scale if boot is not None else None
    return {"value": res.value, "interval": ctx.interval(values, res.value), "mmd2": res.mmd2,
            "bandwidth": res.bandwidth, "bandwidth_source": res.bandwidth_source,
            "median_points": res.median_points, "scale": res.scale, "seed": seed,
            "subsampled_from": res.subsampled_from, "backend": res.backend,
            "kernel": "gaussian rbf exp(-||a-b||^2 / (2 h^2)), unbiased MMD^2"}


def _ndb(ctx: _Context) -> dict:
    opts = ctx.options.ndb
    ref, cand, cut = ctx.capped_samples("ndb", opts.unit, opts.max_frames)
    if ctx.ndb_bins is not None:
        bins = ctx.ndb_bins
    elif len(ref) < 2 * opts.k:
        raise MetricInputError(f"NDB with K={opts.k} bins needs at least {2 * opts.k} reference {opts.unit}s (two "
                               f"per bin), got {len(ref)}; lower options.ndb.k")
    else:
        bins = NdbBins.fit(ref, k=opts.k, whiten=opts.whiten, seed=ctx.options.seed, checkpoint=ctx.checkpoint)
    res = bins.evaluate(np.concatenate(cand), alpha=opts.alpha, z_threshold=opts.z_threshold)
    different = res.different_bins[:NDB_BIN_FILES_MAX]
    cand_owners = [f.name for f, c in zip(ctx.candidate, cand, strict=True) for _ in range(len(c))]
    ref_owners = ([f.name for f in ctx.reference for _ in range(frame_count(f))] if opts.unit == "frame"
                  else [f.name for f in ctx.reference])
    near_cand = nearest_files(bins, np.concatenate(cand), cand_owners, different)
    near_ref = (nearest_files(bins, ref, ref_owners, different) if len(ref_owners) == len(ref)
                else {b: [] for b in different})
    bin_files = [{"bin": b, "candidate": near_cand[b], "reference": near_ref[b]} for b in different]
    return {"value": res.ndb, "interval": None, "ndb": res.ndb, "ndb_over_k": res.ndb_over_k, "k": res.k,
            "jsd": res.jsd_nats, "jsd_bits": res.jsd_bits, "different_bins": res.different_bins,
            "alpha": res.alpha, "z_threshold": res.z_threshold, "whiten": bins.whiten, "seed": bins.seed,
            "unit": opts.unit, "samples_reference": len(ref), "samples_candidate": int(sum(len(c) for c in cand)),
            "subsampled_from": cut,
            "bins": {"reference_proportions": res.reference_proportions,
                     "candidate_proportions": res.candidate_proportions, "standard_errors": res.standard_errors,
                     "z": res.z, "p_values": res.p_values, "order": "decreasing reference bin size"},
            "bin_files": bin_files}


def _prdc(ctx: _Context) -> dict:
    k, unit = ctx.options.prdc.k, ctx.options.prdc.unit
    _, cand, cut = ctx.capped_samples("prdc", unit, ctx.options.prdc.max_frames)
    try:  # ctx cache key prdc_reference_<unit>: a cached PrdcReference put there is used as is
        reference = _prdc_reference(ctx)
        terms = PrdcTerms(None, cand, k, reference=reference, checkpoint=ctx.checkpoint)
    except ValueError as exc:
        raise MetricInputError(f"prdc: {exc}; lower options.prdc.k") from exc
    point = terms.scores(np.ones((1, len(ctx.candidate))))
    weights = ctx.weights()
    boot = terms.scores(weights) if weights is not None else None
    out: dict[str, Any] = {"value": None, "interval": None, "k": k, "unit": unit, "subsampled_from": cut}
    for name, values in point.items():
        bounds = (0.0, np.inf) if name == "density" else (0.0, 1.0)
        out[name] = {"value": float(values[0]),
                     "interval": ctx.interval(boot[name] if boot else None, float(values[0]), bounds)}
    return out


class ReferenceSide:
    """What a job's metrics need from the reference alone (KAD's :class:`KernelReference`, PRDC's k-NN radii),
    built or loaded outside :func:`evaluate_embeddings` with the very code it runs, so that the worker can cache
    them and a job given them (``reference_terms=side.terms``) computes the same numbers, bit for bit.

    Terms are named by their ``_Context`` cache key; :meth:`options` gives, per term, everything besides the
    reference content and embedding provenance that changes it (the worker puts that into the cache key)."""

    def __init__(self, metrics: Sequence[str], reference: Sequence[FileEmbedding], options: MetricOptions,
                 device: str = "cpu", kad_device: str = "auto", kad_max_frames: int | None = 20_000,
                 checkpoint: Callable[[], None] | None = None, rows: np.ndarray | None = None,
                 trusted: bool = False) -> None:
        """``rows``: the reference files' frames already concatenated (a cached pack of the set), not copied.
        ``trusted``: the files came from the pack cached under the same dataset content id and embedding key as
        the terms (the worker's keys), so :meth:`load` skips fingerprinting them: that would only re-prove what
        both keys already name (KAD's blake2b pass over every frame was ~28 ms of a 7,000 x 1024-d reference)."""
        self._ctx = _Context(reference, [], options, None, None, device=device, kad_device=kad_device,
                             kad_max_frames=kad_max_frames)
        if checkpoint is not None:
            self._ctx.checkpoint = checkpoint
        if rows is not None:
            self._ctx._cache["ref_all"] = rows
        self.metrics = set(metrics)
        self.trusted = trusted

    def ndb_samples(self, unit: str, max_frames: int | None = None, seed: int = 0) -> np.ndarray:
        """What :func:`ndb_samples` gives, through the context's cache: the per-file means are computed once for
        the NDB bins, PRDC's radii and the metrics themselves (handed on in :attr:`terms`); frames above
        ``max_frames`` are cut to the seeded subsample ``_ndb`` uses."""
        if unit == "frame":
            return subsample_frames(self._ctx.ref_all("ndb"), max_frames or None, seed)[0]
        return self._ctx.ref_samples("ndb", unit)

    def options(self) -> dict[str, dict[str, Any]]:
        """Term name -> the options and versions that change it, for the terms these metrics read."""
        out: dict[str, dict[str, Any]] = {}
        opts = self._ctx.options
        if "kad" in self.metrics:
            device, max_frames = _kad_setup(self._ctx)
            out["kad_reference"] = {"bandwidth": opts.kad.bandwidth, "seed": opts.seed, "max_frames": max_frames,
                                    "backend": backend_for(device).name, "block_size": DEFAULT_BLOCK,
                                    "version": _VERSIONS["kad"]}
        if "prdc" in self.metrics:
            out[f"prdc_reference_{opts.prdc.unit}"] = {"k": opts.prdc.k, "unit": opts.prdc.unit,
                                                       "version": _VERSIONS["prdc"]}
            if opts.prdc.unit == "frame":
                out[f"prdc_reference_{opts.prdc.unit}"]["max_frames"] = opts.prdc.max_frames
        return out

    def compute(self, name: str) -> bytes | None:
        """Build one term here and return it as cacheable bytes (without the reference frames, which the cache of
        embeddings holds); None when the inputs cannot give it (the metric then says why)."""
        try:
            if name == "kad_reference":
                return _kad_reference(self._ctx).to_bytes(include_frames=False)
            return _prdc_reference(self._ctx).to_bytes(include_samples=False)
        except (ValueError, MetricInputError):
            self._ctx._cache.pop(name, None)
            return None

    def load(self, name: str, data: bytes) -> bool:
        """Use a cached term; False (and nothing kept) when it does not fit these frames or options."""
        try:
            if name == "kad_reference":
                device, max_frames = _kad_setup(self._ctx)
                term: Any = KernelReference.from_bytes(data, frames=self._ctx.ref_all("kad"), verify=not self.trusted)
                term.check(self._ctx.options.kad.bandwidth, self._ctx.options.seed, DEFAULT_BLOCK, max_frames)
                if term.backend != backend_for(device).name:
                    return False
            else:
                term = PrdcReference.from_bytes(data, samples=_prdc_ref_samples(self._ctx), verify=not self.trusted)
                if self._ctx.options.prdc.k not in term.radii:
                    return False
        except (ValueError, MetricInputError, KeyError):
            return False
        self._ctx._cache[name] = term
        return True

    @property
    def terms(self) -> dict[str, Any]:
        """The context entries to seed ``evaluate_embeddings`` with (the terms, and the reference arrays they
        were built from, so those are not concatenated twice)."""
        return dict(self._ctx._cache)


def _accuracy(ctx: _Context) -> dict:
    labelled = [f for f in ctx.candidate if f.label is not None]
    if not labelled:
        raise MetricInputError("accuracy needs the intended class of each candidate file: put the files in one "
                               "subfolder per class, or give labels in the manifest")
    named = ctx.options.accuracy.classifier
    if named or all(f.predicted is not None for f in labelled):
        missing = sum(f.predicted is None for f in labelled)
        if missing:
            raise MetricInputError(f"classifier {named!r} gave no prediction for {missing} candidate files")
        pred, how = [str(f.predicted) for f in labelled], f"operator classifier {named or ''}".strip()
    else:
        ref = [f for f in ctx.reference if f.label is not None]
        if len({f.label for f in ref}) < 2:
            raise MetricInputError("accuracy by linear probe needs labelled reference files of at least two classes "
                                   "(one subfolder per class), or an operator classifier (options.accuracy.classifier)")
        unknown = sorted({f.label for f in labelled} - {f.label for f in ref})
        if unknown:
            ctx.warnings.append(f"candidate classes {unknown} have no reference files: the linear probe can never "
                                "predict them")
        pred = linear_probe([np.atleast_2d(f.frames) for f in ref], [str(f.label) for f in ref],
                            [np.atleast_2d(f.frames) for f in labelled], seed=ctx.options.seed)
        how = "linear probe: logistic regression on reference frames, soft vote over each file's frames"
    res = classification_accuracy(pred, [str(f.label) for f in labelled])
    correct = np.array([p == str(f.label) for p, f in zip(pred, labelled, strict=True)], dtype=np.float64)
    weights = ctx.weights(len(labelled))
    values = weights @ correct / weights.sum(axis=1) if weights is not None else None
    return {"value": res["accuracy"], "interval": ctx.interval(values, res["accuracy"], (0.0, 1.0)),
            "classifier": how,
            "per_class": res["per_class"], "confusion": {"labels": res["labels"], "matrix": res["confusion"]},
            "n_candidate": len(labelled), "unlabelled_candidate": len(ctx.candidate) - len(labelled)}


def _file_probs(files: Sequence[FileEmbedding], role: str, metric: str, model_scores: str = "probabilities",
                activation: str = "model", pooling: str = "mean_probabilities") -> np.ndarray:
    """One class distribution per file (see soundcheck.metrics.class_scores for the choices)."""
    missing = [f.name for f in files if f.probs is None]
    if missing:
        raise MetricInputError(f"{metric} needs class probabilities of the {role} files ({len(missing)} have none, "
                               f"e.g. {missing[0]!r}): use an embedding model with a classifier head (yamnet, cnn14)")
    try:
        return file_distributions([f.probs for f in files], model_scores, activation, pooling)
    except ClassScoreError as exc:
        raise MetricInputError(f"{metric}: {exc}") from exc


def _is(ctx: _Context) -> dict:
    opts = ctx.options.is_
    splits = opts.splits
    probs = _file_probs(ctx.candidate, "candidate", "is", ctx.class_scores, opts.activation)
    if len(probs) < splits:
        raise MetricInputError(f"IS with {splits} splits needs at least {splits} candidate files, got {len(probs)}; "
                               "lower options.is.splits")
    order = shuffle_order(len(probs), ctx.options.seed, opts.shuffle)  # splits must not follow folders
    mean, std = inception_score(probs[order], splits)
    return {"value": mean, "std": std, "splits": splits, "interval": None, "activation": opts.activation,
            "shuffle": opts.shuffle,
            "note": "per-file distribution = mean of its frames' distributions; files shuffled with options.seed"}


def _kl(ctx: _Context) -> dict:
    opts = ctx.options.kl
    ref = {f.name: f for f in ctx.reference}
    pairs = [(ref[f.name], f) for f in ctx.candidate if f.name in ref]
    if not pairs:
        raise MetricInputError("kl pairs files by name, and no candidate file has the name of a reference file")
    counts = {"n_pairs": len(pairs), "unpaired_reference": len(ctx.reference) - len(pairs),
              "unpaired_candidate": len(ctx.candidate) - len(pairs), "eps": KL_EPS}
    if opts.definition != "soundcheck":
        return {**_kl_published(pairs, opts.definition), **counts}
    p_ref = _file_probs([r for r, _ in pairs], "reference", "kl", ctx.class_scores, opts.activation, opts.pooling)
    p_cand = _file_probs([c for _, c in pairs], "candidate", "kl", ctx.class_scores, opts.activation, opts.pooling)
    if opts.activation == "model":
        value = paired_kl(p_ref, p_cand) if opts.direction == "reference_candidate" else paired_kl(p_cand, p_ref)
    else:  # the peers' definitions: rows used as the activation gives them (sigmoid rows are not normalised)
        first, second = (p_ref, p_cand) if opts.direction == "reference_candidate" else (p_cand, p_ref)
        value = kl_divergence(first, second, KL_EPS)
    direction = ("KL(p_reference || p_candidate + eps)" if opts.direction == "reference_candidate"
                 else "KL(p_candidate || p_reference + eps)")
    return {"value": value, "interval": None, **counts, "definition": "soundcheck",
            "direction": f"{direction}, mean over pairs", "activation": opts.activation, "pooling": opts.pooling}


def _kl_published(pairs: list[tuple[FileEmbedding, FileEmbedding]], definition: str) -> dict:
    """stable-audio-metrics' or audiocraft's PaSST KL, on class outputs that are a softmax per window."""
    for ref, cand in pairs:
        for f in (ref, cand):
            if f.probs is None:
                raise MetricInputError(f"kl ({definition}) needs class outputs of {f.name!r}: use a passt model")
            if not np.allclose(np.atleast_2d(f.probs).sum(axis=1), 1.0, atol=1e-3):
                raise MetricInputError(f"kl ({definition}) needs a softmax per window (the passt models); the class "
                                       f"outputs of {f.name!r} do not sum to 1")
    if definition == "stable-audio-metrics":
        p_ref = np.stack([distribution_from_window_softmax(r.probs) for r, _ in pairs])
        p_cand = np.stack([distribution_from_window_softmax(c.probs) for _, c in pairs])
        return {"value": kl_stable_audio(p_ref, p_cand), "interval": None, "definition": definition,
                "activation": "softmax", "aggregation": "per file: softmax of the mean of its windows' logits",
                "direction": "KL(p_candidate || p_reference + eps), mean over pairs (F.kl_div((p_ref + eps).log(), "
                "p_cand, reduction='sum'))"}
    short = [c.name for r, c in pairs if len(np.atleast_2d(r.probs)) != len(np.atleast_2d(c.probs))]
    if short:
        raise MetricInputError(f"kl (audiocraft) pairs 10 s segments in order, and {len(short)} pairs have different "
                               f"segment counts (e.g. {short[0]!r}): audiocraft compares files of equal length")
    res = kl_audiocraft([r.probs for r, _ in pairs], [c.probs for _, c in pairs])
    return {"value": res["kld"], "interval": None, **res, "definition": definition, "activation": "softmax",
            "n_segment_pairs": int(sum(len(np.atleast_2d(r.probs)) for r, _ in pairs)),
            "aggregation": "per 10 s segment (segments paired in order), mean over all segment pairs",
            "direction": "kld = KL(p_reference || p_candidate + eps); kld_qp the reverse"}


def _clap_score(ctx: _Context) -> dict:
    paired = [f for f in ctx.candidate if f.caption is not None]
    if not paired:
        raise MetricInputError("clap_score needs the caption of each candidate file, and the candidate has none: "
                               "add captions.csv (name,caption) or PUT /v1/datasets/{id}/captions")
    if ctx.text_problem is not None or any(f.text_embedding is None for f in paired):
        raise MetricInputError(ctx.text_problem or "clap_score needs the text embedding of each caption: use a "
                               "CLAP model (clap-laion-*)")
    audio = np.stack([clap.file_embedding(f.frames) for f in paired])
    text = np.stack([np.asarray(f.text_embedding, dtype=np.float64) for f in paired])
    cosines = clap.pair_cosines(audio, text)
    value = float(cosines.mean())
    values = clap.bootstrap_means(cosines, ctx.weights(len(paired)))
    return {"value": value, "interval": ctx.interval(values, value, (-1.0, 1.0)), "n_paired": len(paired),
            "n_unpaired": len(ctx.candidate) - len(paired),
            "per_file": {f.name: float(c) for f, c in zip(paired, cosines, strict=True)},
            "definition": "mean over caption-paired candidate files of cos(mean of the file's CLAP audio window "
                          "embeddings, CLAP text embedding of its caption)"}


_EMBEDDING_METRICS: dict[str, Callable[[_Context], dict]] = {
    "fad": _fad, "fad_inf": _fad_inf, "fad_per_file": _fad_per_file, "kad": _kad, "ndb": _ndb, "prdc": _prdc,
    "accuracy": _accuracy, "is": _is, "kl": _kl, "clap_score": _clap_score,
}


def _check_metrics(metrics: Sequence[str], allowed: Iterable[str], other: str) -> list[str]:
    allowed = set(allowed)
    for name in metrics:
        if name not in METRIC_NAMES:
            raise MetricInputError(f"unknown metric {name!r}; choose from {', '.join(METRIC_NAMES)}")
        if name not in allowed:
            raise MetricInputError(f"metric {name!r} is computed by {other}")
    return list(dict.fromkeys(metrics))


def _check_dims(ctx: _Context) -> int:
    dims = {np.atleast_2d(f.frames).shape[1] for f in [*ctx.reference, *ctx.candidate]}
    if ctx.reference_stats is not None:
        dims.add(ctx.reference_stats.dim)
    if len(dims) != 1:
        raise MetricInputError(f"embedding dimensions differ between files or statistics: {sorted(dims)}")
    empty = [f.name for f in [*ctx.reference, *ctx.candidate] if np.atleast_2d(f.frames).shape[0] == 0]
    if empty:
        raise MetricInputError(f"{len(empty)} files have no embedding frames, e.g. {empty[0]!r}")
    return dims.pop()


def _diagnostics(ctx: _Context, metrics: list[str], dim: int) -> dict:
    out: dict[str, Any] = {"candidate": diag.set_diagnostics([len(f) for f in ctx.cand_frames], dim)}
    if ctx.reference or ctx.reference_stats is None:
        out["reference"] = diag.set_diagnostics([frame_count(f) for f in ctx.reference], dim)
    else:
        out["reference"] = {"files": None, "frames": ctx.reference_stats.n, "dim": dim}
    if FAD_FAMILY & set(metrics):
        if out["reference"]["frames"] is not None:  # an imported reference may not say how many frames made it
            ctx.warnings += diag.size_warnings("reference", out["reference"]["frames"], dim)
        ctx.warnings += diag.size_warnings("candidate", out["candidate"]["frames"], dim)
        if ctx.cand_stats().n >= 2:
            out["covariance"] = diag.frechet_diagnostics(ctx.frechet_ref().sigma, ctx.cand_stats().cov)
    ctx.warnings += diag.silence_warnings("reference", [f.silent for f in ctx.reference])
    ctx.warnings += diag.silence_warnings("candidate", [f.silent for f in ctx.candidate])
    ctx.warnings += diag.sample_rate_warnings([f.sample_rate for f in ctx.reference],
                                              [f.sample_rate for f in ctx.candidate])
    return out


def failed_metric(name: str, message: str) -> dict:
    """The entry of a metric that could not be computed: the others are kept (one failure never discards them)."""
    return {"value": None, "interval": None, "error": message}


def all_failed(results: dict[str, dict]) -> bool:
    return bool(results) and all("error" in entry for entry in results.values())


def evaluate_embeddings(metrics: Sequence[str], reference: Sequence[FileEmbedding], candidate: Sequence[FileEmbedding],
                        options: MetricOptions, reference_stats: GaussianStats | ImportedGaussian | None = None,
                        on_stage: Callable[[str], None] | None = None, ndb_bins: NdbBins | None = None,
                        n_reference_files: int | None = None, checkpoint: Callable[[], None] | None = None,
                        device: str = "cpu", kad_device: str = "auto", kad_max_frames: int | None = 20_000,
                        reference_terms: dict[str, Any] | None = None,
                        class_scores: str = "probabilities", text_problem: str | None = None) -> dict:
    """Compute embedding metrics. ``reference`` may be empty when only FAD-family metrics are asked and
    ``reference_stats`` (cached) is given (then ``n_reference_files`` says how many files made them), or an
    :class:`~soundcheck.references.ImportedGaussian` (imported mean and covariance, used exactly as given);
    ``ndb_bins`` are cached bins of this reference, fitted on ``ndb_samples`` (else fitted here).

    A metric whose inputs cannot give it gets an ``error`` entry and the others are still computed; only when
    every metric fails is a :class:`MetricInputError` raised. ``checkpoint`` is called between metrics and
    between blocks of work inside them; whatever it raises (a cancel) propagates. ``timing_s`` holds the
    seconds each metric took. ``device`` is the worker's torch device (a GPU runs the FAD bootstrap);
    ``kad_device`` and ``kad_max_frames`` are the worker's KAD settings (SOUNDCHECK_KAD_DEVICE, _KAD_MAX_FRAMES).
    ``reference_terms``: quantities of this reference alone, by context key (``ReferenceSide.terms``: cached
    ``kad_reference``, ``prdc_reference_<unit>``), used as given; those computed here are added to the dict.
    ``text_problem``: why the candidate captions have no text embeddings (clap_score then fails with it)."""
    metrics = _check_metrics(metrics, _EMBEDDING_METRICS, "evaluate_signals (waveform pairs)")
    if not candidate:
        raise MetricInputError("the candidate set has no files")
    ctx = _Context(reference, candidate, options, reference_stats, ndb_bins, n_reference_files, device=device,
                   kad_device=kad_device, kad_max_frames=kad_max_frames, class_scores=class_scores,
                   text_problem=text_problem)
    if checkpoint is not None:
        ctx.checkpoint = checkpoint
    if reference_terms:
        ctx._cache.update(reference_terms)
    dim = _check_dims(ctx)
    results: dict[str, Any] = {}
    timing: dict[str, float] = {}
    for name in metrics:
        ctx.checkpoint()
        if on_stage is not None:
            on_stage(name)
        started = time.perf_counter()
        try:
            entry = _EMBEDDING_METRICS[name](ctx)
        except MetricInputError as exc:
            results[name] = failed_metric(name, str(exc))
            ctx.warnings.append(f"{name} was not computed: {exc}")
        else:
            results[name] = {**entry, **{k: v for k, v in ctx.sizes().items() if k not in entry}}
        timing[name] = round(time.perf_counter() - started, 4)
    if reference_terms is not None:
        reference_terms.update({k: v for k, v in ctx._cache.items()
                                if k == "kad_reference" or k.startswith("prdc_reference_")})
    if all_failed(results):
        raise MetricInputError("; ".join(f"{name}: {entry['error']}" if len(results) > 1 else entry["error"]
                                         for name, entry in results.items()))
    diagnostics = _diagnostics(ctx, [m for m in metrics if "error" not in results[m]], dim)
    return json_safe({"metrics": results, "diagnostics": diagnostics, "warnings": list(dict.fromkeys(ctx.warnings)),
                      "timing_s": timing})
