"""Folding a streamed set: what is kept per metric, and that the kept form gives the numbers of all frames."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.evaluation import FileEmbedding, evaluate_embeddings
from soundcheck.jobspec import MetricOptions
from soundcheck.metrics import GaussianStats
from soundcheck.streaming import KEEP_FRAMES, KEEP_MEANS, KEEP_STATS, SetFold, reference_keep


def files(n: int, dim: int = 6, seed: int = 0, shift: float = 0.0) -> list[FileEmbedding]:
    rng = np.random.default_rng(seed)
    return [FileEmbedding(name=f"{i}.wav", frames=(rng.standard_normal((int(rng.integers(1, 9)), dim)) * 2.0
                                                   + 5.0 + shift).astype(np.float32),
                          label=f"c{i % 2}", sample_rate=16000, silent=i == 3) for i in range(n)]


def chunked(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@pytest.mark.parametrize(("metrics", "options", "keep"), [
    (["fad"], {}, KEEP_STATS),
    (["fad", "fad_inf", "fad_per_file", "is"], {}, KEEP_STATS),
    (["accuracy"], {"accuracy": {"classifier": "op"}}, KEEP_STATS),
    (["fad", "ndb", "prdc"], {}, KEEP_MEANS),
    (["ndb"], {"ndb": {"unit": "frame"}}, KEEP_FRAMES),
    (["prdc", "ndb"], {"prdc": {"unit": "frame"}}, KEEP_FRAMES),
    (["kad"], {}, KEEP_FRAMES),
    (["kl"], {}, KEEP_FRAMES),
    (["accuracy"], {}, KEEP_FRAMES),
])
def test_what_is_kept_of_the_reference(metrics: list[str], options: dict, keep: str) -> None:
    assert reference_keep(metrics, MetricOptions(**options)) == keep


def test_folded_statistics_are_those_of_all_frames() -> None:
    ref = files(40)
    fold = SetFold(KEEP_STATS, GaussianStats(6)).consume(chunked(ref, 7))
    assert fold.files == [] and fold.n_files == 40
    frames = np.concatenate([f.frames for f in ref]).astype(np.float64)
    # independent: numpy's mean and ddof=1 covariance of the stacked frames
    np.testing.assert_allclose(fold.stats.mean, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fold.stats.cov, np.cov(frames, rowvar=False), rtol=1e-12, atol=1e-12)
    # and bitwise the per-file update of the in-memory path, whatever the chunk size
    whole = GaussianStats(6)
    for f in ref:
        whole.update(f.frames)
    again = SetFold(KEEP_STATS, GaussianStats(6)).consume(chunked(ref, 1)).stats
    for stats in (fold.stats, again):
        assert stats.n == whole.n
        np.testing.assert_array_equal(stats.mean_, whole.mean_)
        np.testing.assert_array_equal(stats.m2, whole.m2)


def test_file_means_give_the_per_file_metrics_of_all_frames() -> None:
    ref, cand = files(30, seed=1), files(12, seed=2, shift=0.3)
    options = MetricOptions(bootstrap=5, ndb={"k": 3}, prdc={"k": 2})
    stats = SetFold(KEEP_STATS, GaussianStats(6)).consume([ref]).stats
    means = SetFold(KEEP_MEANS).consume(chunked(ref, 4)).files
    assert [f.n_frames for f in means] == [len(f.frames) for f in ref]
    metrics = ["fad", "ndb", "prdc"]
    streamed = evaluate_embeddings(metrics, means, cand, options, reference_stats=stats)
    in_memory = evaluate_embeddings(metrics, ref, cand, options)
    assert streamed["metrics"] == in_memory["metrics"]
    assert streamed["diagnostics"] == in_memory["diagnostics"]
    assert streamed["warnings"] == in_memory["warnings"]


def test_metrics_that_read_frames_refuse_file_means() -> None:
    means = SetFold(KEEP_MEANS).consume([files(20)]).files
    out = evaluate_embeddings(["kad", "prdc"], means, files(10, seed=4), MetricOptions(bootstrap=0, prdc={"k": 2}))
    assert "only file means were kept" in out["metrics"]["kad"]["error"]
    assert "error" not in out["metrics"]["prdc"]
