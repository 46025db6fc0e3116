"""CLAP score: how well each generated file matches the text it was generated from.

As stable-audio-metrics' ``clap_score`` (and the CLIP score it adapts, without CLIP's clipping at 0 and weight
w): the mean over caption-paired candidate files of cos(audio embedding, text embedding), both in LAION-CLAP's
joint space. A file's audio embedding is the mean of its window embeddings; with the fusion model
(``clap-laion-audio-fusion``, stable-audio-metrics' default checkpoint and recipe) a file has one window, so the
mean is that embedding. float64 throughout.
"""

from __future__ import annotations

import numpy as np


def pair_cosines(audio: np.ndarray, text: np.ndarray) -> np.ndarray:
    """cos between row i of ``audio`` ``[n, d]`` and row i of ``text`` ``[n, d]`` (eps 1e-8 as torch's)."""
    audio, text = np.asarray(audio, dtype=np.float64), np.asarray(text, dtype=np.float64)
    if audio.shape != text.shape or audio.ndim != 2:
        raise ValueError(f"need two [n, d] arrays of one shape, got {audio.shape} and {text.shape}")
    norms = np.maximum(np.linalg.norm(audio, axis=1), 1e-8) * np.maximum(np.linalg.norm(text, axis=1), 1e-8)
    return np.einsum("nd,nd->n", audio, text) / norms


def file_embedding(frames: np.ndarray) -> np.ndarray:
    """One audio vector per file: the float64 mean of its (L2-normalised) window embeddings."""
    return np.atleast_2d(np.asarray(frames, dtype=np.float64)).mean(axis=0)


def bootstrap_means(cosines: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
    """The score under each resample of the paired files (``weights`` ``[B, n]`` multiplicities), or None."""
    if weights is None:
        return None
    return weights @ cosines / weights.sum(axis=1)
