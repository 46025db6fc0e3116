"""POST /v1/comparisons through the real service (own Redis, a real worker, uvicorn): three example-like
candidate sets against the example reference. The values and differences are checked against FAD and KAD
computed here independently (scipy's sqrtm, scipy's pdist) on the embeddings of the full sets."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.spatial.distance as ssd
import soundfile as sf

from soundcheck.client import AsyncClient, Client
from soundcheck.comparespec import ComparisonView
from soundcheck.serve import Service
from tests.conftest import run
from tests.integration.test_end_to_end import embed_directory, textbook_fad


def textbook_kad(ref: np.ndarray, cand: np.ndarray, scale: float = 100.0) -> float:
    """Unbiased MMD^2 with a Gaussian RBF kernel, bandwidth the median reference distance (kadtk's definition),
    written from the formula with scipy's pdist/cdist."""
    h = float(np.median(ssd.pdist(ref)))
    k = lambda d: np.exp(-(d**2) / (2 * h * h))  # noqa: E731
    n, m = len(ref), len(cand)
    krr = k(ssd.squareform(ssd.pdist(ref)))
    kcc = k(ssd.squareform(ssd.pdist(cand)))
    krc = k(ssd.cdist(ref, cand))
    mmd2 = ((krr.sum() - n) / (n * (n - 1)) + (kcc.sum() - m) / (m * (m - 1)) - 2 * krc.mean())
    return scale * float(mmd2)


@pytest.fixture(scope="module")
def noisy_set(example_sets: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third candidate: the reference files with white noise at 10 dB SNR (same names, seeded)."""
    ref_dir, _ = example_sets
    root = tmp_path_factory.mktemp("noisy") / "noisy"
    rng = np.random.default_rng(11)
    for path in sorted(ref_dir.rglob("*.wav")):
        wave, rate = sf.read(path, dtype="float64")
        noise = rng.standard_normal(len(wave)) * np.sqrt(np.mean(wave**2) / 10.0)
        target = root / path.relative_to(ref_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, np.clip(wave + noise, -1, 1), rate, subtype="PCM_16")
    return root


def test_comparison_of_three_sets_matches_independent_fad_and_kad(service: Service, example_sets, noisy_set) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as client:
        ref = client.upload(ref_dir).id
        cands = [client.upload(cand_dir).id, client.upload(noisy_set).id, client.upload(ref_dir / "tones").id]
        submitted = client.submit_comparison(ref, cands[:2], "mel", ["fad", "kad"], {"resamples": 200, "seed": 4},
                                             labels=["candidate", "noisy"])
        assert submitted.status == "queued"
        response = httpx.get(f"{service.url}/v1/comparisons/{submitted.id}")
        assert response.status_code == 200 and ComparisonView.model_validate(response.json()).id == submitted.id
        stages: set[str] = set()
        done = client.wait_comparison(submitted.id, poll_s=0.1, timeout_s=240,
                                      on_progress=lambda v: stages.add(v.progress.stage))
        assert done.status == "finished", done.error
        assert done.progress.done == done.progress.total == 36  # reference (KAD needs its frames) + 2 x 12 files
        result = done.result
        embeddings = {"reference": embed_directory(ref_dir), "candidate": embed_directory(cand_dir),
                      "noisy": embed_directory(noisy_set)}
        expected = {label: {"fad": textbook_fad(embeddings["reference"], embeddings[label]),
                            "kad": textbook_kad(embeddings["reference"], embeddings[label])}
                    for label in ("candidate", "noisy")}
        scores = {c.label: c for c in result.candidates}
        for label, metrics in expected.items():
            assert scores[label].metrics["fad"].value == pytest.approx(metrics["fad"], rel=1e-6)
            assert scores[label].metrics["kad"].value == pytest.approx(metrics["kad"], rel=1e-6)
        (pair,) = result.pairs
        assert (pair.a, pair.b) == ("candidate", "noisy") and pair.paired_by_name  # the same file names
        for metric in ("fad", "kad"):
            d = pair.metrics[metric]
            want = expected["noisy"][metric] - expected["candidate"][metric]
            assert d.difference == pytest.approx(want, rel=1e-6, abs=1e-9)
            assert d.low <= d.high and d.level == 0.95
            assert 0.0 < d.p_value <= 1.0 and d.resamples == 200
            assert d.sentence.startswith("noisy ") and f" {metric.upper()} " in d.sentence
        assert result.cache["reference_stats"] in ("hit", "miss")

        # three candidates, FAD only: the reference statistics now come from the cache (no reference embedding)
        three = client.compare(ref, cands, "mel", ["fad"], {"resamples": 100}, poll_s=0.1, timeout_s=240)
        assert three.status == "finished", three.error
        assert three.result.cache == {"reference_stats": "hit"}
        assert [(p.a, p.b) for p in three.result.pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
        assert not three.result.pairs[1].paired_by_name  # the tones subset has other names
        values = {c.label: c.metrics["fad"].value for c in three.result.candidates}
        assert values["A"] == pytest.approx(expected["candidate"]["fad"], rel=1e-6)
        tones = textbook_fad(embeddings["reference"], embed_directory(ref_dir / "tones"))
        assert values["C"] == pytest.approx(tones, rel=1e-6)
        assert three.result.pairs[1].metrics["fad"].difference == pytest.approx(
            tones - expected["candidate"]["fad"], rel=1e-6)


def test_comparison_requests_are_checked_at_the_door(service: Service, example_sets) -> None:
    with Client(service.url) as client:
        ref = client.upload(example_sets[0]).id
        one = httpx.post(f"{service.url}/v1/comparisons", json={"reference": ref, "candidates": [ref]})
        assert one.status_code == 422
        missing = httpx.post(f"{service.url}/v1/comparisons", json={"reference": ref, "candidates": ["x", "y"]})
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
        bad_metric = httpx.post(f"{service.url}/v1/comparisons",
                                json={"reference": ref, "candidates": [ref, "y"], "metrics": ["ndb"]})
        assert bad_metric.status_code == 422
        assert httpx.get(f"{service.url}/v1/comparisons/nope").status_code == 404


def test_cli_compare_prints_the_pair_table_and_sentences(service: Service, example_sets, noisy_set) -> None:
    ref_dir, cand_dir = example_sets
    cmd = [sys.executable, "-m", "soundcheck.cli", "--url", service.url, "compare", str(ref_dir), str(cand_dir),
           str(noisy_set), "--metrics", "fad", "--resamples", "50", "--no-start"]
    done = run(cmd, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "candidate" in done.stdout and "noisy vs candidate" in done.stdout  # labels: the directory names
    (line,) = [s for s in done.stdout.splitlines() if " FAD " in s and s.startswith("noisy ")]
    assert re.search(r"(has (lower|higher)|do not differ significantly in) FAD", line), line
    as_json = run([*cmd, "--json"], timeout=240)
    view = ComparisonView.model_validate_json(as_json.stdout)
    assert view.status == "finished" and view.result.pairs[0].metrics["fad"].sentence == line.strip()


def test_async_client_compares_like_the_sync_one(service: Service, example_sets, noisy_set) -> None:
    async def go() -> tuple[ComparisonView, ComparisonView]:
        async with AsyncClient(service.url) as client:
            ids = [(await client.upload(d)).id for d in (example_sets[0], example_sets[1], noisy_set)]
            view = await client.compare(ids[0], ids[1:], metrics=["fad"], options={"resamples": 50},
                                        poll_s=0.1, timeout_s=240)
            listed = await client.comparisons()
            assert view.id in [c.id for c in listed]
        with Client(service.url) as sync:
            again = sync.compare(ids[0], ids[1:], metrics=["fad"], options={"resamples": 50}, poll_s=0.1,
                                 timeout_s=240)
        return view, again

    view, again = asyncio.run(go())
    assert view.status == again.status == "finished"
    assert view.result.pairs[0].metrics["fad"] == again.result.pairs[0].metrics["fad"]  # seeded: identical
