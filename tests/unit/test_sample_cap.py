"""PRDC and NDB in frame units keep a seeded subsample of each set above ``options.<metric>.max_frames``: the
numbers are those of the metric on the documented draw (uniform without replacement,
``default_rng([seed, 0 | 1]).choice``, original order), the result names the cut, and cached reference terms
and NDB bins of the cut reference give the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from prdc import compute_prdc

from soundcheck.evaluation import FileEmbedding, ReferenceSide, evaluate_embeddings, ndb_samples
from soundcheck.jobspec import MetricOptions
from soundcheck.metrics.coverage import NdbBins, PrdcTerms
from soundcheck.metrics.subsample import subsample_files, subsample_frames

DIM = 5


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def files(seed: int, n: int, shift: float = 0.0) -> list[FileEmbedding]:
    rng = np.random.default_rng(seed)
    return [FileEmbedding(name=f"{i}.wav", frames=(rng.standard_normal((int(rng.integers(1, 8)), DIM)) + shift)
                          .astype(np.float32)) for i in range(n)]


def documented_draw(frames: np.ndarray, cap: int, seed: int, stream: int) -> np.ndarray:
    """The draw as the docs state it, written out independently of soundcheck.metrics.subsample."""
    if len(frames) <= cap:
        return frames
    return frames[np.sort(np.random.default_rng([seed, stream]).choice(len(frames), cap, replace=False))]


def test_the_files_subsample_is_the_draw_of_the_concatenation_grouped_by_file(rng):
    arrays = [rng.standard_normal((int(k), 3)) for k in rng.integers(0, 6, size=40)]
    stacked = np.concatenate(arrays)
    kept, before = subsample_files(arrays, 30, seed=4)
    assert before == len(stacked) and sum(len(a) for a in kept) == 30
    np.testing.assert_array_equal(np.concatenate(kept), documented_draw(stacked, 30, 4, 1))
    assert all(set(map(bytes, k)) <= set(map(bytes, a)) for k, a in zip(kept, arrays, strict=True))
    assert any(len(k) == 0 < len(a) for k, a in zip(kept, arrays, strict=True))  # some files keep no frame
    assert subsample_files(arrays, len(stacked), seed=4) == (arrays, None)
    ref, before = subsample_frames(stacked, 30, seed=4)
    np.testing.assert_array_equal(ref, documented_draw(stacked, 30, 4, 0))
    assert before == len(stacked)


def test_prdc_terms_accept_files_left_without_frames(rng):
    real = rng.standard_normal((60, DIM))
    arrays = [rng.standard_normal((int(k), DIM)) + 0.3 for k in (3, 0, 4, 0, 2, 5)]
    terms = PrdcTerms(real, arrays, 3)
    point = terms.scores(np.ones((1, len(arrays))))
    expected = compute_prdc(real_features=real, fake_features=np.concatenate(arrays), nearest_k=3)
    for part in ("precision", "recall", "density", "coverage"):
        assert point[part][0] == pytest.approx(expected[part], rel=1e-12), part
    nonempty = [i for i, a in enumerate(arrays) if len(a)]
    packed = PrdcTerms(real, [arrays[i] for i in nonempty], 3)
    weights = np.array([[2.0, 5.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 3.0, 0.0, 1.0, 2.0]])
    got, expected = terms.scores(weights), packed.scores(weights[:, nonempty])  # empty files weigh nothing
    for part in ("precision", "recall", "density", "coverage"):
        np.testing.assert_array_equal(got[part], expected[part])


def test_frame_unit_prdc_above_the_cap_is_prdc_of_the_seeded_subsample():
    ref, cand = files(1, 60), files(2, 50, shift=0.2)
    options = MetricOptions(bootstrap=10, seed=7, prdc={"k": 3, "unit": "frame", "max_frames": 80})
    res = evaluate_embeddings(["prdc"], ref, cand, options)["metrics"]["prdc"]
    r = np.concatenate([f.frames for f in ref]).astype(np.float64)
    c = np.concatenate([f.frames for f in cand]).astype(np.float64)
    assert len(r) > 80 and len(c) > 80
    expected = compute_prdc(real_features=documented_draw(r, 80, 7, 0), fake_features=documented_draw(c, 80, 7, 1),
                            nearest_k=3)
    for part in ("precision", "recall", "density", "coverage"):
        assert res[part]["value"] == pytest.approx(expected[part], rel=1e-9), part
        assert res[part]["interval"]["valid"] == 10
    assert res["subsampled_from"] == {"reference": len(r), "candidate": len(c), "seed": 7, "max_frames": 80,
                                      "draw": "uniform without replacement, original order kept"}
    uncut = evaluate_embeddings(["prdc"], ref, cand, MetricOptions(bootstrap=0, prdc={"k": 3, "unit": "frame",
                                                                                        "max_frames": 0}))
    assert uncut["metrics"]["prdc"]["subsampled_from"] is None
    file_unit = MetricOptions(bootstrap=0, prdc={"k": 3, "max_frames": 10})  # file means are never cut
    assert evaluate_embeddings(["prdc"], ref, cand, file_unit)["metrics"]["prdc"]["subsampled_from"] is None


def test_frame_unit_ndb_above_the_cap_is_ndb_of_the_seeded_subsample():
    ref, cand = files(3, 80), files(4, 60, shift=0.3)
    opts = {"k": 5, "unit": "frame", "max_frames": 120}
    res = evaluate_embeddings(["ndb"], ref, cand, MetricOptions(seed=2, ndb=opts))["metrics"]["ndb"]
    r = np.concatenate([f.frames for f in ref])
    c = np.concatenate([f.frames for f in cand])
    bins = NdbBins.fit(documented_draw(r, 120, 2, 0), k=5, whiten=True, seed=2)
    expected = bins.evaluate(documented_draw(c, 120, 2, 1))
    assert res["ndb"] == expected.ndb and res["jsd"] == pytest.approx(expected.jsd_nats, rel=1e-12)
    assert res["samples_reference"] == res["samples_candidate"] == 120
    assert res["subsampled_from"]["reference"] == len(r) and res["subsampled_from"]["candidate"] == len(c)
    # the worker fits (and caches) bins on ndb_samples: the same cut reference, the same result
    cached = NdbBins.fit(ndb_samples(ref, "frame", 120, 2), k=5, whiten=True, seed=2)
    again = evaluate_embeddings(["ndb"], ref, cand, MetricOptions(seed=2, ndb=opts), ndb_bins=cached)
    assert again["metrics"]["ndb"] == res


def test_cached_prdc_terms_of_a_cut_reference_give_the_same_numbers():
    ref, cand = files(5, 60), files(6, 40, shift=0.1)
    options = MetricOptions(bootstrap=6, seed=1, prdc={"k": 3, "unit": "frame", "max_frames": 70})
    plain = evaluate_embeddings(["prdc"], ref, cand, options)["metrics"]
    side = ReferenceSide(["prdc"], ref, options)
    assert side.options()["prdc_reference_frame"]["max_frames"] == 70  # in the cache key
    stored = side.compute("prdc_reference_frame")
    again = ReferenceSide(["prdc"], ref, options)
    assert again.load("prdc_reference_frame", stored)
    assert evaluate_embeddings(["prdc"], ref, cand, options, reference_terms=again.terms)["metrics"] == plain
    other_cap = ReferenceSide(["prdc"], ref, MetricOptions(bootstrap=6, seed=1, prdc={"k": 3, "unit": "frame",
                                                                                       "max_frames": 90}))
    assert not other_cap.load("prdc_reference_frame", stored)  # radii of another subsample are refused
