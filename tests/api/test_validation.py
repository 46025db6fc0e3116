"""Job requests are checked at the door: finite numbers, bounded work, and everything the two datasets make
knowable. Each rejection is a 422 problem+json that names the field or says what to change, and nothing is
stored or queued."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.jobspec import BOOTSTRAP_MAX, SEED_MAX, MetricOptions
from soundcheck.jobstore import JOB_INDEX
from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes

NON_FINITE = ("1e309", "-1e309", "Infinity", "-Infinity", "NaN")


def _numeric_options() -> list[tuple[str, bool]]:
    """(dotted path under options, is a list of numbers) for every numeric option in the schema, nested too."""
    schema = MetricOptions.model_json_schema(by_alias=True)
    defs = schema["$defs"]

    def numeric(prop: dict[str, Any]) -> tuple[bool, bool]:
        variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
        scalar = any(v.get("type") in ("number", "integer") for v in variants)
        listed = any(v.get("type") == "array" and v.get("items", {}).get("type") in ("number", "integer")
                     for v in variants)
        return scalar, listed

    found: list[tuple[str, bool]] = []

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, prop in properties.items():
            ref = prop.get("$ref") or next((v["$ref"] for v in prop.get("allOf", []) if "$ref" in v), None)
            if ref is not None:
                walk(defs[ref.rsplit("/", 1)[-1]]["properties"], f"{prefix}{name}.")
                continue
            scalar, listed = numeric(prop)
            if scalar or listed:
                found.append((f"{prefix}{name}", listed))

    walk(schema["properties"], "")
    return found


NUMERIC = _numeric_options()


def _nested(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def _raw_job(path: str, literal: str, listed: bool) -> str:
    """A JSON body text whose option ``path`` holds the literal (JSON itself has no NaN or Infinity)."""
    marker = "__VALUE__"
    body = {"reference": "a" * 64, "candidate": "b" * 64, "options": _nested(path, [2, marker] if listed else marker)}
    return json.dumps(body).replace(f'"{marker}"', literal)


def _problem(response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def _upload(api: TestClient, names: list[str]) -> str:
    files = [("files", (name, wav_bytes(tone(0.5, freq=200.0 + 37 * i)))) for i, name in enumerate(names)]
    response = api.post("/v1/datasets", files=files)
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def _post(api: TestClient, ref: str, cand: str, metrics: list[str], **options: Any):
    return api.post("/v1/jobs", json={"reference": ref, "candidate": cand, "metrics": metrics, "options": options})


def test_schema_walk_finds_the_float_and_list_options() -> None:
    paths = {p for p, _ in NUMERIC}
    assert {"confidence", "kad.scale", "kad.bandwidth", "ndb.alpha", "ndb.z_threshold", "bootstrap", "seed",
            "fad_inf.sizes", "is.splits"} <= paths


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize(("path", "listed"), NUMERIC, ids=[p for p, _ in NUMERIC])
def test_non_finite_number_in_any_option_is_422_naming_the_field(api: TestClient, redis_db: Redis, path: str,
                                                                  listed: bool, literal: str) -> None:
    response = api.post("/v1/jobs", content=_raw_job(path, literal, listed),
                        headers={"content-type": "application/json"})
    body = _problem(response)
    field = f"options.{path}" + (".1" if listed else "")
    assert field in body["detail"] and body["errors"][0]["field"] == field
    assert redis_db.zcard(JOB_INDEX) == 0


def test_finite_job_options_still_pass(api: TestClient) -> None:
    ds = _upload(api, ["a.wav", "b.wav"])
    response = _post(api, ds, ds, ["kad"], kad={"scale": 1e6, "bandwidth": 1e-300}, confidence=0.5)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(("seed", "ok"), [(-1, False), (SEED_MAX + 1, False), (2**63, False), (0, True),
                                          (SEED_MAX, True)])
def test_seed_must_be_in_the_range_numpy_and_scikit_learn_accept(api: TestClient, seed: int, ok: bool) -> None:
    ds = _upload(api, ["a.wav", "b.wav"])
    response = _post(api, ds, ds, ["fad"], seed=seed)
    if ok:
        assert response.status_code == 202, response.text
    else:
        assert "options.seed" in _problem(response)["detail"]


def test_bootstrap_is_bounded(api: TestClient) -> None:
    ds = _upload(api, ["a.wav", "b.wav"])
    body = _problem(_post(api, ds, ds, ["fad"], bootstrap=10_000))
    assert "options.bootstrap" in body["detail"] and str(BOOTSTRAP_MAX) in body["detail"]
    assert _post(api, ds, ds, ["fad"], bootstrap=BOOTSTRAP_MAX).status_code == 202


def _bounded_integer_options() -> list[tuple[str, int, bool]]:
    """(path, first value over the limit, is a list) for every numeric option with a maximum (from /v1/metrics
    generation, i.e. the schema): the limits the catalogue states are the limits the api enforces."""
    from app.api.routes.metrics import option_catalogue

    out = []
    for path, info in option_catalogue().items():
        if info["type"] == "integer" and "max" in info:
            out.append((path.removeprefix("options."), info["max"] + 1, False))
        if info["type"] == "array" and "max" in info.get("items", {}):
            out.append((path.removeprefix("options."), info["items"]["max"] + 1, True))
    return out


@pytest.mark.parametrize(("path", "over", "listed"), _bounded_integer_options(),
                         ids=[p for p, _, _ in _bounded_integer_options()])
def test_every_stated_upper_limit_is_enforced(api: TestClient, path: str, over: int, listed: bool) -> None:
    value: Any = [2, over] if listed else over
    body = _problem(api.post("/v1/jobs", json={"reference": "a" * 64, "candidate": "b" * 64,
                                               "options": _nested(path, value)}))
    assert f"options.{path}" in body["detail"] and "less than or equal" in body["detail"]


def test_too_many_or_equal_fad_inf_sizes_are_422(api: TestClient) -> None:
    body = _problem(_post(api, "a" * 64, "b" * 64, ["fad_inf"], fad_inf={"sizes": list(range(2, 40))}))
    assert "options.fad_inf.sizes" in body["detail"]
    body = _problem(_post(api, "a" * 64, "b" * 64, ["fad_inf"], fad_inf={"sizes": [50, 50]}))
    assert "two different subset sizes" in body["detail"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", ".hidden", "x.labels", "", "a" * 101])
def test_classifier_name_must_be_a_safe_identifier(api: TestClient, name: str) -> None:
    body = _problem(_post(api, "a" * 64, "b" * 64, ["accuracy"], accuracy={"classifier": name}))
    assert "options.accuracy.classifier" in body["detail"]


def test_classifier_must_be_installed(api: TestClient, api_settings: Settings, redis_db: Redis) -> None:
    ref = _upload(api, ["x/1.wav", "y/2.wav"])
    cand = _upload(api, ["x/3.wav", "y/4.wav"])
    detail = _problem(_post(api, ref, cand, ["accuracy"], accuracy={"classifier": "birds"}))["detail"]
    assert "classifier 'birds' is not installed" in detail and "birds.pt" in detail and "none" in detail
    folder = api_settings.models_dir / "classifiers"
    folder.mkdir(parents=True)
    (folder / "birds.pt").write_bytes(b"not loaded by the api")
    detail = _problem(_post(api, ref, cand, ["accuracy"], accuracy={"classifier": "birds"}))["detail"]
    assert "lacks birds.labels.json (" in detail
    (folder / "birds.labels.json").write_text("{not json")
    detail = _problem(_post(api, ref, cand, ["accuracy"], accuracy={"classifier": "birds"}))["detail"]
    assert "birds.labels.json is not readable JSON" in detail and "operator" in detail
    (folder / "birds.labels.json").write_text(json.dumps({"sample_rate": 16000, "labels": ["x", "x"]}))
    assert "duplicate labels" in _problem(_post(api, ref, cand, ["accuracy"], accuracy={"classifier": "birds"}))[
        "detail"]
    (folder / "birds.labels.json").write_text(json.dumps({"sample_rate": 16000, "labels": ["x", "y"]}))
    assert _post(api, ref, cand, ["accuracy"], accuracy={"classifier": "birds"}).status_code == 202
    assert redis_db.zcard(JOB_INDEX) == 1


def test_ndb_k_against_reference_files(api: TestClient, redis_db: Redis) -> None:
    ref = _upload(api, ["1.wav", "2.wav", "3.wav", "4.wav", "5.wav"])
    detail = _problem(_post(api, ref, ref, ["fad", "ndb"], ndb={"k": 3}))["detail"]
    assert detail == ("ndb.k=3 needs at least 6 reference files (two per bin, one sample per file), the reference "
                      "has 5; lower options.ndb.k (at most 2) or set options.ndb.unit='frame'")
    assert redis_db.zcard(JOB_INDEX) == 0
    assert _post(api, ref, ref, ["ndb"], ndb={"k": 2}).status_code == 202
    # frames are known only after embedding: a frame-unit job is left to the worker
    assert _post(api, ref, ref, ["ndb"], ndb={"k": 3, "unit": "frame"}).status_code == 202


def test_prdc_k_against_both_sets(api: TestClient) -> None:
    ref = _upload(api, ["1.wav", "2.wav", "3.wav", "4.wav"])
    cand = _upload(api, ["5.wav", "6.wav", "7.wav"])
    detail = _problem(_post(api, ref, cand, ["prdc"]))["detail"]
    assert "prdc.k=5 needs more than 5 files in each set" in detail
    assert "the reference has 4 and the candidate has 3" in detail and "(at most 2)" in detail
    detail = _problem(_post(api, ref, cand, ["prdc"], prdc={"k": 3}))["detail"]
    assert "the candidate has 3" in detail and "reference has" not in detail
    assert _post(api, ref, cand, ["prdc"], prdc={"k": 2}).status_code == 202


def test_inception_score_splits_against_candidate_files(api: TestClient) -> None:
    ds = _upload(api, ["1.wav", "2.wav", "3.wav"])
    detail = _problem(api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "embedding": "yamnet",
                                                 "metrics": ["is"]}))["detail"]
    assert detail == ("is with 10 splits needs at least 10 candidate files, the candidate has 3; lower "
                      "options.is.splits (at most 3)")
    ok = api.post("/v1/jobs", json={"reference": ds, "candidate": ds, "embedding": "yamnet", "metrics": ["is"],
                                    "options": {"is": {"splits": 3}}})
    assert ok.status_code == 202, ok.text


@pytest.mark.parametrize("metric", ["kl", "snr", "si_sdr", "lsd", "mcd", "mrstft"])
def test_paired_metrics_need_files_with_the_same_names(api: TestClient, metric: str) -> None:
    ref = _upload(api, ["a.wav", "b.wav"])
    cand = _upload(api, ["c.wav", "d.wav"])
    embedding = "yamnet" if metric == "kl" else "mel"
    body = {"reference": ref, "candidate": cand, "embedding": embedding, "metrics": [metric]}
    detail = _problem(api.post("/v1/jobs", json=body))["detail"]
    assert metric in detail and "no candidate file has the name of a reference file" in detail
    body["candidate"] = _upload(api, ["a.wav", "x.wav"])
    assert api.post("/v1/jobs", json=body).status_code == 202


def test_accuracy_needs_candidate_labels_and_two_reference_classes(api: TestClient) -> None:
    two_classes = _upload(api, ["dog/1.wav", "cat/2.wav"])
    one_class = _upload(api, ["dog/3.wav", "dog/4.wav"])
    unlabelled = _upload(api, ["5.wav", "6.wav"])
    detail = _problem(_post(api, two_classes, unlabelled, ["accuracy"]))["detail"]
    assert "accuracy needs the intended class of each candidate file" in detail
    detail = _problem(_post(api, one_class, two_classes, ["accuracy"]))["detail"]
    assert "at least two classes, the reference has 1 (dog)" in detail and "options.accuracy.classifier" in detail
    assert _post(api, two_classes, one_class, ["accuracy"]).status_code == 202


def test_every_problem_is_named_at_once(api: TestClient) -> None:
    ref = _upload(api, ["a.wav", "b.wav"])
    cand = _upload(api, ["c.wav"])
    detail = _problem(_post(api, ref, cand, ["fad", "ndb", "prdc", "accuracy", "snr"]))["detail"]
    for part in ("ndb.k=100", "prdc.k=5", "accuracy needs", "snr pair files by name"):
        assert part in detail


def test_metrics_catalogue_states_each_metrics_options_and_limits(api: TestClient) -> None:
    body = {m["name"]: m for m in api.get("/v1/metrics").json()}
    bootstrap = body["fad"]["options"]["options.bootstrap"]
    assert (bootstrap["default"], bootstrap["min"], bootstrap["max"]) == (100, 0, BOOTSTRAP_MAX)
    assert bootstrap["description"]
    assert body["ndb"]["options"]["options.ndb.k"]["max"] == 1000
    assert "options.bootstrap" not in body["ndb"]["options"] and "options.ndb.k" not in body["fad"]["options"]
    assert body["fad_inf"]["options"]["options.fad_inf.sizes"]["max_items"] == 20
    assert body["is"]["options"]["options.is.splits"]["default"] == 10
    assert body["kad"]["options"]["options.kad.scale"]["gt"] == 0
    # the OpenAPI schema carries the same limits
    schema = api.get("/openapi.json").json()["components"]["schemas"]
    assert schema["MetricOptions"]["properties"]["bootstrap"]["maximum"] == BOOTSTRAP_MAX
    assert schema["MetricOptions"]["properties"]["seed"]["minimum"] == 0
