"""Paired comparison of two or more candidate sets against one reference: the dispatcher behind
POST /v1/comparisons (the worker embeds, this computes). Pure: no IO, progress only through ``on_stage``.

Every candidate is scored against the same reference side (FAD: the cached Gaussian statistics; KAD: one
``KernelReference``, its bandwidth from the reference), so each bootstrap resample applies the same reference
to every candidate; candidate files are resampled by ``paired.resample_plan`` (same indices for candidates
that share file names). The maths of the differences is in ``soundcheck.metrics.paired``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from soundcheck.comparespec import ComparisonOptions
from soundcheck.evaluation import FileEmbedding, MetricInputError, json_safe, metric_versions
from soundcheck.metrics.frechet import FileGaussians, FrechetReference, GaussianStats
from soundcheck.metrics.kernel import KernelReference, KernelTerms, backend_for
from soundcheck.metrics.paired import paired_difference, permutation_plan, resample_plan, sentence

Checkpoint = Callable[[], None]


def _frames(files: Sequence[FileEmbedding]) -> list[np.ndarray]:
    return [np.atleast_2d(f.frames) for f in files]


def fad_scores(reference: GaussianStats, candidates: Sequence[Sequence[np.ndarray]], weights: Sequence[np.ndarray],
               checkpoint: Checkpoint | None = None, device: str | None = None
               ) -> list[tuple[float, np.ndarray]]:
    """(FAD, replicates[B]) of each candidate (a list of per-file frame arrays) against one reference."""
    ref = FrechetReference.of(reference)
    out = []
    for files, w in zip(candidates, weights, strict=True):
        stats = GaussianStats(reference.dim)
        for f in files:
            stats.update(f)
        if stats.n < 2:
            raise MetricInputError(f"FAD needs at least 2 candidate frames, got {stats.n}")
        reps = FileGaussians(files).fad(ref, w, checkpoint=checkpoint, device=device)
        out.append((ref.distance(stats.mean, stats.cov), reps))
    return out


def kad_scores(reference: KernelReference, candidates: Sequence[Sequence[np.ndarray]],
               weights: Sequence[np.ndarray], scale: float, device: str | None = None,
               max_frames: int | None = None, checkpoint: Checkpoint | None = None) -> list[tuple[float, np.ndarray]]:
    """(KAD × scale, replicates[B]) of each candidate, all with the reference's kernel and bandwidth."""
    bandwidth = reference.bandwidth if reference.source == "given" else None
    out = []
    for files, w in zip(candidates, weights, strict=True):
        terms = KernelTerms(None, files, bandwidth, scale, reference.block_size, reference.seed,
                            reference=reference, device=device, max_frames=max_frames, checkpoint=checkpoint)
        point, reps = terms.point_and_resamples(w)
        out.append((point * scale, reps * scale))
    return out


