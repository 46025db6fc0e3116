"""KL and IS as the peers define them, checked against the peers' formulas written with torch ops (the
computations their scripts run), on random logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soundcheck.evaluation import FileEmbedding, MetricInputError, evaluate_embeddings
from soundcheck.jobspec import MetricOptions
from soundcheck.metrics.class_scores import ClassScoreError, file_distribution, shuffle_order

EPS = 1e-6


def _files(logits: list[np.ndarray], prefix: str = "f") -> list[FileEmbedding]:
    rng = np.random.default_rng(0)
    return [FileEmbedding(name=f"{prefix}{i}.wav", frames=rng.standard_normal((len(x), 4)).astype(np.float32),
                          probs=x.astype(np.float32)) for i, x in enumerate(logits)]


@pytest.fixture
def logits() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(5)
    ref = [rng.normal(0, 3, (1, 20)) for _ in range(12)]
    cand = [r + rng.normal(0, 1.5, r.shape) for r in ref]
    return ref, cand


def _run(ref, cand, metric: str, **opts) -> dict:
    options = MetricOptions.model_validate({"bootstrap": 0, **opts})
    out = evaluate_embeddings([metric], _files(ref), _files(cand), options, class_scores="logits")
    return out["metrics"][metric]


def test_kl_softmax_and_sigmoid_equal_audioldm_eval(logits) -> None:
    ref, cand = logits
    f1 = torch.from_numpy(np.concatenate(cand).astype(np.float32)).double()  # audioldm: features_1 = generated
    f2 = torch.from_numpy(np.concatenate(ref).astype(np.float32)).double()
    kl_softmax = F.kl_div((f1.softmax(dim=1) + EPS).log(), f2.softmax(dim=1), reduction="sum") / len(f1)
    kl_sigmoid = F.kl_div((f1.sigmoid() + EPS).log(), f2.sigmoid(), reduction="sum") / len(f1)
    got = _run(ref, cand, "kl", kl={"activation": "softmax"})
    assert got["value"] == pytest.approx(float(kl_softmax), rel=1e-12)
    got = _run(ref, cand, "kl", kl={"activation": "sigmoid"})
    assert got["value"] == pytest.approx(float(kl_sigmoid), rel=1e-12)


def test_kl_of_mean_logits_candidate_first_equals_stable_audio_metrics() -> None:
    rng = np.random.default_rng(7)
    ref = [rng.normal(0, 2, (3, 10)) for _ in range(6)]  # 3 windows per file
    cand = [rng.normal(0, 2, (2, 10)) for _ in range(6)]
    total = 0.0
    for r, c in zip(ref, cand, strict=True):  # passt_kld: softmax of the mean window logits, kl_div(ref+eps, eval)
        ref_p = F.softmax(torch.from_numpy(r.astype(np.float32)).double().mean(dim=0), dim=0)
        eval_p = F.softmax(torch.from_numpy(c.astype(np.float32)).double().mean(dim=0), dim=0)
        total += float(F.kl_div((ref_p + EPS).log(), eval_p, reduction="sum"))
    got = _run(ref, cand, "kl", kl={"activation": "softmax", "pooling": "mean_logits",
                                    "direction": "candidate_reference"})
    assert got["value"] == pytest.approx(total / len(ref), rel=1e-12)
    assert got["direction"].startswith("KL(p_candidate || p_reference + eps)")


def test_is_softmax_with_randomstate_equals_audioldm_eval(logits) -> None:
    _, cand = logits
    cand = cand + [c * 0.5 for c in cand]  # 24 files, 10 splits
    features = torch.from_numpy(np.concatenate(cand).astype(np.float32))
    features = features[np.random.RandomState(2020).permutation(len(features)), :].double()
    p, log_p = features.softmax(dim=1), features.log_softmax(dim=1)
    n, scores = len(p), []
    for i in range(10):  # calculate_isc
        chunk, log_chunk = p[i * n // 10:(i + 1) * n // 10], log_p[i * n // 10:(i + 1) * n // 10]
        scores.append((chunk * (log_chunk - chunk.mean(dim=0, keepdim=True).log())).sum(dim=1).mean().exp().item())
    got = _run(cand, cand, "is", seed=2020, **{"is": {"activation": "softmax", "shuffle": "randomstate"}})
    assert got["value"] == pytest.approx(float(np.mean(scores)), rel=1e-10)
    assert got["std"] == pytest.approx(float(np.std(scores)), rel=1e-8)


def test_default_is_the_models_probabilities_normalised_per_frame() -> None:
    probs = np.array([[0.2, 0.6], [0.5, 0.5]])
    np.testing.assert_allclose(file_distribution(probs, "probabilities", "model", "mean_probabilities"),
                               [(0.25 + 0.5) / 2, (0.75 + 0.5) / 2])
    assert shuffle_order(5, 1, "generator").tolist() == np.random.default_rng(1).permutation(5).tolist()


def test_softmax_of_probabilities_is_refused_with_what_to_do() -> None:
    with pytest.raises(ClassScoreError, match="gives probabilities"):
        file_distribution(np.full((1, 3), 0.3), "probabilities", "softmax", "mean_probabilities")
    rng = np.random.default_rng(1)
    files = _files([rng.random((1, 5)) for _ in range(3)])
    options = MetricOptions.model_validate({"bootstrap": 0, "kl": {"activation": "softmax"}})
    with pytest.raises(MetricInputError, match="cnn14-16k"):
        evaluate_embeddings(["kl"], files, files, options)
