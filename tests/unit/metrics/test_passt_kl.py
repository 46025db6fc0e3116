"""The published PaSST KLs, through the evaluation dispatcher, against the peers' own torch formulas.

Expected values are computed the way stable-audio-metrics' ``passt_kld`` and audiocraft's
``PasstKLDivergenceMetric`` compute them from logits (torch, float64), independently of our numpy code, which
only sees the per-window softmax outputs a passt model stores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soundcheck.evaluation import FileEmbedding, MetricInputError, evaluate_embeddings
from soundcheck.jobspec import MetricOptions

EPS = 1e-6


def files(logits: list[np.ndarray], prefix: str) -> list[FileEmbedding]:
    out = []
    for i, lg in enumerate(logits):
        probs = torch.softmax(torch.from_numpy(lg).double(), dim=-1).float().numpy()
        out.append(FileEmbedding(f"{i}.wav", np.zeros((len(lg), 4), np.float32), probs, None, None, 32000, False))
    return out


def options(definition: str) -> MetricOptions:
    return MetricOptions.model_validate({"bootstrap": 0, "kl": {"definition": definition}})


@pytest.fixture
def logits():
    rng = np.random.default_rng(7)
    counts = [1, 3, 2, 5]
    ref = [rng.normal(0, 3, (n, 527)) for n in counts]
    cand = [r + rng.normal(0, 2, r.shape) for r in ref]
    return ref, cand


def test_stable_audio_metrics_definition(logits) -> None:
    ref, cand = logits
    total = 0.0
    for r, c in zip(ref, cand, strict=True):
        ref_p = F.softmax(torch.from_numpy(r).mean(dim=0), dim=0)  # collect='mean' on logits, then softmax
        eval_p = F.softmax(torch.from_numpy(c).mean(dim=0), dim=0)
        total += float(F.kl_div((ref_p + EPS).log(), eval_p, reduction="sum", log_target=False))
    expected = total / len(ref)
    res = evaluate_embeddings(["kl"], files(ref, "r"), files(cand, "c"), options("stable-audio-metrics"))
    kl = res["metrics"]["kl"]
    assert kl["definition"] == "stable-audio-metrics" and kl["activation"] == "softmax"
    assert kl["value"] == pytest.approx(expected, rel=1e-5)


def test_audiocraft_definition(logits) -> None:
    ref, cand = logits
    target = F.softmax(torch.from_numpy(np.concatenate(ref)), dim=-1)  # targets: the reference audio
    preds = F.softmax(torch.from_numpy(np.concatenate(cand)), dim=-1)
    pq = F.kl_div((preds + EPS).log(), target, reduction="none").sum(-1).mean().item()
    qp = F.kl_div((target + EPS).log(), preds, reduction="none").sum(-1).mean().item()
    kl = evaluate_embeddings(["kl"], files(ref, "r"), files(cand, "c"), options("audiocraft"))["metrics"]["kl"]
    assert kl["value"] == pytest.approx(pq, rel=1e-5) and kl["kld_qp"] == pytest.approx(qp, rel=1e-5)
    assert kl["kld_both"] == pytest.approx(pq + qp, rel=1e-5) and kl["n_segment_pairs"] == 11


def test_audiocraft_needs_equal_segment_counts(logits) -> None:
    ref, cand = logits
    cand[1] = cand[1][:2]
    with pytest.raises(MetricInputError, match="segment counts"):
        evaluate_embeddings(["kl"], files(ref, "r"), files(cand, "c"), options("audiocraft"))


def test_published_definitions_refuse_sigmoid_outputs(logits) -> None:
    ref, cand = logits
    sig = files(ref, "r")
    for f in sig:
        f.probs = 1 / (1 + np.exp(-f.probs))
    with pytest.raises(MetricInputError, match="softmax per window"):
        evaluate_embeddings(["kl"], sig, files(cand, "c"), options("stable-audio-metrics"))


def test_default_definition_is_unchanged_and_named(logits) -> None:
    ref, cand = logits
    kl = evaluate_embeddings(["kl"], files(ref, "r"), files(cand, "c"), options("soundcheck"))["metrics"]["kl"]
    assert kl["definition"] == "soundcheck" and "KL(p_reference" in kl["direction"]