def fad_pooled(reference: GaussianStats, checkpoint: Checkpoint | None, device: str | None):
    ref = FrechetReference.of(reference)

    def score(pooled: list[np.ndarray], wa: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gauss = FileGaussians(pooled)  # 0/1 weights: the FAD of the relabelled sets, exactly
        return (gauss.fad(ref, wa, checkpoint=checkpoint, device=device),
                gauss.fad(ref, wb, checkpoint=checkpoint, device=device))
    return score


def kad_pooled(reference: KernelReference, scale: float, device: str | None, cap: int | None,
                checkpoint: Checkpoint | None):
    bandwidth = reference.bandwidth if reference.source == "given" else None

    def score(pooled: list[np.ndarray], wa: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        terms = KernelTerms(None, pooled, bandwidth, scale, reference.block_size, reference.seed,
                            reference=reference, device=device, max_frames=cap, checkpoint=checkpoint)
        both = terms.mmd2(np.concatenate([wa, wb]))  # one pass over the pooled kernel for both relabelled sets
        return both[:len(wa)] * scale, both[len(wa):] * scale
    return score


def compare_embeddings(metrics: Sequence[str], labels: Sequence[str], candidates: Sequence[Sequence[FileEmbedding]],
                       options: ComparisonOptions, reference_stats: GaussianStats | None = None,
                       reference: Sequence[FileEmbedding] = (), on_stage: Callable[[str], None] | None = None,
                       checkpoint: Checkpoint | None = None, device: str = "cpu", kad_max_frames: int | None = None,
                       kad_reference: KernelReference | None = None) -> dict[str, Any]:
    """Scores of each candidate and the paired differences of every pair (i < j: difference = j − i).

    ``reference_stats`` serves FAD (else they are computed from ``reference``); KAD needs the reference frames
    (or a cached ``kad_reference``). Raises :class:`MetricInputError` for inputs that cannot be compared."""
    if len(candidates) < 2:
        raise MetricInputError("a comparison needs at least two candidate sets")
    if len(set(labels)) != len(labels):
        raise MetricInputError(f"candidate labels must differ: {list(labels)}")
    cand_frames = [_frames(files) for files in candidates]
    dims = {f.shape[1] for files in cand_frames for f in files}
    if reference_stats is not None:
        dims.add(reference_stats.dim)
    dims |= {np.atleast_2d(f.frames).shape[1] for f in reference}
    if len(dims) != 1:
        raise MetricInputError(f"embedding dimensions differ between sets: {sorted(dims)}")
    weights, groups = resample_plan([[f.name for f in files] for files in candidates], options.resamples,
                                    options.seed)
    scores: dict[str, list[tuple[float, np.ndarray]]] = {}
    extra: dict[str, dict] = {}
    warnings: list[str] = []
    #: per metric: (pooled files of two sets, weights of A', weights of B') -> (metric of A', metric of B')
    pooled_scorers: dict[str, Callable[[list[np.ndarray], np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {}
    for metric in dict.fromkeys(metrics):
        if on_stage is not None:
            on_stage(f"computing {metric}")
        if metric == "fad":
            stats = reference_stats
            if stats is None:
                if not reference:
                    raise MetricInputError("FAD needs the reference statistics or embeddings")
                stats = GaussianStats(dims.copy().pop())
                for f in _frames(reference):
                    stats.update(f)
            fad_device = device if device.startswith("cuda") else None
            scores[metric] = fad_scores(stats, cand_frames, weights, checkpoint, fad_device)
            pooled_scorers[metric] = fad_pooled(stats, checkpoint, fad_device)
            extra[metric] = {"reference_frames": int(stats.n)}
        elif metric == "kad":
            kad_device = device if device.startswith("cuda") else None
            cap = None if backend_for(kad_device).is_cuda else kad_max_frames
            ref = kad_reference
            if ref is None:
                if not reference:
                    raise MetricInputError("KAD needs the reference embeddings")
                try:
                    ref = KernelReference.of(np.concatenate(_frames(reference)), options.kad.bandwidth,
                                             options.seed, max_frames=cap, device=kad_device, checkpoint=checkpoint)
                except ValueError as exc:
                    raise MetricInputError(f"kad: {exc}") from exc
            scores[metric] = kad_scores(ref, cand_frames, weights, options.kad.scale, kad_device, cap, checkpoint)
            pooled_scorers[metric] = kad_pooled(ref, options.kad.scale, kad_device, cap, checkpoint)
            extra[metric] = {"bandwidth": ref.bandwidth, "bandwidth_source": ref.source, "scale": options.kad.scale}
            sizes = sorted(sum(len(f) for f in frames) for frames in cand_frames)
            if cap and sizes[-1] + sizes[-2] > cap:
                warnings.append(f"kad: sets over {cap} frames (SOUNDCHECK_KAD_MAX_FRAMES) are scored on a seeded "
                                "subsample, and the permutation test on a subsample of the two sets pooled")
        else:
            raise MetricInputError(f"metric {metric!r} cannot be compared yet; choose from fad, kad")
    candidates_out = [{"label": label, "n_files": len(files), "frames": int(sum(len(f) for f in frames)),
                       "metrics": {m: {"value": scores[m][i][0]} for m in scores}}
                      for i, (label, files, frames) in enumerate(zip(labels, candidates, cand_frames, strict=True))]
    pairs = []
    names = [[f.name for f in files] for files in candidates]
    for i, j in combinations(range(len(candidates)), 2):
        if on_stage is not None:
            on_stage(f"permutation test {labels[j]} vs {labels[i]}")
        wa, wb, _ = permutation_plan(names[i], names[j], options.resamples, options.seed)
        pooled = [*cand_frames[i], *cand_frames[j]]
        entries = {}
        for m, per in scores.items():
            perm_a, perm_b = pooled_scorers[m](pooled, wa, wb)
            diff = paired_difference(per[i][0], per[j][0], per[i][1], per[j][1], options.confidence,
                                     permuted=perm_b - perm_a)
            entries[m] = {**diff.as_dict(), "sentence": sentence(m, labels[i], labels[j], diff)}
        pairs.append({"a": labels[i], "b": labels[j], "paired_by_name": groups[i] == groups[j],
                      "metrics": entries})
    return json_safe({"candidates": candidates_out, "pairs": pairs, "metric_details": extra,
                      "resamples": options.resamples, "confidence": options.confidence, "seed": options.seed,
                      "metric_versions": {m: metric_versions()[m] for m in scores}, "warnings": warnings})
