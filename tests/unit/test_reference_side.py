"""ReferenceSide: KAD's and PRDC's reference-alone terms built outside evaluate_embeddings (to be cached) give the
very numbers evaluate_embeddings computes by itself, through bytes too; cached bytes that do not fit the frames
or the options are refused, so a stale entry can only cost a recomputation."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.evaluation import FileEmbedding, ReferenceSide, evaluate_embeddings
from soundcheck.jobspec import MetricOptions

METRICS = ["kad", "prdc"]


def files(seed: int, n: int = 14, dim: int = 6) -> list[FileEmbedding]:
    rng = np.random.default_rng(seed)
    return [FileEmbedding(name=f"{i}.wav", frames=rng.standard_normal((int(rng.integers(2, 6)), dim)).astype(
        np.float32)) for i in range(n)]


@pytest.mark.parametrize("unit", ["file", "frame"])
def test_terms_built_outside_and_through_bytes_give_the_same_numbers(unit: str) -> None:
    ref, cand = files(1), files(2, n=9)
    options = MetricOptions(bootstrap=8, seed=3, prdc={"k": 3, "unit": unit})
    plain = evaluate_embeddings(METRICS, ref, cand, options)
    side = ReferenceSide(METRICS, ref, options)
    stored = {name: side.compute(name) for name in side.options()}
    assert set(stored) == {"kad_reference", f"prdc_reference_{unit}"} and all(stored.values())
    assert evaluate_embeddings(METRICS, ref, cand, options, reference_terms=side.terms)["metrics"] == plain["metrics"]
    again = ReferenceSide(METRICS, ref, options)
    assert all(again.load(name, data) for name, data in stored.items())
    assert evaluate_embeddings(METRICS, ref, cand, options, reference_terms=again.terms)["metrics"] == plain["metrics"]


def test_stored_terms_hold_no_frames() -> None:
    ref = files(1, n=200, dim=32)
    side = ReferenceSide(METRICS, ref, MetricOptions(prdc={"k": 3, "unit": "frame"}))
    frames_bytes = sum(f.frames.nbytes for f in ref)
    for name in side.options():
        assert len(side.compute(name)) < frames_bytes / 10, name


def test_bytes_of_other_frames_or_options_are_refused() -> None:
    options = MetricOptions(prdc={"k": 3})
    side = ReferenceSide(METRICS, files(1), options)
    stored = {name: side.compute(name) for name in side.options()}
    other = ReferenceSide(METRICS, files(5), options)
    assert not any(other.load(name, data) for name, data in stored.items())
    assert other.terms.get("kad_reference") is None
    given = ReferenceSide(METRICS, files(1), MetricOptions(prdc={"k": 3}, kad={"bandwidth": 1.5}))
    assert not given.load("kad_reference", stored["kad_reference"])
    wider = ReferenceSide(METRICS, files(1), MetricOptions(prdc={"k": 4}))
    assert not wider.load("prdc_reference_file", stored["prdc_reference_file"])


def test_a_trusted_side_skips_the_fingerprint_but_not_the_count() -> None:
    """Files from the worker's pack (same dataset and embedding keys as the terms) load without a fingerprint pass
    and give the same numbers; the cheap checks (options, number of frames or samples) still refuse a misfit."""
    ref, cand = files(1), files(2, n=9)
    options = MetricOptions(bootstrap=8, seed=3, prdc={"k": 3})
    plain = evaluate_embeddings(METRICS, ref, cand, options)
    stored = {name: ReferenceSide(METRICS, ref, options).compute(name) for name in ReferenceSide(
        METRICS, ref, options).options()}
    trusted = ReferenceSide(METRICS, ref, options, trusted=True)
    assert all(trusted.load(name, data) for name, data in stored.items())
    assert evaluate_embeddings(METRICS, ref, cand, options, reference_terms=trusted.terms)["metrics"] == \
        plain["metrics"]
    fewer = ReferenceSide(METRICS, ref[:-1], options, trusted=True)
    assert not any(fewer.load(name, data) for name, data in stored.items())
    assert not ReferenceSide(METRICS, ref, MetricOptions(prdc={"k": 4}), trusted=True).load(
        "prdc_reference_file", stored["prdc_reference_file"])


def test_options_name_what_changes_each_term() -> None:
    base = ReferenceSide(METRICS, [], MetricOptions()).options()
    assert ReferenceSide(["fad", "ndb"], [], MetricOptions()).options() == {}
    for changed in ({"kad": {"bandwidth": 2.0}}, {"seed": 9}):
        assert ReferenceSide(METRICS, [], MetricOptions(**changed)).options()["kad_reference"] != base["kad_reference"]
    assert ReferenceSide(METRICS, [], MetricOptions(prdc={"k": 2})).options()["prdc_reference_file"] \
        != base["prdc_reference_file"]
    assert ReferenceSide(METRICS, [], MetricOptions(), kad_max_frames=100).options()["kad_reference"] \
        != base["kad_reference"]


def test_a_reference_too_small_for_a_term_leaves_the_error_to_the_metric() -> None:
    ref, cand = files(1, n=3), files(2, n=9)
    options = MetricOptions(bootstrap=0, prdc={"k": 5})
    side = ReferenceSide(METRICS, ref, options)
    assert side.compute("prdc_reference_file") is None
    out = evaluate_embeddings(METRICS, ref, cand, options, reference_terms=side.terms)
    assert "k=5" in out["metrics"]["prdc"]["error"]


def test_evaluate_hands_back_the_terms_it_computed() -> None:
    ref, cand = files(1), files(2, n=9)
    terms: dict = {}
    evaluate_embeddings(METRICS, ref, cand, MetricOptions(bootstrap=0, prdc={"k": 3}), reference_terms=terms)
    assert {"kad_reference", "prdc_reference_file"} <= set(terms)
