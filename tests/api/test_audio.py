"""Listening to a dataset's files through a real uvicorn with tokens: range requests give the exact stored bytes,
the content type follows the format, no token is a 401, and a signed URL works without the header until it
expires or is tampered with."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.routes.audio import sign, signature_valid
from tests.api.conftest import tone, wav_bytes
from tests.api.live import Live, live_api
from tests.conftest import make_settings

TOKEN = "audio-token-7d1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def secured(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_api(tmp_path_factory.mktemp("audio"), redis_server.rsplit("/", 1)[0] + "/12", api_token=TOKEN) as live:
        yield live


@pytest.fixture(scope="module")
def uploaded(secured: Live) -> tuple[str, dict[str, bytes]]:
    import io

    import soundfile as sf

    flac = io.BytesIO()
    sf.write(flac, tone(0.5, freq=300.0), 16000, format="FLAC")
    files = {"a.wav": wav_bytes(tone(1.0)), "sub/b.flac": flac.getvalue(),
             **{f"n{i:02d}.wav": wav_bytes(tone(0.1, freq=200.0 + 10 * i)) for i in range(12)}}
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files.items()]
    answer = httpx.post(f"{secured.url}/v1/datasets", files=parts, headers=AUTH, timeout=60)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], files


def test_range_request_returns_the_exact_bytes_with_the_content_type(secured: Live,
                                                                     uploaded: tuple[str, dict[str, bytes]]) -> None:
    dataset, files = uploaded
    whole = files["a.wav"]
    url = f"{secured.url}/v1/datasets/{dataset}/files/a.wav/audio"
    full = httpx.get(url, headers=AUTH)
    assert full.status_code == 200 and full.content == whole
    assert full.headers["content-type"] == "audio/wav" and full.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={**AUTH, "Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == whole[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    tail = httpx.get(url, headers={**AUTH, "Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole[-16:]
    flac = httpx.get(f"{secured.url}/v1/datasets/{dataset}/files/sub/b.flac/audio", headers=AUTH)
    assert flac.status_code == 200 and flac.content == files["sub/b.flac"]
    assert flac.headers["content-type"] == "audio/flac"


def test_no_token_is_401_and_a_signed_url_works_without_it(secured: Live,
                                                           uploaded: tuple[str, dict[str, bytes]]) -> None:
    dataset, files = uploaded
    path = f"/v1/datasets/{dataset}/files/a.wav/audio"
    assert httpx.get(secured.url + path).status_code == 401
    assert httpx.get(secured.url + path + "?exp=9999999999&sig=" + "0" * 64).status_code == 401
    assert httpx.get(f"{secured.url}/v1/datasets/{dataset}/files/a.wav/audio-url").status_code == 401
    signed = httpx.get(f"{secured.url}/v1/datasets/{dataset}/files/a.wav/audio-url", headers=AUTH).json()
    assert signed["media_type"] == "audio/wav" and signed["expires_at"] > time.time() + 600
    answer = httpx.get(secured.url + signed["url"], headers={"Range": "bytes=0-43"})  # no Authorization
    assert answer.status_code == 206 and answer.content == files["a.wav"][:44]
    # the signature covers the file name: it opens no other file
    other = re.sub(r"/a\.wav/", "/n00.wav/", signed["url"])
    assert httpx.get(secured.url + other).status_code == 401
    # nor a tampered expiry
    later = re.sub(r"exp=\d+", f"exp={signed['expires_at'] + 1}", signed["url"])
    assert httpx.get(secured.url + later).status_code == 401


def test_signed_urls_expire_and_depend_on_the_tokens(tmp_path: Path, redis_server: str) -> None:
    settings = make_settings(redis_server, tmp_path, api_token=TOKEN)
    sig = sign(settings, "d", "x.wav", 1000)
    assert signature_valid(settings, "d", "x.wav", 1000, sig, now=999)
    assert not signature_valid(settings, "d", "x.wav", 1000, sig, now=1001)
    rotated = make_settings(redis_server, tmp_path, api_token="another-token")
    assert not signature_valid(rotated, "d", "x.wav", 1000, sig, now=999)


def test_files_are_paged(secured: Live, uploaded: tuple[str, dict[str, bytes]]) -> None:
    dataset, files = uploaded
    names = []
    offset = 0
    while True:
        page = httpx.get(f"{secured.url}/v1/datasets/{dataset}/files", params={"limit": 5, "offset": offset},
                         headers=AUTH)
        assert page.status_code == 200 and page.headers["x-total-count"] == str(len(files))
        if not page.json():
            break
        assert len(page.json()) <= 5
        names += [f["name"] for f in page.json()]
        offset += 5
    assert sorted(names) == sorted(files) and len(names) == len(set(names))
    assert httpx.get(f"{secured.url}/v1/datasets/{dataset}/files").status_code == 401
    assert httpx.get(f"{secured.url}/v1/datasets/{dataset}/files/nope.wav/audio", headers=AUTH).status_code == 404
