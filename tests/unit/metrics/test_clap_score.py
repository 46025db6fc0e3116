"""clap_score's maths, independent of any model: mean over caption-paired files of cos(mean frame, text)."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.evaluation import FileEmbedding, MetricInputError, evaluate_embeddings
from soundcheck.jobspec import METRIC_INFO, MetricOptions


def _files(n: int, seed: int, captioned: int) -> list[FileEmbedding]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frames = rng.standard_normal((1 + i % 3, 16)).astype(np.float32)
        frames /= np.linalg.norm(frames, axis=1, keepdims=True)
        text = rng.standard_normal(16).astype(np.float32) if i < captioned else None
        out.append(FileEmbedding(name=f"{i}.wav", frames=frames, caption=f"caption {i}" if text is not None else None,
                                 text_embedding=text))
    return out


def test_value_is_the_mean_cosine_of_file_means_and_captions() -> None:
    cand = _files(6, seed=1, captioned=4)
    result = evaluate_embeddings(["clap_score"], _files(3, seed=2, captioned=0), cand, MetricOptions(bootstrap=50))
    entry = result["metrics"]["clap_score"]
    expected = []
    for f in cand[:4]:
        a = f.frames.astype(np.float64).mean(axis=0)
        t = f.text_embedding.astype(np.float64)
        expected.append(a @ t / np.linalg.norm(a) / np.linalg.norm(t))
    assert entry["value"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert entry["n_paired"] == 4 and entry["n_unpaired"] == 2
    assert list(entry["per_file"]) == ["0.wav", "1.wav", "2.wav", "3.wav"]
    assert -1.0 <= entry["interval"]["low"] <= entry["interval"]["high"] <= 1.0


def test_no_captions_or_no_text_encoder_is_an_input_error() -> None:
    ref = _files(3, seed=2, captioned=0)
    with pytest.raises(MetricInputError, match="caption"):
        evaluate_embeddings(["clap_score"], ref, _files(3, seed=1, captioned=0), MetricOptions())
    with pytest.raises(MetricInputError, match="tokenizer files"):
        evaluate_embeddings(["clap_score"], ref, _files(3, seed=1, captioned=2), MetricOptions(),
                            text_problem="CLAP text embeddings need the roberta-base tokenizer files")
    plain = [FileEmbedding(name="a.wav", frames=np.ones((1, 16), np.float32), caption="a dog")]
    with pytest.raises(MetricInputError, match="CLAP model"):
        evaluate_embeddings(["clap_score"], ref, plain, MetricOptions())


def test_listed_with_its_definition() -> None:
    info = METRIC_INFO["clap_score"]
    assert info["better"] == "higher" and "cos" in info["definition"] and "caption" in info["needs"]
