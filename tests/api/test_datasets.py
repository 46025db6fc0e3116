"""Uploads: good files become content-addressed datasets; bad input gets an actionable 4xx problem."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_upload_gives_content_id_and_summary(api: TestClient) -> None:
    files = [("files", ("a.wav", wav_bytes(tone(1.0)))), ("files", ("b.wav", wav_bytes(tone(2.0, freq=220))))]
    first = api.post("/v1/datasets", files=files)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["n_files"] == 2
    assert abs(body["total_duration_s"] - 3.0) < 1e-9
    assert body["sample_rates"] == [16000]
    assert first.headers["location"] == f"/v1/datasets/{body['id']}"
    again = api.post("/v1/datasets", files=list(reversed(files)))
    assert again.json()["id"] == body["id"]
    shown = api.get(f"/v1/datasets/{body['id']}").json()
    assert [f["name"] for f in shown["files"]] == ["a.wav", "b.wav"]


def test_dataset_id_is_sha256_over_sorted_name_and_file_hash(api: TestClient) -> None:
    import hashlib

    data = {"x/1.wav": wav_bytes(tone(0.5)), "y/2.wav": wav_bytes(tone(0.5, freq=300))}
    response = api.post("/v1/datasets", files=[("files", ("set.zip", _zip(data)))])
    expected = hashlib.sha256()
    for name in sorted(data):
        expected.update(name.encode() + b"\0" + hashlib.sha256(data[name]).hexdigest().encode() + b"\n")
    assert response.json()["id"] == expected.hexdigest()
    assert response.json()["labels"] == ["x", "y"]


def test_corrupt_file_is_rejected_with_its_name(api: TestClient) -> None:
    body = _problem(api.post("/v1/datasets", files=[("files", ("broken.wav", b"RIFF\x00garbage" * 10))]), 422)
    assert "broken.wav" in body["detail"] and "on_invalid=skip" in body["detail"]
    assert "blobs" not in body["detail"]  # no server-side path leaks into the message


def test_empty_file_is_rejected(api: TestClient) -> None:
    body = _problem(api.post("/v1/datasets", files=[("files", ("empty.wav", wav_bytes(np.zeros(0))))]), 422)
    assert "empty.wav" in body["detail"]


def test_nan_samples_are_rejected(api: TestClient) -> None:
    samples = tone(0.5).astype(np.float32)
    samples[100] = np.nan
    body = _problem(api.post("/v1/datasets", files=[("files", ("nan.wav", wav_bytes(samples, subtype="FLOAT")))]),
                    422)
    assert "NaN" in body["detail"]


def test_skip_invalid_keeps_good_files(api: TestClient) -> None:
    files = [("files", ("good.wav", wav_bytes(tone()))), ("files", ("bad.wav", b"not audio"))]
    response = api.post("/v1/datasets", files=files, data={"on_invalid": "skip"})
    assert response.status_code == 201
    assert response.json()["n_files"] == 1
    assert any("bad.wav" in s for s in response.json()["skipped"])


def test_silent_multichannel_and_odd_rates_are_accepted_with_warnings(api: TestClient) -> None:
    files = [("files", ("silent.wav", wav_bytes(np.zeros(8000)))),
             ("files", ("stereo.wav", wav_bytes(tone(1.0, rate=44100, channels=2), rate=44100))),
             ("files", ("odd.wav", wav_bytes(tone(1.0, rate=11025), rate=11025)))]
    body = api.post("/v1/datasets", files=files).json()
    assert body["n_files"] == 3
    assert body["channels"] == [1, 2]
    assert body["sample_rates"] == [11025, 16000, 44100]
    assert any("silent" in w for w in body["warnings"])


def test_zip_slip_is_refused(api: TestClient) -> None:
    archive = _zip({"ok.wav": wav_bytes(tone()), "../../evil.wav": wav_bytes(tone())})
    body = _problem(api.post("/v1/datasets", files=[("files", ("x.zip", archive))]), 422)
    assert "evil.wav" in body["detail"]


def test_absolute_zip_member_is_refused(api: TestClient) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        info = zipfile.ZipInfo("/etc/evil.wav")
        archive.writestr(info, wav_bytes(tone()))
    _problem(api.post("/v1/datasets", files=[("files", ("x.zip", buf.getvalue()))]), 422)


def test_zip_bomb_is_refused(api: TestClient) -> None:
    bomb = _zip({"bomb.wav": b"\0" * (30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    body = _problem(api.post("/v1/datasets", files=[("files", ("bomb.zip", bomb))]), 413)
    assert "zip bomb" in body["detail"]


def test_upload_over_the_limit_is_413(api: TestClient, api_settings: Settings) -> None:
    big = os.urandom(api_settings.max_upload_bytes + 1024)
    body = _problem(api.post("/v1/datasets", files=[("files", ("big.wav", big))]), 413)
    assert "SOUNDCHECK_MAX_UPLOAD_BYTES" in body["detail"]


def test_non_audio_members_are_listed_as_skipped(api: TestClient) -> None:
    archive = _zip({"a/1.wav": wav_bytes(tone()), "README.txt": b"hello", "__MACOSX/._1.wav": b"junk"})
    body = api.post("/v1/datasets", files=[("files", ("x.zip", archive))]).json()
    assert body["n_files"] == 1 and body["skipped"] == ["README.txt"]


def test_labels_csv_sets_labels(api: TestClient) -> None:
    archive = _zip({"1.wav": wav_bytes(tone()), "2.wav": wav_bytes(tone(freq=200)),
                    "labels.csv": b"name,label\n1.wav,dog\n2.wav,cat\n"})
    body = api.post("/v1/datasets", files=[("files", ("x.zip", archive))]).json()
    assert body["labels"] == ["cat", "dog"]


def test_unknown_dataset_is_404(api: TestClient) -> None:
    _problem(api.get("/v1/datasets/" + "0" * 64), 404)


def test_register_inside_allowed_root(api: TestClient, api_settings: Settings) -> None:
    root = api_settings.allowed_roots[0] / "set"
    (root / "dog").mkdir(parents=True)
    (root / "dog" / "1.wav").write_bytes(wav_bytes(tone()))
    response = api.post("/v1/datasets/register", json={"path": str(root)})
    assert response.status_code == 201, response.text
    assert response.json()["source"] == "path" and response.json()["labels"] == ["dog"]


def test_register_outside_allowed_roots_is_403(api: TestClient, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    body = _problem(api.post("/v1/datasets/register", json={"path": str(outside)}), 403)
    assert "allowed roots" in body["detail"]


def test_register_symlink_escaping_the_root_is_403(api: TestClient, api_settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    link = api_settings.allowed_roots[0] / "link"
    link.symlink_to(outside)
    _problem(api.post("/v1/datasets/register", json={"path": str(link)}), 403)
    dotdot = str(api_settings.allowed_roots[0]) + "/../secret"
    _problem(api.post("/v1/datasets/register", json={"path": dotdot}), 403)


def test_dataset_name_is_metadata_not_content(api: TestClient) -> None:
    files = [("files", ("a.wav", wav_bytes(tone(1.0))))]
    first = api.post("/v1/datasets", files=files, data={"name": "take one"}).json()
    second = api.post("/v1/datasets", files=files, data={"name": "take two"}).json()
    assert first["id"] == second["id"]
    assert first["name"] == "take one" and api.get(f"/v1/datasets/{first['id']}").json()["name"] == "take two"


def test_chunked_upload_over_the_limit_is_413(api: TestClient, api_settings: Settings) -> None:
    """No Content-Length (chunked transfer): the limit is counted as bytes arrive."""
    limit = api_settings.max_upload_bytes

    def body():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="files"; filename="big.wav"\r\n\r\n'
        for _ in range(limit // (1 << 20) + 2):
            yield b"\0" * (1 << 20)
        yield b"\r\n--xyz--\r\n"

    response = api.post("/v1/datasets", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    body_json = _problem(response, 413)
    assert "SOUNDCHECK_MAX_UPLOAD_BYTES" in body_json["detail"]


def test_control_characters_in_names_are_refused(api: TestClient) -> None:
    """A name with NUL/newline could make two different datasets hash to one id; it is refused."""
    raw = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.wav\x00' + b"0" * 64
           + b'\tb.wav"\r\n\r\n' + wav_bytes(tone()) + b"\r\n--xyz--\r\n")
    response = api.post("/v1/datasets", content=raw, headers={"content-type": "multipart/form-data; boundary=xyz"})
    body = _problem(response, 422)
    assert "control characters" in body["detail"]


def test_reupload_with_labels_updates_labels_of_the_same_dataset(api: TestClient) -> None:
    files = [("files", ("1.wav", wav_bytes(tone()))), ("files", ("2.wav", wav_bytes(tone(freq=200))))]
    first = api.post("/v1/datasets", files=files).json()
    assert first["labels"] == []
    labelled = api.post("/v1/datasets", files=[*files, ("files", ("labels.csv", b"1.wav,dog\n2.wav,cat\n"))]).json()
    assert labelled["id"] == first["id"] and labelled["labels"] == ["cat", "dog"]


def test_encrypted_zip_member_is_a_4xx_not_a_500(api: TestClient) -> None:
    good = wav_bytes(tone())
    archive = bytearray(_zip({"a.wav": good}, compression=zipfile.ZIP_STORED))
    # set the "encrypted" flag bit in the local and central headers: zipfile then refuses without a password
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = archive.find(sig)
        flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
        archive[flag_at] |= 0x1
    response = api.post("/v1/datasets", files=[("files", ("enc.zip", bytes(archive)))])
    assert 400 <= response.status_code < 500, response.text
    assert "a.wav" in response.json()["detail"]


def test_labels_csv_linked_outside_the_root_is_not_read(api: TestClient, api_settings: Settings,
                                                       tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    root = api_settings.allowed_roots[0] / "withlink"
    root.mkdir()
    (root / "1.wav").write_bytes(wav_bytes(tone()))
    (root / "labels.csv").symlink_to(secret)
    response = api.post("/v1/datasets/register", json={"path": str(root)})
    assert response.status_code == 201
    assert "root:x" not in response.text and response.json()["labels"] == []
