"""A file's class distribution from a model's class outputs, and the KL / IS variants peers report.

Models give either probabilities (yamnet, cnn14: ``ModelSpec.class_scores == "probabilities"``) or logits
(cnn14-16k: ``"logits"``). Peers disagree on what a "class distribution" is, and their numbers differ by
it, so each choice is an option and the result names it:

- audioldm_eval: softmax over the logits (``KL``) or raw sigmoid outputs (``KL_Sigmoid``, not normalised),
  KL(p_ref || p_cand + 1e-6) summed over classes, mean over pairs; IS on softmax of the logits.
- stable-audio-metrics ``passt_kld``: the mean of the window logits, then softmax; KL(p_cand || p_ref + 1e-6).
- soundcheck's default (``"model"``): the model's probabilities, each frame normalised to sum 1, then the mean.

All maths in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit, rel_entr, softmax


class ClassScoreError(ValueError):
    """The model's class outputs cannot give the asked distribution (e.g. softmax of probabilities)."""


def _activate(scores: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        return softmax(scores, axis=-1)
    if activation == "sigmoid":
        return expit(scores)
    raise ValueError(f"unknown activation {activation!r}")


def file_distribution(scores: np.ndarray, model_scores: str, activation: str, pooling: str) -> np.ndarray:
    """One file's class distribution from its per-frame class outputs ``[frames, classes]``.

    ``model_scores``: what the model outputs ("probabilities" or "logits"); ``activation``: "model", "softmax"
    or "sigmoid"; ``pooling``: "mean_probabilities" or "mean_logits"."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if activation == "model":
        if pooling != "mean_probabilities":
            raise ClassScoreError("pooling 'mean_logits' needs activation 'softmax' or 'sigmoid'")
        probs = np.clip(s if model_scores == "probabilities" else expit(s), 0.0, None)
        return (probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-300)).mean(axis=0)
    if model_scores != "logits":
        raise ClassScoreError(f"activation {activation!r} is applied to logits, and this model gives "
                              "probabilities: use a model that gives logits (cnn14-16k) or activation 'model'")
    if pooling == "mean_logits":
        return _activate(s.mean(axis=0), activation)
    return _activate(s, activation).mean(axis=0)


def file_distributions(scores: Sequence[np.ndarray], model_scores: str, activation: str, pooling: str) -> np.ndarray:
    return np.stack([file_distribution(s, model_scores, activation, pooling) for s in scores])


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    """Mean over rows of sum_c p log(p / (q + eps)): the eps goes to the second argument only, as
    ``torch.nn.functional.kl_div((q + eps).log(), p, reduction="sum") / N`` computes it. Rows are used as given
    (audioldm_eval's sigmoid variant is not normalised)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"paired distributions differ in shape: {p.shape} vs {q.shape}")
    return float(rel_entr(p, q + eps).sum(axis=1).mean())


def shuffle_order(n: int, seed: int, shuffle: str) -> np.ndarray:
    """The file order before IS splits: numpy's Generator, or the legacy RandomState audioldm_eval uses."""
    if shuffle == "randomstate":
        return np.random.RandomState(seed).permutation(n)
    return np.random.default_rng(seed).permutation(n)
