"""POST /v1/references/import refuses what is not reference statistics with a problem+json 422 that says what is
wrong (the api in-process on our own Redis; no worker needed), and lists / exports what it took."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

PROVENANCE = json.dumps({"embedding": "vggish", "source": "fadtk fma_pop.npz", "declared_by": "me"})


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _import(api: TestClient, data: bytes, provenance: str = PROVENANCE):
    return api.post("/v1/references/import", files={"file": ("stats.npz", data, "application/octet-stream")},
                    data={"provenance": provenance})


def _good(dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((50, dim))
    return x.mean(axis=0), np.cov(x, rowvar=False)


BAD = {
    "wrong keys": (_npz(mean=_good()[0], sigma=_good()[1]), "needs the keys mu+cov (fadtk) or mu_ref+sigma_ref"),
    "non-square cov": (_npz(mu=np.zeros(8), cov=np.zeros((8, 7))), "must be a square covariance matrix"),
    "dimension mismatch": (_npz(mu=np.zeros(9), cov=np.eye(8)), "cov is 8 x 8 but mu has 9 dimensions"),
    "non-finite": (_npz(mu=np.r_[np.nan, np.zeros(7)], cov=np.eye(8)), "must be finite"),
    "asymmetric": (_npz(mu=np.zeros(2), cov=np.array([[1.0, 0.5], [0.0, 1.0]])), "not symmetric"),
    "2-d mean": (_npz(mu=np.zeros((1, 8)), cov=np.eye(8)), "1-d mean vector"),
    "object arrays": (_npz(mu=np.array([{"a": 1}], dtype=object), cov=np.eye(1)), "numeric arrays"),
    "not npz": (b"just some bytes", "not an npz archive"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_are_422_problems_that_say_why(api: TestClient, case: str) -> None:
    data, why = BAD[case]
    answer = _import(api, data)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert why in answer.json()["detail"]


def test_provenance_must_name_the_embedding(api: TestClient) -> None:
    mu, cov = _good()
    for provenance in ("{}", "not json", json.dumps({"embedding": "x", "unknown": 1})):
        answer = _import(api, _npz(mu=mu, cov=cov), provenance)
        assert answer.status_code == 422 and answer.json()["detail"].startswith("provenance:"), answer.text


def test_both_layouts_import_list_and_export(api: TestClient) -> None:
    mu, cov = _good(seed=1)
    fadtk = _import(api, _npz(mu=mu, cov=cov))
    sam = _import(api, _npz(mu_ref=mu, sigma_ref=cov), json.dumps({"embedding": "openl3", "sample_rate": 48000}))
    assert fadtk.status_code == sam.status_code == 201
    assert fadtk.json()["layout"] == "fadtk" and sam.json()["layout"] == "stable-audio-metrics"
    assert fadtk.json()["declared"] == {"embedding": "vggish", "model": None, "sample_rate": None,
                                        "source": "fadtk fma_pop.npz", "declared_by": "me", "n_frames": None,
                                        "n_files": None, "note": None}
    assert fadtk.json()["verified"] is False and fadtk.headers["location"] == f"/v1/references/{fadtk.json()['id']}"
    listed = {r["id"] for r in api.get("/v1/references").json()}
    assert {fadtk.json()["id"], sam.json()["id"]} <= listed
    listed_sam = next(r for r in api.get("/v1/references").json() if r["id"] == sam.json()["id"])
    assert listed_sam["declared"]["sample_rate"] == 48000
    exported = api.get(f"/v1/references/{sam.json()['id']}/export", params={"layout": "fadtk"})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(exported.content)) as z:
        assert np.array_equal(z["mu"], mu) and np.array_equal(z["cov"], cov)
    again = _import(api, _npz(mu=mu, cov=cov))  # the same statistics, the same word: the same reference
    assert again.json()["id"] == fadtk.json()["id"]


def test_unknown_reference_is_404(api: TestClient) -> None:
    assert api.get(f"/v1/references/{'a' * 64}/export").status_code == 404
    assert api.get("/v1/references/not-an-id/export").status_code == 422


def test_fadtk_packaged_statistics_one_pair_per_model(api: TestClient) -> None:
    """fadtk packages its references (fadtk/stats/*.npz, e.g. fma_pop.npz) as <model>.mu / <model>.cov, one pair
    per model (fadtk's load_stats reads f'{model}.mu'): the declared embedding picks the pair."""
    (mu_a, cov_a), (mu_b, cov_b) = _good(dim=6, seed=2), _good(dim=4, seed=3)
    data = _npz(**{"clap-laion-audio.mu": mu_a, "clap-laion-audio.cov": cov_a, "vggish.mu": mu_b,
                   "vggish.cov": cov_b})
    picked = _import(api, data, json.dumps({"embedding": "clap-laion-audio", "source": "fadtk fma_pop.npz"}))
    assert picked.status_code == 201 and picked.json()["dim"] == 6 and picked.json()["layout"] == "fadtk"
    exported = api.get(f"/v1/references/{picked.json()['id']}/export")
    with np.load(io.BytesIO(exported.content)) as z:
        assert np.array_equal(z["mu"], mu_a) and np.array_equal(z["cov"], cov_a)
    unclear = _import(api, data, json.dumps({"embedding": "openl3"}))
    assert unclear.status_code == 422 and "several models" in unclear.json()["detail"]
    single = _import(api, _npz(**{"vggish.mu": mu_b, "vggish.cov": cov_b}), json.dumps({"embedding": "x"}))
    assert single.status_code == 201 and single.json()["dim"] == 4
