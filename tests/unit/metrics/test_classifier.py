"""Accuracy, linear probe, Inception Score and paired KL against hand-computed cases and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.metrics import classification_accuracy, inception_score, linear_probe, paired_kl
from soundcheck.metrics.classifier import KL_EPS


def test_inception_score_of_balanced_one_hot_predictions_is_the_number_of_classes():
    labels = np.arange(1000) % 10  # every split of 100 holds 10 of each class
    mean, std = inception_score(np.eye(10)[labels], splits=10)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_identical_predictions_is_one(rng):
    p = rng.dirichlet(np.ones(7))
    mean, std = inception_score(np.tile(p, (50, 1)), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_equals_direct_formula(rng):
    p = rng.dirichlet(np.ones(5) * 0.3, size=90)
    parts = [p[i * 90 // 3:(i + 1) * 90 // 3] for i in range(3)]
    scores = []
    for part in parts:
        marginal = part.mean(axis=0)
        kl = [sum(pi * np.log(pi / mi) for pi, mi in zip(row, marginal, strict=True) if pi > 0) for row in part]
        scores.append(np.exp(np.mean(kl)))
    mean, std = inception_score(p, splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-8)


def test_inception_score_renormalises_sigmoid_rows_and_needs_enough_samples():
    sig = np.array([[0.9, 0.9], [0.2, 0.6]])
    assert inception_score(sig, 1) == inception_score(sig / sig.sum(axis=1, keepdims=True), 1)
    with pytest.raises(ValueError, match="at least 10"):
        inception_score(np.eye(3), splits=10)


def test_paired_kl_hand_case_and_direct_formula(rng):
    p, q = np.array([[0.5, 0.5, 0.0]]), np.array([[0.25, 0.75, 0.0]])
    expected = 0.5 * np.log(0.5 / (0.25 + KL_EPS)) + 0.5 * np.log(0.5 / (0.75 + KL_EPS))
    assert paired_kl(p, q) == pytest.approx(expected, rel=1e-12)
    a, b = rng.dirichlet(np.ones(6), size=20), rng.dirichlet(np.ones(6), size=20)
    direct = np.mean([np.sum(r * np.log(r / (c + KL_EPS))) for r, c in zip(a, b, strict=True)])
    assert paired_kl(a, b) == pytest.approx(direct, rel=1e-10)
    assert paired_kl(a, a) == pytest.approx(0.0, abs=1e-5)  # only the eps term remains
    # a class the candidate rules out costs log(p / eps), not infinity
    assert np.isfinite(paired_kl(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])))


def test_accuracy_per_class_and_confusion_matrix_by_hand():
    target = ["dog", "dog", "dog", "cat", "cat", "bird"]
    pred = ["dog", "cat", "dog", "cat", "cat", "dog"]
    res = classification_accuracy(pred, target)
    assert res["accuracy"] == pytest.approx(4 / 6)
    assert res["labels"] == ["bird", "cat", "dog"]
    assert res["confusion"] == [[0, 0, 1], [0, 2, 0], [0, 1, 2]]
    assert res["per_class"]["dog"] == {"accuracy": pytest.approx(2 / 3), "n": 3}
    assert res["per_class"]["bird"]["accuracy"] == 0.0
    with pytest.raises(ValueError):
        classification_accuracy(["a"], ["a", "b"])


def test_linear_probe_separates_clusters_per_file(rng):
    centres = {"a": np.zeros(8), "b": np.full(8, 3.0), "c": np.r_[np.full(4, 3.0), np.zeros(4)]}
    ref = [(rng.standard_normal((int(rng.integers(1, 6)), 8)) * 0.5 + centres[c], c) for c in "abc" * 10]
    cand_labels = list("abcabc")
    cand = [rng.standard_normal((3, 8)) * 0.5 + centres[c] for c in cand_labels]
    pred = linear_probe([e for e, _ in ref], [c for _, c in ref], cand, seed=0)
    assert pred == cand_labels
    assert linear_probe([e for e, _ in ref], [c for _, c in ref], cand, seed=0) == pred
    with pytest.raises(ValueError, match="two classes"):
        linear_probe([ref[0][0]], ["a"], cand)
