"""The evaluation dispatcher end to end on small synthetic embeddings: every metric, JSON-safe output,
MetricInputError for inputs a person has to fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soundcheck.evaluation import (
    FileEmbedding,
    MetricInputError,
    evaluate_embeddings,
    metric_versions,
)
from soundcheck.jobspec import METRIC_NAMES, SIGNAL_METRICS, MetricOptions
from soundcheck.metrics import GaussianStats, frechet_distance, kernel_audio_distance, prdc
from soundcheck.signal_evaluation import evaluate_signals

EMBEDDING_METRICS = [m for m in METRIC_NAMES if m not in SIGNAL_METRICS]
DIM = 16


def make_files(rng, n, shift=0.0, classes=("dog", "cat"), probs=True, prefix="f", rate=16000):
    files = []
    for i in range(n):
        label = classes[i % len(classes)]
        centre = shift + 2.0 * classes.index(label)
        frames = (rng.standard_normal((int(rng.integers(1, 8)), DIM)) + centre).astype(np.float32)
        p = rng.dirichlet(np.ones(5), size=len(frames)) if probs else None
        files.append(FileEmbedding(f"{label}/{prefix}{i}.wav", frames, p, label, None, rate, False))
    return files


@pytest.fixture
def sets():
    rng = np.random.default_rng(4)
    return make_files(rng, 60), make_files(rng, 40, shift=0.2, prefix="g")


def small_options(**extra) -> MetricOptions:
    return MetricOptions.model_validate({"bootstrap": 30, "ndb": {"k": 5}, "is": {"splits": 4}, **extra})


def test_all_embedding_metrics_end_to_end_are_json_safe(sets):
    ref, cand = sets
    for i, f in enumerate(cand[:10]):  # ten pairs for kl
        f.name = ref[i].name
    rng = np.random.default_rng(5)
    for f in cand:  # captions with their text embeddings, as the worker gives a CLAP model's (clap_score)
        f.caption, f.text_embedding = f"caption of {f.name}", rng.standard_normal(DIM).astype(np.float32)
    stages = []
    res = evaluate_embeddings(EMBEDDING_METRICS, ref, cand, small_options(), on_stage=stages.append)
    json.dumps(res, allow_nan=False)
    assert stages == EMBEDDING_METRICS and set(res["metrics"]) == set(EMBEDDING_METRICS)
    for name, entry in res["metrics"].items():
        assert entry["n_candidate"] == 40 and "interval" in entry, name
        assert entry["frames_candidate"] == sum(len(f.frames) for f in cand)
    for name in ("fad", "kad", "accuracy"):
        ivl = res["metrics"][name]["interval"]
        method = "basic" if name == "fad" else "bias-shifted percentile"  # fad: chosen by its coverage simulation
        assert ivl["method"] == f"{method} bootstrap over candidate files" and ivl["resamples"] == 30
        assert ivl["low"] <= ivl["high"]
    for part in ("precision", "recall", "density", "coverage"):
        assert res["metrics"]["prdc"][part]["interval"]["level"] == 0.95
    assert res["metrics"]["kl"]["n_pairs"] == 10


def test_values_equal_the_metric_functions_on_pooled_frames(sets):
    ref, cand = sets
    options = small_options(bootstrap=0, prdc={"unit": "frame"})
    res = evaluate_embeddings(["fad", "kad", "prdc"], ref, cand, options)["metrics"]
    r = np.concatenate([f.frames for f in ref]).astype(np.float64)
    c = np.concatenate([f.frames for f in cand]).astype(np.float64)
    expected_fad = frechet_distance(r.mean(0), np.cov(r, rowvar=False), c.mean(0), np.cov(c, rowvar=False))
    assert res["fad"]["value"] == pytest.approx(expected_fad, rel=1e-8)
    assert res["fad"]["interval"] is None
    assert res["kad"]["value"] == pytest.approx(kernel_audio_distance(r, c).value, rel=1e-9)
    assert res["kad"]["scale"] == 100.0 and res["kad"]["bandwidth"] > 0
    assert res["prdc"]["precision"]["value"] == pytest.approx(prdc(r, c, 5)["precision"])


def test_prdc_and_ndb_take_one_sample_per_file_by_default(sets):
    """Frames of one file are correlated; the papers' samples are generated items: the file means."""
    from prdc import compute_prdc

    ref, cand = sets
    res = evaluate_embeddings(["prdc", "ndb"], ref, cand, small_options(bootstrap=0))["metrics"]
    r = np.stack([f.frames.astype(np.float64).mean(axis=0) for f in ref])
    c = np.stack([f.frames.astype(np.float64).mean(axis=0) for f in cand])
    expected = compute_prdc(real_features=r, fake_features=c, nearest_k=5)
    for part in ("precision", "recall", "density", "coverage"):
        assert res["prdc"][part]["value"] == pytest.approx(expected[part], rel=1e-9), part
    assert res["prdc"]["unit"] == res["ndb"]["unit"] == "file"
    assert res["ndb"]["samples_reference"] == len(ref) and res["ndb"]["samples_candidate"] == len(cand)


