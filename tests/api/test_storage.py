"""Storage hygiene over the api: a rejected upload leaves no blob, datasets can be deleted, shared blobs stay."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.datastore import BLOB_PENDING_KEY, BLOB_REFS_KEY
from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes


def _files(root: Path) -> dict[str, int]:
    """Every regular file under ``root`` (the disk scan), name → size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def _upload(api: TestClient, files: dict[str, bytes], **data: str):
    return api.post("/v1/datasets", files=[("files", (n, b)) for n, b in files.items()], data=data or None)


def test_rejected_upload_leaves_no_blob(api: TestClient, api_settings: Settings) -> None:
    before = _files(api_settings.data_dir)
    junk = {f"noise{i}.wav": os.urandom(5 << 20) for i in range(3)}  # random bytes named .wav: 422
    body = _problem(_upload(api, junk), 422)
    assert "noise0.wav" in body["detail"]
    assert _files(api_settings.blob_dir) == {}
    assert _files(api_settings.data_dir) == before


def test_a_good_file_in_a_rejected_upload_goes_too(api: TestClient, api_settings: Settings) -> None:
    _problem(_upload(api, {"good.wav": wav_bytes(tone()), "bad.wav": b"not audio"}), 422)
    assert _files(api_settings.blob_dir) == {}


def test_skipped_invalid_files_leave_no_blob(api: TestClient, api_settings: Settings, redis_db: Redis) -> None:
    good = wav_bytes(tone())
    response = _upload(api, {"good.wav": good, "bad.wav": b"not audio" * 100}, on_invalid="skip")
    assert response.status_code == 201, response.text
    import hashlib

    sha = hashlib.sha256(good).hexdigest()
    assert list(_files(api_settings.blob_dir)) == [f"{sha[:2]}/{sha}"]
    assert redis_db.smembers(BLOB_REFS_KEY.format(sha)) == {response.json()["id"].encode()}
    assert not redis_db.exists(BLOB_PENDING_KEY.format(sha))  # the request's claim ended with it


def test_rejected_upload_keeps_a_blob_another_dataset_references(api: TestClient, api_settings: Settings) -> None:
    shared = wav_bytes(tone(freq=330))
    assert _upload(api, {"shared.wav": shared}).status_code == 201
    kept = _files(api_settings.blob_dir)
    _problem(_upload(api, {"again.wav": shared, "bad.wav": b"junk"}), 422)
    assert _files(api_settings.blob_dir) == kept


def test_an_error_after_blobs_were_written_leaves_no_blob(api: TestClient, api_settings: Settings) -> None:
    """The zip's audio member is stored before its malformed labels.csv stops the request (an exception, not a
    collected invalid file): the blob still goes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.wav", wav_bytes(tone()))
        archive.writestr("labels.csv", "a.wav\n")
    body = _problem(api.post("/v1/datasets", files=[("files", ("set.zip", buf.getvalue()))]), 422)
    assert "labels.csv" in body["detail"]
    assert _files(api_settings.blob_dir) == {}


def test_delete_dataset_keeps_blobs_another_dataset_shares(api: TestClient, api_settings: Settings) -> None:
    shared, own = wav_bytes(tone(freq=500)), wav_bytes(tone(freq=700))
    first = _upload(api, {"shared.wav": shared, "own.wav": own}).json()["id"]
    second = _upload(api, {"shared.wav": shared}).json()["id"]
    assert len(_files(api_settings.blob_dir)) == 2
    assert api.delete(f"/v1/datasets/{first}").status_code == 204
    import hashlib

    sha_shared = hashlib.sha256(shared).hexdigest()
    assert list(_files(api_settings.blob_dir)) == [f"{sha_shared[:2]}/{sha_shared}"]
    _problem(api.get(f"/v1/datasets/{first}"), 404)
    assert not (api_settings.data_dir / "datasets" / f"{first}.json").exists()  # the mirror goes too
    assert [d["id"] for d in api.get("/v1/datasets").json()] == [second]
    assert api.delete(f"/v1/datasets/{second}").status_code == 204
    assert _files(api_settings.blob_dir) == {}
    _problem(api.delete(f"/v1/datasets/{second}"), 404)


def test_delete_is_409_while_a_queued_job_uses_the_dataset(api: TestClient, api_settings: Settings) -> None:
    ref = _upload(api, {"a.wav": wav_bytes(tone())}).json()["id"]
    cand = _upload(api, {"b.wav": wav_bytes(tone(freq=880))}).json()["id"]
    redis = Redis.from_url(api_settings.redis_url)
    redis.set("sc:job:unreadable", b'{"status":"queued", not json')  # one bad record never makes a 500
    redis.zadd("sc:jobs", {"unreadable": 1.0})
    job = api.post("/v1/jobs", json={"reference": ref, "candidate": cand, "metrics": ["fad"]}).json()
    assert job["status"] == "queued"  # no worker in these tests: it stays queued
    for dataset in (ref, cand):
        body = _problem(api.delete(f"/v1/datasets/{dataset}"), 409)
        assert job["id"] in body["detail"] and "cancel" in body["detail"]
    assert len(_files(api_settings.blob_dir)) == 2
    assert api.delete(f"/v1/jobs/{job['id']}").status_code in (200, 202)
    assert api.delete(f"/v1/datasets/{cand}").status_code == 204


def test_decoded_samples_cap_is_read_from_the_header(api_settings: Settings, redis_db: Redis) -> None:
    from app.main import create_app

    settings = api_settings.model_copy(update={"max_decoded_samples": 16000 * 2 * 5})
    buf = io.BytesIO()
    sf.write(buf, tone(6.0, channels=2), 16000, format="FLAC")
    with TestClient(create_app(settings)) as api:
        body = _problem(_upload(api, {"long.flac": buf.getvalue(), "ok.wav": wav_bytes(tone(4.0, channels=2))}), 422)
    assert "long.flac" in body["detail"] and "SOUNDCHECK_MAX_DECODED_SAMPLES" in body["detail"]
    assert "192,000 samples" in body["detail"] and "160,000" in body["detail"] and "ok.wav" not in body["detail"]
    assert _files(settings.blob_dir) == {}


def test_registered_directory_over_the_duration_cap_is_refused(api_settings: Settings, redis_db: Redis) -> None:
    from app.main import create_app

    settings = api_settings.model_copy(update={"max_file_seconds": 2.0})
    root = settings.allowed_roots[0] / "long"
    root.mkdir()
    sf.write(root / "three.wav", np.zeros(3 * 16000, np.float32), 16000)
    with TestClient(create_app(settings)) as api:
        body = _problem(api.post("/v1/datasets/register", json={"path": str(root)}), 422)
    assert "three.wav" in body["detail"] and "SOUNDCHECK_MAX_FILE_SECONDS" in body["detail"]
