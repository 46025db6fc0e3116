"""A reference set in the form its metrics keep it (``soundcheck.streaming``: file means or frames), packed into
one cached value, so a repeat job reads one value instead of one cached embedding per reference file.

The rows are stored as they were (float32 frames stay float32, float64 means stay float64) and handed back as
views of one array, so every number computed from them is the same, bit for bit. Names, labels, sample rates,
silence flags, frame counts and class probabilities come back too (diagnostics and warnings read them).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from soundcheck.evaluation import FileEmbedding

_FORMAT = 1
#: Largest pack kept, as a share of the stats cache's byte bound (a bigger set is read file by file instead,
#: rather than pushing every other reference's statistics out of the cache).
MAX_SHARE = 1 / 16


def pack(files: Sequence[FileEmbedding], probs: bool = True) -> bytes | None:
    """npz bytes (no pickle) of the files; None for an empty set or files of mixed shapes or dtypes. Class
    probabilities only with ``probs`` (only KL reads the reference's: they would double a YAMNet pack)."""
    if not files:
        return None
    rows = [np.atleast_2d(f.frames) for f in files]
    if len({(r.shape[1], r.dtype.str) for r in rows}) != 1:
        return None
    extra: dict[str, np.ndarray] = {}
    if probs and all(f.probs is not None for f in files):
        parts = [np.atleast_2d(f.probs) for f in files]
        if len({(p.shape[1], p.dtype.str) for p in parts}) != 1:
            return None
        extra = {"probs": np.concatenate(parts), "prob_rows": np.array([len(p) for p in parts], dtype=np.int64)}
    buf = io.BytesIO()
    np.savez(buf, format=np.int64(_FORMAT), rows=np.concatenate(rows),
             counts=np.array([len(r) for r in rows], dtype=np.int64),
             names=np.array([f.name for f in files], dtype=np.str_),
             labels=np.array(["" if f.label is None else f.label for f in files], dtype=np.str_),
             has_label=np.array([f.label is not None for f in files]),
             predicted=np.array(["" if f.predicted is None else f.predicted for f in files], dtype=np.str_),
             has_predicted=np.array([f.predicted is not None for f in files]),
             sample_rates=np.array([-1 if f.sample_rate is None else f.sample_rate for f in files], dtype=np.int64),
             silent=np.array([f.silent for f in files]),
             n_frames=np.array([-1 if f.n_frames is None else f.n_frames for f in files], dtype=np.int64), **extra)
    return buf.getvalue()


def unpack(data: bytes) -> tuple[list[FileEmbedding], np.ndarray]:
    """The files, and their rows as one array (the concatenation of their frames, which they are views of)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        if int(z["format"]) != _FORMAT:
            raise ValueError(f"unknown reference pack format {int(z['format'])}")
        rows = z["rows"]
        starts = np.r_[0, np.cumsum(z["counts"])].tolist()
        probs = z.get("probs")
        prob_starts = np.r_[0, np.cumsum(z["prob_rows"])].tolist() if probs is not None else None
        # plain lists: indexing numpy arrays element by element costs ~70 us a file
        names, labels, has_label = z["names"].tolist(), z["labels"].tolist(), z["has_label"].tolist()
        predicted, has_predicted = z["predicted"].tolist(), z["has_predicted"].tolist()
        rates, silent, n_frames = z["sample_rates"].tolist(), z["silent"].tolist(), z["n_frames"].tolist()
    return [FileEmbedding(
        name=names[i], frames=rows[starts[i]:starts[i + 1]],
        probs=probs[prob_starts[i]:prob_starts[i + 1]] if probs is not None else None,
        label=labels[i] if has_label[i] else None, predicted=predicted[i] if has_predicted[i] else None,
        sample_rate=rates[i] if rates[i] >= 0 else None, silent=silent[i],
        n_frames=n_frames[i] if n_frames[i] >= 0 else None) for i in range(len(names))], rows
