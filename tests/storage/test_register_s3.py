"""Registering an object-store prefix like a server directory: allowed roots, hostile paths, the manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from soundcheck.datastore import BlobStore
from soundcheck.jobspec import FileEntry
from soundcheck.pipeline import InputChanged, read_entry
from soundcheck.stores import Stores
from tests.api.conftest import tone, wav_bytes
from tests.conftest import make_settings


def test_an_s3_prefix_under_an_allowed_root_registers_and_others_are_refused(
        redis_db: Redis, redis_server: str, tmp_path: Path, s3_endpoint: str, bucket: str, s3fs_client) -> None:
    files = {"dog/a.wav": wav_bytes(tone(freq=300)), "cat/b.wav": wav_bytes(tone(freq=500)), "notes.txt": b"hi"}
    for name, data in files.items():
        s3fs_client.pipe_file(f"{bucket}/sets/one/{name}", data)
    settings = make_settings(redis_server, tmp_path, s3_endpoint_url=s3_endpoint,
                             allowed_roots=[tmp_path / "allowed", f"s3://{bucket}/sets"])
    with TestClient(create_app(settings)) as api:
        outside = api.post("/v1/datasets/register", json={"path": f"s3://{bucket}/other"})
        assert outside.status_code == 403, outside.text
        sneaky = api.post("/v1/datasets/register", json={"path": f"s3://{bucket}/sets/../other"})
        assert sneaky.status_code == 422, sneaky.text
        created = api.post("/v1/datasets/register", json={"path": f"s3://{bucket}/sets/one/"})
        assert created.status_code == 201, created.text
        view = api.get(f"/v1/datasets/{created.json()['id']}").json()
    assert view["root"] == f"s3://{bucket}/sets/one" and view["labels"] == ["cat", "dog"]
    assert view["skipped"] == ["notes.txt"]
    by_name = {f["name"]: f for f in view["files"]}
    assert by_name["dog/a.wav"]["path"] == f"s3://{bucket}/sets/one/dog/a.wav"
    assert by_name["dog/a.wav"]["sha256"] == hashlib.sha256(files["dog/a.wav"]).hexdigest()

    # a worker host reads it through its cache; a replaced object is refused, never read as the old content
    worker = Stores.from_settings(settings.model_copy(update={"data_dir": tmp_path / "worker"}))
    entry = FileEntry.model_validate(by_name["dog/a.wav"])
    blobs: BlobStore = worker.blobs()
    assert read_entry(entry, blobs).read_bytes() == files["dog/a.wav"]
    s3fs_client.pipe_file(f"{bucket}/sets/one/cat/b.wav", wav_bytes(tone(freq=900)))
    try:
        read_entry(FileEntry.model_validate(by_name["cat/b.wav"]), blobs)
    except InputChanged as exc:
        assert "cat/b.wav" in str(exc) and "sha256" in str(exc)
    else:
        raise AssertionError("a replaced object was read")
