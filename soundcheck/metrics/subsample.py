"""Seeded subsamples of frames for the metrics that need samples (KAD, PRDC and NDB in frame units): above a
configurable number of frames, a set is cut to a uniform draw without replacement of that many frames (the
same draw as ``kernel.subsample_rows``: seed, and stream 0 for the reference, 1 for the candidate), kept in
their original order and, for a candidate, grouped by their files (a file may keep none of its frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soundcheck.metrics.kernel import subsample_rows

REFERENCE_STREAM, CANDIDATE_STREAM = 0, 1


def subsample_frames(frames: np.ndarray, max_frames: int | None, seed: int,
                     stream: int = REFERENCE_STREAM) -> tuple[np.ndarray, int | None]:
    """(the rows kept, the number of rows before the cut or None when all were kept)."""
    idx = subsample_rows(len(frames), max_frames, seed, stream)
    return (frames, None) if idx is None else (frames[idx], len(frames))


def subsample_files(files: Sequence[np.ndarray], max_frames: int | None, seed: int,
                    stream: int = CANDIDATE_STREAM) -> tuple[list[np.ndarray], int | None]:
    """Per-file arrays of the frames kept from the whole set's draw (the same frames as ``subsample_frames`` of
    the concatenation), and the frame count before the cut (None: all kept, ``files`` returned as they are)."""
    counts = np.array([len(f) for f in files], dtype=np.int64)
    idx = subsample_rows(int(counts.sum()), max_frames, seed, stream)
    if idx is None:
        return list(files), None
    offsets = np.concatenate([[0], np.cumsum(counts)])
    bounds = np.searchsorted(idx, offsets)
    return [files[i][idx[bounds[i]:bounds[i + 1]] - offsets[i]] for i in range(len(files))], int(counts.sum())


def described(max_frames: int | None, seed: int, reference: int | None, candidate: int | None) -> dict | None:
    """What a result says of a cut ("subsampled_from"): frames before it per set (None: that set was not cut),
    the seed and the cap; None when neither set was cut."""
    if reference is None and candidate is None:
        return None
    return {"reference": reference, "candidate": candidate, "seed": int(seed), "max_frames": max_frames,
            "draw": "uniform without replacement, original order kept"}
