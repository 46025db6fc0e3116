"""Captions: captions.csv in an upload or registered directory, or JSON by PUT; they never change the dataset id."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from soundcheck.datastore import DatasetError, parse_captions_csv
from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes
from tests.api.test_datasets import _problem, _zip

FILES = {"a.wav": wav_bytes(tone()), "b.wav": wav_bytes(tone(freq=200)), "c.wav": wav_bytes(tone(freq=300))}


def _captions(api: TestClient, dataset: str) -> dict[str, str | None]:
    return {f["name"]: f.get("caption") for f in api.get(f"/v1/datasets/{dataset}").json()["files"]}


def test_parse_captions_csv_quoted_commas_header_and_bom() -> None:
    text = 'name,caption\na.wav,"a dog, then a cat"\nsub/b.wav,  rain on a roof \n\n'
    assert parse_captions_csv(text) == {"a.wav": "a dog, then a cat", "sub/b.wav": "rain on a roof"}


@pytest.mark.parametrize(("text", "message"), [
    ("a.wav,a dog, then a cat\n", "expected 2 fields"),
    ("a.wav\n", "expected 2 fields"),
    ("a.wav,\n", "empty caption"),
    ("a.wav,one\na.wav,two\n", "has a caption already"),
    ('a.wav,"unterminated\n', "not valid CSV"),
    ("../x.wav,escape\n", "unsafe file name"),
    ("a.wav," + "x" * 2001 + "\n", "longer than 2000"),
])
def test_bad_captions_csv_is_refused_with_the_row(text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_captions_csv(text)


def test_captions_csv_in_a_zip_sets_captions_and_keeps_the_id(api: TestClient) -> None:
    plain = api.post("/v1/datasets", files=[("files", ("x.zip", _zip(FILES)))]).json()
    assert plain["n_captions"] == 0
    archive = _zip({**FILES, "captions.csv": b'name,caption\na.wav,"a dog, barking"\nb.wav,rain\nz.wav,nobody\n'})
    body = api.post("/v1/datasets", files=[("files", ("x.zip", archive))]).json()
    assert body["id"] == plain["id"]  # captions are metadata, not content
    assert body["n_captions"] == 2
    assert any("z.wav" in w for w in body["warnings"])
    assert _captions(api, body["id"]) == {"a.wav": "a dog, barking", "b.wav": "rain", "c.wav": None}


def test_bad_captions_csv_upload_is_a_422_naming_the_row(api: TestClient) -> None:
    files = [("files", ("a.wav", FILES["a.wav"])), ("files", ("captions.csv", b"a.wav,x,y\n"))]
    body = _problem(api.post("/v1/datasets", files=files), 422)
    assert "row 1" in body["detail"] and "quote" in body["detail"]
    body = _problem(api.post("/v1/datasets", files=[("files", ("captions.csv", b"a.wav,\xff\n")),
                                                    ("files", ("a.wav", FILES["a.wav"]))]), 422)
    assert "UTF-8" in body["detail"]


def test_captions_csv_in_a_registered_directory(api: TestClient, api_settings: Settings) -> None:
    root = api_settings.allowed_roots[0] / "captioned"
    root.mkdir(parents=True)
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    (root / "captions.csv").write_text("c.wav,a slow piano\n", encoding="utf-8")
    body = api.post("/v1/datasets/register", json={"path": str(root)}).json()
    assert body["n_captions"] == 1 and "captions.csv" not in body["skipped"]
    assert _captions(api, body["id"])["c.wav"] == "a slow piano"


def test_put_captions_replaces_them_and_keeps_the_id(api: TestClient) -> None:
    created = api.post("/v1/datasets", files=[("files", ("x.zip", _zip(FILES)))]).json()
    url = f"/v1/datasets/{created['id']}/captions"
    response = api.put(url, json={"captions": {"a.wav": "first", "b.wav": "second"}})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == created["id"] and response.json()["n_captions"] == 2
    api.put(url, json={"captions": {"c.wav": " only this one "}})
    assert _captions(api, created["id"]) == {"a.wav": None, "b.wav": None, "c.wav": "only this one"}
    assert "x.wav" in _problem(api.put(url, json={"captions": {"x.wav": "no such file"}}), 422)["detail"]
    _problem(api.put(url, json={"captions": {"a.wav": "  "}}), 422)
    _problem(api.put(url, json={"captions": ["a.wav"]}), 422)
    _problem(api.put(f"/v1/datasets/{'0' * 64}/captions", json={"captions": {}}), 404)


def test_clap_score_is_listed_and_refused_where_it_cannot_run(api: TestClient) -> None:
    listed = {m["name"]: m for m in api.get("/v1/metrics").json()}["clap_score"]
    assert "cos" in listed["definition"] and "options.bootstrap" in listed["options"]
    plain = api.post("/v1/datasets", files=[("files", ("x.zip", _zip(FILES)))]).json()["id"]
    captioned = api.put(f"/v1/datasets/{plain}/captions", json={"captions": {"a.wav": "a dog"}}).json()["id"]
    other = api.post("/v1/datasets", files=[("files", ("b.wav", FILES["b.wav"]))]).json()["id"]

    def job(candidate: str, embedding: str) -> str:
        body = {"reference": other, "candidate": candidate, "embedding": embedding, "metrics": ["clap_score"]}
        return _problem(api.post("/v1/jobs", json=body), 422)["detail"]

    assert "text encoder" in job(captioned, "mel")
    assert "vocab.json" in job(captioned, "clap-laion-audio-fusion")  # no tokenizer files in the model dir
    assert "no captions" in job(other, "clap-laion-audio-fusion")
