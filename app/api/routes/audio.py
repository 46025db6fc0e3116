"""Listening to the numbers: a dataset's files, paged, and each file's audio streamed with HTTP range requests.

An ``<audio>`` element cannot send an ``Authorization`` header, so a token holder first asks for a short-lived
signed URL (``.../audio-url``); the stream route accepts either the bearer token or a valid signature
(HMAC-SHA256 over dataset, file name and expiry, keyed by the api's tokens: rotating them out revokes every URL).
See SECURITY.md, "Audio URLs".
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from app.api.deps import AuthorizedDep, BlobsDep, ManifestsDep, SettingsDep, require_token
from app.api.problems import errors
from soundcheck.datastore import file_location
from soundcheck.jobspec import FileEntry
from soundcheck.settings import Settings

router = APIRouter(prefix="/datasets", tags=["audio"])
#: Long enough to listen to a list of files and seek in them (each seek is a new range request).
AUDIO_URL_TTL_S = 3600
#: soundfile's format names (FileEntry.format) -> the media type a browser plays.
MEDIA_TYPES = {
    "WAV": "audio/wav", "WAVEX": "audio/wav", "RF64": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg",
    "MP3": "audio/mpeg", "AIFF": "audio/aiff", "AU": "audio/basic", "W64": "audio/x-w64", "CAF": "audio/x-caf",
}


class AudioUrl(BaseModel):
    url: str
    expires_at: int
    media_type: str


def _key(settings: Settings) -> bytes:
    return hashlib.sha256(b"soundcheck audio url\0" + b"\0".join(t.encode() for t in sorted(settings.accepted_tokens)))\
        .digest()


def sign(settings: Settings, dataset_id: str, name: str, expires_at: int) -> str:
    message = f"{dataset_id}\n{name}\n{expires_at}".encode()
    return hmac.new(_key(settings), message, hashlib.sha256).hexdigest()


def signature_valid(settings: Settings, dataset_id: str, name: str, expires_at: int | None, sig: str | None,
                    now: float | None = None) -> bool:
    if expires_at is None or not sig or expires_at < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(sign(settings, dataset_id, name, expires_at), sig)


def media_type(entry: FileEntry) -> str:
    return MEDIA_TYPES.get(entry.format.upper(), "application/octet-stream")


def _entry(manifests: ManifestsDep, dataset_id: str, name: str) -> FileEntry:
    manifest = manifests.get(dataset_id)
    if manifest is None:
        raise HTTPException(404, f"dataset {dataset_id!r} not found")
    found = next((f for f in manifest.files or [] if f.name == name), None)
    if found is None:
        raise HTTPException(404, f"dataset {dataset_id[:12]} has no file {name!r}")
    return found


def audio_path(dataset_id: str, name: str) -> str:
    return f"/v1/datasets/{quote(dataset_id, safe='')}/files/{quote(name, safe='/')}/audio"


@router.get("/{dataset_id}/files", response_model=list[FileEntry], response_model_exclude_none=True,
            dependencies=[Depends(require_token)], responses=errors(404, 503))
def list_files(dataset_id: str, manifests: ManifestsDep, response: Response,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               offset: Annotated[int, Query(ge=0)] = 0) -> list[FileEntry]:
    """A page of the dataset's files (manifest order); ``X-Total-Count`` says how many there are in all."""
    manifest = manifests.get(dataset_id)
    if manifest is None:
        raise HTTPException(404, f"dataset {dataset_id!r} not found")
    files = manifest.files or []
    response.headers["X-Total-Count"] = str(len(files))
    return [f.model_copy(update={"path": None}) for f in files[offset:offset + limit]]


@router.get("/{dataset_id}/files/{name:path}/audio-url", response_model=AudioUrl,
            dependencies=[Depends(require_token)], responses=errors(404, 503))
def audio_url(dataset_id: str, name: str, manifests: ManifestsDep, settings: SettingsDep) -> AudioUrl:
    """A URL of the file's audio that works without the token for ``AUDIO_URL_TTL_S`` seconds (for ``<audio>``)."""
    entry = _entry(manifests, dataset_id, name)
    expires_at = int(time.time()) + AUDIO_URL_TTL_S
    sig = sign(settings, dataset_id, name, expires_at)
    return AudioUrl(url=f"{audio_path(dataset_id, name)}?exp={expires_at}&sig={sig}", expires_at=expires_at,
                    media_type=media_type(entry))


@router.get("/{dataset_id}/files/{name:path}/audio", response_class=FileResponse, responses=errors(401, 404, 503))
def stream_audio(dataset_id: str, name: str, request: Request, manifests: ManifestsDep, settings: SettingsDep,
                 authorized: AuthorizedDep, blobs: BlobsDep, exp: int | None = None,
                 sig: str | None = None) -> FileResponse:
    """The stored bytes as uploaded, with ``Range`` support (206, ``Content-Range``): bearer token or signed URL."""
    if not authorized and not signature_valid(settings, dataset_id, name, exp, sig):
        raise HTTPException(401, "this audio URL is invalid or expired; ask GET .../audio-url with a bearer token "
                            "for a new one", headers={"WWW-Authenticate": 'Bearer realm="soundcheck"'})
    entry = _entry(manifests, dataset_id, name)
    path = file_location(entry, blobs)  # a blob of an object store comes through this host's read cache
    if not path.is_file():
        raise HTTPException(404, f"the bytes of {name!r} are gone from the server (a registered file moved?)")
    filename = name.rsplit("/", 1)[-1]
    return FileResponse(path, media_type=media_type(entry), filename=filename, content_disposition_type="inline",
                        headers={"Cache-Control": "private, max-age=3600"})
