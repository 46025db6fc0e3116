"""Classifier-based scores: accuracy (operator classifier or linear probe), Inception Score, paired KL.

Class probabilities are renormalised per row to sum to 1: AudioSet taggers (CNN14, YAMNet) emit independent
sigmoids, and IS and KL are defined on distributions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import rel_entr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: Added to candidate probabilities inside the log of paired KL, as in AudioLDM's evaluation (EPS = 1e-6).
KL_EPS = 1e-6


def _normalise(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    total = p.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("a probability row sums to 0")
    return p / total


def classification_accuracy(pred: Sequence[str], target: Sequence[str], labels: Sequence[str] | None = None) -> dict:
    """Share of files whose predicted class equals the intended one; per class and a confusion matrix
    (rows: intended class, columns: predicted class, in ``labels`` order)."""
    pred, target = [str(p) for p in pred], [str(t) for t in target]
    if len(pred) != len(target) or not pred:
        raise ValueError(f"need as many predictions as targets (>0), got {len(pred)} and {len(target)}")
    labels = sorted(set(target) | set(pred)) if labels is None else [str(x) for x in labels]
    matrix = confusion_matrix(target, pred, labels=labels)
    correct = np.array([p == t for p, t in zip(pred, target, strict=True)])
    per_class = {}
    for i, label in enumerate(labels):
        n = int(matrix[i].sum())
        per_class[label] = {"accuracy": float(matrix[i, i] / n) if n else None, "n": n}
    return {"accuracy": float(correct.mean()), "per_class": per_class, "labels": labels,
            "confusion": matrix.tolist(), "n": len(pred)}


def linear_probe(ref_emb: Sequence[np.ndarray], ref_labels: Sequence[str], cand_emb: Sequence[np.ndarray],
                 seed: int = 0) -> list[str]:
    """Predicted class of each candidate file from a logistic regression fitted on labelled reference frames.

    Trained on frames (every frame carries its file's label, weighted 1/frames so each file counts once);
    a candidate file's class is the argmax of its frames' mean predicted probabilities (soft vote), which uses
    every frame and needs no tie-breaking. Features are standardised on the reference.
    """
    if len(set(ref_labels)) < 2:
        raise ValueError("the linear probe needs reference files of at least two classes")
    frames = [np.atleast_2d(np.asarray(e, dtype=np.float64)) for e in ref_emb]
    x = np.concatenate(frames)
    y = np.concatenate([[str(label)] * len(f) for f, label in zip(frames, ref_labels, strict=True)])
    w = np.concatenate([np.full(len(f), 1.0 / len(f)) for f in frames])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x, y, logisticregression__sample_weight=w * len(frames) / w.sum())
    classes = model.classes_
    return [str(classes[int(np.argmax(model.predict_proba(np.atleast_2d(e)).mean(axis=0)))]) for e in cand_emb]


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over ``splits`` consecutive parts (boundaries i*N//splits, as the
    reference implementation); returns mean and std (ddof=0) over the parts."""
    p = _normalise(probs)
    n = len(p)
    if splits < 1 or n < splits:
        raise ValueError(f"IS with {splits} splits needs at least {splits} samples, got {n}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        scores.append(np.exp(rel_entr(part, marginal).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def paired_kl(p_ref: np.ndarray, p_cand: np.ndarray, eps: float = KL_EPS) -> float:
    """Mean over paired files of KL(p_ref || p_cand + eps) (AudioLDM's evaluation: the candidate side gets
    eps before the log, so a class the candidate rules out costs log(p/eps) instead of infinity)."""
    p, q = _normalise(p_ref), _normalise(p_cand)
    if p.shape != q.shape:
        raise ValueError(f"paired probabilities differ in shape: {p.shape} vs {q.shape}")
    return float(rel_entr(p, q + eps).sum(axis=1).mean())


def distribution_from_window_softmax(probs: np.ndarray) -> np.ndarray:
    """A file's class distribution as stable-audio-metrics' ``passt_kld`` forms it: the softmax of the mean of
    its windows' logits. From per-window softmax outputs ``[n, c]`` that is softmax(mean log p): log p differs
    from the logits by one constant per window, which the softmax removes. float64; p floored at the smallest
    normal float32 so that an underflowed class stays finite."""
    logp = np.log(np.maximum(np.atleast_2d(np.asarray(probs, dtype=np.float64)), np.finfo(np.float32).tiny))
    mean = logp.mean(axis=0)
    out = np.exp(mean - mean.max())
    return out / out.sum()


def kl_stable_audio(p_ref: np.ndarray, p_cand: np.ndarray, eps: float = KL_EPS) -> float:
    """stable-audio-metrics: mean over pairs of ``F.kl_div((p_ref + eps).log(), p_cand, reduction="sum")``,
    i.e. KL(p_candidate || p_reference + eps) (note the direction: the reference gets the eps)."""
    p, q = np.asarray(p_ref, dtype=np.float64), np.asarray(p_cand, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"paired probabilities differ in shape: {p.shape} vs {q.shape}")
    return float(rel_entr(q, p + eps).sum(axis=1).mean())


def kl_audiocraft(ref_segments: Sequence[np.ndarray], cand_segments: Sequence[np.ndarray],
                  eps: float = KL_EPS) -> dict[str, float]:
    """audiocraft's ``KLDivergenceMetric`` over softmax outputs per segment: segments of a pair are paired in
    order (audiocraft asserts equal counts); ``kld`` = ``kld_pq`` = mean of KL(p_ref || p_cand + eps), ``kld_qp``
    = mean of KL(p_cand || p_ref + eps), ``kld_both`` their sum; means over all segment pairs."""
    p = np.concatenate([np.atleast_2d(np.asarray(r, dtype=np.float64)) for r in ref_segments])
    q = np.concatenate([np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in cand_segments])
    if p.shape != q.shape:
        raise ValueError(f"paired segment probabilities differ in shape: {p.shape} vs {q.shape}")
    pq = float(rel_entr(p, q + eps).sum(axis=1).mean())
    qp = float(rel_entr(q, p + eps).sum(axis=1).mean())
    return {"kld": pq, "kld_pq": pq, "kld_qp": qp, "kld_both": pq + qp}
