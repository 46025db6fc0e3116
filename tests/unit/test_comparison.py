"""The comparison dispatcher (soundcheck.comparison) and its request model: values are those of an evaluation
job of each candidate alone, pairs are every i < j, requests that cannot be compared are refused."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from soundcheck.comparespec import ComparisonCreate, ComparisonOptions, ComparisonResult
from soundcheck.comparison import compare_embeddings
from soundcheck.evaluation import FileEmbedding, MetricInputError, evaluate_embeddings
from soundcheck.jobspec import MetricOptions


def _set(rng: np.random.Generator, n: int, mean: float, prefix: str = "f") -> list[FileEmbedding]:
    return [FileEmbedding(f"{prefix}{i}.wav", (mean + rng.standard_normal((3, 4))).astype(np.float32))
            for i in range(n)]


def test_values_equal_single_jobs_and_every_pair_is_compared() -> None:
    rng = np.random.default_rng(0)
    ref = _set(rng, 30, 0.0, "r")
    cands = [_set(rng, 20, 0.5), _set(rng, 20, 1.0), _set(rng, 15, 0.5, "g")]
    out = compare_embeddings(["fad", "kad"], ["A", "B", "C"], cands, ComparisonOptions(resamples=50), reference=ref)
    result = ComparisonResult.model_validate({**out, "reference": {}, "embedding": "test"})
    for cand, scores in zip(cands, result.candidates, strict=True):
        job = evaluate_embeddings(["fad", "kad"], ref, cand, MetricOptions(bootstrap=0))["metrics"]
        assert scores.metrics["fad"].value == pytest.approx(job["fad"]["value"], rel=1e-12)
        assert scores.metrics["kad"].value == pytest.approx(job["kad"]["value"], rel=1e-12)
    assert [(p.a, p.b, p.paired_by_name) for p in result.pairs] == [("A", "B", True), ("A", "C", False),
                                                                      ("B", "C", False)]
    ab = result.pairs[0].metrics["fad"]
    assert ab.difference == pytest.approx(ab.b_value - ab.a_value)
    assert ab.permutations == 50 and "permutation" in ab.p_value_method
    assert ab.p_value < 0.05 and ab.sentence.startswith("B has higher FAD than A: +")  # mean 1.0 is farther


def test_inputs_that_cannot_be_compared_are_refused() -> None:
    rng = np.random.default_rng(1)
    ref, a = _set(rng, 10, 0.0), _set(rng, 10, 0.3)
    with pytest.raises(MetricInputError, match="at least two"):
        compare_embeddings(["fad"], ["A"], [a], ComparisonOptions(), reference=ref)
    with pytest.raises(MetricInputError, match="KAD needs the reference embeddings"):
        from soundcheck.metrics.frechet import GaussianStats
        stats = GaussianStats(4)
        stats.update(np.concatenate([f.frames for f in ref]))
        compare_embeddings(["kad"], ["A", "B"], [a, a], ComparisonOptions(), reference_stats=stats)


def test_request_model_checks_candidates_and_labels() -> None:
    spec = ComparisonCreate(reference="r", candidates=["a", "b", "c"])
    assert spec.candidate_labels() == ["A", "B", "C"] and spec.options.resamples == 1000
    for bad in ({"candidates": ["a"]}, {"candidates": ["a", "a"]}, {"candidates": ["a", "b"], "labels": ["x"]},
                {"candidates": ["a", "b"], "labels": ["x", "x"]}, {"candidates": ["a", "b"], "metrics": ["ndb"]},
                {"candidates": ["a", "b"], "options": {"resamples": 5}}):
        with pytest.raises(ValidationError):
            ComparisonCreate(reference="r", **bad)