def test_cached_reference_stats_alone_are_enough_for_the_fad_family(sets):
    ref, cand = sets
    stats = GaussianStats(DIM)
    for f in ref:
        stats.update(f.frames)
    res = evaluate_embeddings(["fad", "fad_per_file", "fad_inf"], [], cand, small_options(), reference_stats=stats,
                              n_reference_files=len(ref))
    full = evaluate_embeddings(["fad"], ref, cand, small_options())
    assert res["metrics"]["fad"]["value"] == pytest.approx(full["metrics"]["fad"]["value"], rel=1e-9)
    assert res["metrics"]["fad"]["n_reference"] == len(ref)
    assert res["metrics"]["fad"]["frames_reference"] == stats.n
    assert len(res["metrics"]["fad_per_file"]["worst"]) == 20
    with pytest.raises(MetricInputError, match="reference embeddings"):
        evaluate_embeddings(["kad"], [], cand, small_options(), reference_stats=stats)


def test_accuracy_uses_operator_predictions_when_present(sets):
    ref, cand = sets
    for f in cand:
        f.predicted = "dog"
    res = evaluate_embeddings(["accuracy"], ref, cand, small_options())["metrics"]["accuracy"]
    assert res["value"] == pytest.approx(0.5) and res["classifier"].startswith("operator")
    assert res["confusion"]["labels"] == ["cat", "dog"]


@pytest.mark.parametrize("metric,mutate,message", [
    ("is", lambda r, c: [setattr(f, "probs", None) for f in c], "class probabilities"),
    ("accuracy", lambda r, c: [setattr(f, "label", None) for f in c], "intended class"),
    ("accuracy", lambda r, c: [setattr(f, "label", "dog") for f in r], "two classes"),
    ("kl", lambda r, c: [setattr(f, "name", "x" + f.name) for f in c], "pairs files by name"),
    ("ndb", lambda r, c: r.__setitem__(slice(None), r[:2]), "lower options.ndb.k"),
    ("mcd", lambda r, c: None, "evaluate_signals"),
    ("nonsense", lambda r, c: None, "unknown metric"),
])
def test_missing_inputs_raise_a_metric_input_error(sets, metric, mutate, message):
    ref, cand = sets
    mutate(ref, cand)
    options = small_options() if metric != "ndb" else MetricOptions()
    with pytest.raises(MetricInputError, match=message):
        evaluate_embeddings([metric], ref, cand, options)


def test_is_needs_as_many_files_as_splits(sets):
    ref, cand = sets
    with pytest.raises(MetricInputError, match="options.is.splits"):
        evaluate_embeddings(["is"], ref, cand[:3], small_options())


def test_kl_pairs_by_name_and_reports_unpaired(sets):
    ref, cand = sets
    for i, f in enumerate(cand[:10]):
        f.name = ref[i].name
    res = evaluate_embeddings(["kl"], ref, cand, small_options())["metrics"]["kl"]
    assert res["n_pairs"] == 10 and res["unpaired_candidate"] == 30 and res["unpaired_reference"] == 50


def test_warnings_for_small_sets_silence_and_sample_rates():
    rng = np.random.default_rng(1)
    ref = make_files(rng, 30, rate=44100)
    cand = make_files(rng, 10, rate=16000)
    for f in cand:
        f.frames = f.frames[:1]  # 10 frames in 16-d: a singular covariance
    for f in cand[:7]:
        f.silent = True
    res = evaluate_embeddings(["fad"], ref, cand, small_options())
    text = " ".join(res["warnings"])
    assert "recommend KAD" in text and "mostly silent (7 of 10" in text and "sample rates differ" in text
    cov = res["diagnostics"]["covariance"]
    assert cov["candidate"]["rank"] < DIM and cov["candidate"]["condition_number"] is None
    assert res["diagnostics"]["candidate"]["files"] == 10


def test_dimension_mismatch_is_an_input_error(sets):
    ref, cand = sets
    cand[0].frames = np.zeros((2, DIM + 1), dtype=np.float32)
    with pytest.raises(MetricInputError, match="dimensions differ"):
        evaluate_embeddings(["fad"], ref, cand, small_options())


def test_signals_end_to_end_are_json_safe_with_length_warnings():
    rng = np.random.default_rng(2)
    pairs = []
    for i in range(6):
        s = rng.standard_normal(8000)
        cand = s + 0.1 * rng.standard_normal(8000)
        if i == 0:
            cand = np.concatenate([cand, np.zeros(200)])  # 2.4% longer: trimmed and reported
        pairs.append((f"f{i}.wav", s, cand, 16000))
    pairs.append(("silent.wav", np.zeros(8000), rng.standard_normal(8000), 16000))
    res = evaluate_signals(sorted(SIGNAL_METRICS), iter(pairs), small_options())
    json.dumps(res, allow_nan=False)
    assert res["metrics"]["snr"]["value"] == pytest.approx(20.0, abs=0.3)
    assert res["metrics"]["snr"]["n_pairs"] == 7 and len(res["metrics"]["snr"]["per_file"]) == 7
    assert res["metrics"]["snr"]["per_file"][-1]["value"] is None
    assert any("differ in length" in w and "f0.wav" in w for w in res["warnings"])
    assert any("silent reference" in w for w in res["warnings"])
    with pytest.raises(MetricInputError):
        evaluate_signals(["snr"], [], small_options())
    with pytest.raises(MetricInputError, match="evaluate_embeddings"):
        evaluate_signals(["fad"], pairs, small_options())


def test_metric_versions_cover_every_metric():
    versions = metric_versions()
    assert set(versions) == set(METRIC_NAMES) and all(isinstance(v, str) for v in versions.values())
