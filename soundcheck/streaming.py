"""Fold a set's embeddings chunk by chunk into what its metrics need, so no job holds frames it does not use.

The pipeline yields lists of FileEmbedding (``pipeline.embed_stream``); a :class:`SetFold` folds each list and
drops it. What is kept follows from the metrics (:func:`reference_keep`):

- ``stats``: Gaussian statistics only (the FAD family against a reference; ``is``, which reads no reference);
- ``means``: the statistics plus one float64 mean row per file (NDB and PRDC in the per-file unit), passed on as
  FileEmbeddings whose ``frames`` is that one row and whose ``n_frames`` says how many frames made it: the
  metrics read ``file_means`` of the frames, and the mean of one row is that row, so the numbers are identical;
- ``frames``: every frame (KAD, per-frame NDB/PRDC, the linear-probe accuracy, KL), as before.

Statistics are updated file by file in set order, exactly as the in-memory path did, so they are bitwise the
same as ``GaussianStats`` over the whole list (only a merge of partial statistics, e.g. from fan-out helpers,
would change the summation order; nothing here merges).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from soundcheck.evaluation import FAD_FAMILY, FileEmbedding
from soundcheck.jobspec import MetricOptions
from soundcheck.metrics import GaussianStats

KEEP_STATS, KEEP_MEANS, KEEP_FRAMES = "stats", "means", "frames"


def reference_keep(metrics: Sequence[str], options: MetricOptions) -> str:
    """What of the reference set the metrics need: ``stats``, ``means`` or ``frames`` (see module doc)."""
    wanted = set(metrics)
    per_frame = {m for m, unit in (("ndb", options.ndb.unit), ("prdc", options.prdc.unit)) if unit == "frame"}
    if ({"kad", "kl"} | per_frame) & wanted or ("accuracy" in wanted and not options.accuracy.classifier):
        return KEEP_FRAMES
    if {"ndb", "prdc"} & wanted:
        return KEEP_MEANS
    return KEEP_STATS


def needs_reference_stats(metrics: Sequence[str]) -> bool:
    return bool(FAD_FAMILY & set(metrics))


def mean_only(file: FileEmbedding) -> FileEmbedding:
    """The file with its frames replaced by their float64 mean (one row); ``n_frames`` keeps the count."""
    frames = np.atleast_2d(np.asarray(file.frames, dtype=np.float64))
    return FileEmbedding(name=file.name, frames=frames.mean(axis=0)[None, :], probs=None, label=file.label,
                         predicted=file.predicted, sample_rate=file.sample_rate, silent=file.silent,
                         n_frames=len(frames))


@dataclass
class SetFold:
    """Consumer of one set's stream: optional Gaussian statistics, and the files in the kept form."""

    keep: str
    stats: GaussianStats | None = None  # None: do not accumulate (cached statistics are used)
    files: list[FileEmbedding] = field(default_factory=list)
    n_files: int = 0
    #: Seconds spent folding (statistics and means), reported as its own stage.
    seconds: float = 0.0

    def fold(self, chunk: Sequence[FileEmbedding]) -> None:
        started = time.perf_counter()
        for file in chunk:
            if self.stats is not None:
                self.stats.update(np.atleast_2d(file.frames))
            if self.keep == KEEP_FRAMES:
                self.files.append(file)
            elif self.keep == KEEP_MEANS:
                self.files.append(mean_only(file))
        self.n_files += len(chunk)
        self.seconds += time.perf_counter() - started

    def consume(self, chunks: Iterable[Sequence[FileEmbedding]]) -> SetFold:
        for chunk in chunks:
            self.fold(chunk)
        return self
