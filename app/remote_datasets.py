"""Datasets registered from an object store (``s3://bucket/prefix`` under an allowed s3:// root).

Like a server directory: every object is hashed and checked once, at registration, and the manifest keeps
its URL (``FileEntry.path``) and sha256. Workers read such a file through their read cache, which checks the
bytes against that sha256, so a replaced object fails the job with a clear error instead of changing a number.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath

from app.datasets import MAX_LABELS_BYTES, Collected, Forbidden, _add_file, _is_ignorable
from soundcheck.datastore import AUDIO_SUFFIXES, LABELS_CSV, DatasetError, parse_labels_csv
from soundcheck.settings import Settings
from soundcheck.storage import BLOCK_BYTES
from soundcheck.stores import Stores


def resolve_allowed_url(raw: str, settings: Settings) -> str:
    """Normalise an object-store URL and require it under an allowed s3:// root."""
    if not settings.allowed_remote_roots:
        raise Forbidden("registering object-store prefixes is disabled: the operator adds s3://bucket/prefix to "
                        "SOUNDCHECK_ALLOWED_ROOTS")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise DatasetError("the URL contains control characters")
    protocol, _, rest = raw.partition("://")
    parts = [p for p in rest.split("/") if p]
    if not parts or ".." in parts or "." in parts:
        raise DatasetError(f"{raw!r}: give s3://bucket/prefix without '.' or '..' parts")
    url = f"{protocol}://{'/'.join(parts)}"
    if not any(url == root or url.startswith(root + "/") for root in settings.allowed_remote_roots):
        raise Forbidden(f"{raw!r} is outside the allowed roots ({', '.join(settings.allowed_remote_roots)})")
    return url


def scan_objects(out: Collected, url: str, stores: Stores, settings: Settings) -> None:
    """Hash and check every audio object under ``url`` (streamed in ranges into the api's read cache)."""
    fs = stores.filesystem(url)
    protocol, base = url.split("://", 1)
    try:
        found = fs.find(base, detail=True)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{url!r} cannot be listed ({exc})") from None
    if not found:
        raise DatasetError(f"{url!r} holds no objects")
    for path, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        name = path[len(base) + 1:]
        if not name or _is_ignorable(name):
            continue
        leaf = PurePosixPath(name)
        obj = f"{protocol}://{path}"
        if leaf.name == LABELS_CSV:
            if int(info.get("size") or 0) > MAX_LABELS_BYTES:
                raise DatasetError(f"{name} is larger than {MAX_LABELS_BYTES} bytes")
            out.labels.update(parse_labels_csv(fs.cat_file(path).decode("utf-8", "replace")))
            continue
        if leaf.suffix.lower() not in AUDIO_SUFFIXES:
            out.skipped.append(name)
            continue
        try:
            sha, size, local = _fetch(stores, obj)
        except OSError as exc:
            out.invalid.append(f"{name}: cannot be read ({exc})")
            continue
        _add_file(out, name, sha, size, local, settings, stored_path=obj)


def _fetch(stores: Stores, url: str) -> tuple[str, int, Path]:
    """Stream one object into the read cache while hashing it: (sha256, size, local path)."""
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=stores.cache.staging())
    try:
        with os.fdopen(fd, "wb") as dst, stores.open_url(url) as src:
            while block := src.read(BLOCK_BYTES):
                digest.update(block)
                size += len(block)
                dst.write(block)
        sha = digest.hexdigest()
        return sha, size, stores.cache.adopt("blobs", sha, Path(tmp))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
