"""Dataset creation for the api: streamed uploads, zip safety, registered server directories.

Every file is checked before a manifest exists: decodable, non-empty, finite, not longer than the limit.
Bytes are stored content-addressed first, so a rejected upload loses nothing already stored, and a retry of
the same files is the same dataset.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from redis import Redis

from app.jobs import get_job
from soundcheck import audio
from soundcheck.datastore import (
    AUDIO_SUFFIXES,
    CAPTIONS_CSV,
    LABELS_CSV,
    BlobRefs,
    BlobStore,
    DatasetError,
    ManifestStore,
    TooLarge,
    blob_shas,
    build_manifest,
    describe,
    parse_captions_csv,
    parse_labels_csv,
    safe_relative_name,
)
from soundcheck.embeddings.base import sha256_file
from soundcheck.jobspec import DatasetView, FileEntry, JobView
from soundcheck.jobstore import JOB_INDEX, JOB_KEY
from soundcheck.settings import Settings
from soundcheck.stores import Stores

MAX_LABELS_BYTES = 16 << 20


class Forbidden(DatasetError):
    """A path outside the operator's allowed roots (the api answers 403)."""


@dataclass
class Collected:
    """Files gathered from one request before they become a manifest."""

    entries: list[FileEntry] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    captions: dict[str, str] | None = None  # None: no captions.csv came

    def add_captions(self, text: str) -> None:
        if self.captions is not None:
            raise DatasetError(f"one {CAPTIONS_CSV} per dataset")
        self.captions = parse_captions_csv(text)


def _is_ignorable(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def header_limit_error(name: str, info: audio.AudioInfo, settings: Settings) -> str | None:
    """Why a file's header alone disqualifies it (checked before a single sample is decoded), or None."""
    if info.duration_s > settings.max_file_seconds:
        return (f"{name}: {info.duration_s:.0f} s is longer than the limit of {settings.max_file_seconds:.0f} s "
                "(SOUNDCHECK_MAX_FILE_SECONDS)")
    samples = info.frames * info.channels
    if samples > settings.max_decoded_samples:
        return (f"{name}: {info.duration_s:.0f} s x {info.sample_rate} Hz x {info.channels} channels = "
                f"{samples:,} samples is more than the limit of {settings.max_decoded_samples:,} "
                "(SOUNDCHECK_MAX_DECODED_SAMPLES); downmix or resample it before uploading")
    return None


def _add_file(out: Collected, name: str, sha: str, size: int, path: Path, settings: Settings,
              stored_path: str | None = None) -> None:
    try:
        info = audio.probe(path, name)
        limit = header_limit_error(name, info, settings)
        if limit is not None:
            out.invalid.append(limit)
            return
        entry, silent = describe(name, path, sha, size, stored_path, info)
    except audio.AudioError as exc:
        out.invalid.append(str(exc))
        return
    out.entries.append(entry)
    if silent:
        out.silent.append(name)
    if len(out.entries) > settings.max_files_per_dataset:
        raise TooLarge(f"more than {settings.max_files_per_dataset} files in one dataset")


class _Budget:
    """Counts bytes actually read from zip members, whatever their headers claim (zip-bomb guard)."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit

    def reader(self, stream: IO[bytes], declared: int, ratio_limit: float, compressed: int, name: str) -> IO[bytes]:
        budget = self
        cap = max(compressed, 1) * ratio_limit

        class _Limited:
            read_total = 0

            def read(self, n: int = -1) -> bytes:
                block = stream.read(n)
                self.read_total += len(block)
                budget.remaining -= len(block)
                if budget.remaining < 0:
                    raise TooLarge("zip expands beyond the limit (SOUNDCHECK_ZIP_MAX_UNCOMPRESSED_BYTES)")
                if self.read_total > cap and self.read_total > 1 << 20:
                    raise TooLarge(f"zip member {name!r} expands more than {ratio_limit:.0f}x: refused as a zip bomb")
                if self.read_total > declared:
                    raise DatasetError(f"zip member {name!r} is larger than its header says: corrupt or hostile")
                return block

        return _Limited()  # type: ignore[return-value]


def _zip_members(archive: zipfile.ZipFile, settings: Settings) -> Iterator[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > settings.zip_max_members:
        raise TooLarge(f"zip has {len(infos)} members; the limit is {settings.zip_max_members}")
    declared = sum(i.file_size for i in infos)
    if declared > settings.zip_max_uncompressed_bytes:
        raise TooLarge(f"zip would expand to {declared} bytes; the limit is {settings.zip_max_uncompressed_bytes}")
    packed = sum(i.compress_size for i in infos)
    if declared > 8 << 20 and declared > max(packed, 1) * settings.zip_max_ratio:
        raise TooLarge(f"zip expands {declared / max(packed, 1):.0f}x as a whole: refused as a zip bomb "
                       f"(limit {settings.zip_max_ratio:.0f}x, SOUNDCHECK_ZIP_MAX_RATIO)")
    for info in infos:
        if info.is_dir():
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DatasetError(f"zip member {info.filename!r} is a symbolic link: not allowed")
        if info.file_size > max(info.compress_size, 1) * settings.zip_max_ratio and info.file_size > 1 << 20:
            raise TooLarge(f"zip member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x:"
                           " refused as a zip bomb")
        yield info


def add_zip(out: Collected, stream: IO[bytes], blobs: BlobStore, settings: Settings, prefix: str = "") -> None:
    """Store the audio members of a zip; names are checked against zip-slip before anything is read."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"not a valid zip archive ({exc})") from None
    budget = _Budget(settings.zip_max_uncompressed_bytes)
    with archive:
        members = list(_zip_members(archive, settings))
        for info in members:
            safe_relative_name(info.filename)  # refuse the whole archive on the first hostile name
        for info in members:
            name = safe_relative_name(prefix + info.filename)
            if _is_ignorable(name):
                continue
            if PurePosixPath(name).name == LABELS_CSV:
                if info.file_size > MAX_LABELS_BYTES or out.labels:
                    raise DatasetError(f"one {LABELS_CSV} of at most {MAX_LABELS_BYTES} bytes per dataset")
                with archive.open(info) as fh:
                    out.labels.update(parse_labels_csv(fh.read(MAX_LABELS_BYTES).decode("utf-8", "replace")))
                continue
            if PurePosixPath(name).name == CAPTIONS_CSV:
                if info.file_size > MAX_LABELS_BYTES:
                    raise DatasetError(f"{CAPTIONS_CSV} is larger than {MAX_LABELS_BYTES} bytes")
                with archive.open(info) as fh:
                    out.add_captions(_utf8(fh.read(MAX_LABELS_BYTES)))
                continue
            if PurePosixPath(name).suffix.lower() not in AUDIO_SUFFIXES:
                out.skipped.append(name)
                continue
            try:
                with archive.open(info) as member:
                    limited = budget.reader(member, info.file_size, settings.zip_max_ratio, info.compress_size, name)
                    sha, size, path = blobs.put_stream(limited, settings.max_upload_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                # RuntimeError: encrypted member; NotImplementedError: e.g. Deflate64 compression
                out.invalid.append(f"{name}: cannot be extracted ({exc}); re-zip it with plain deflate, no password")
                continue
            _add_file(out, name, sha, size, path, settings)


def add_upload(out: Collected, filename: str, stream: IO[bytes], blobs: BlobStore, settings: Settings) -> None:
    """One uploaded part: a zip is expanded, labels.csv parsed, audio stored and checked."""
    name = safe_relative_name(filename or "unnamed")
    if name.lower().endswith(".zip"):
        add_zip(out, stream, blobs, settings)
        return
    if PurePosixPath(name).name == LABELS_CSV:
        data = stream.read(MAX_LABELS_BYTES + 1)
        if len(data) > MAX_LABELS_BYTES:
            raise DatasetError(f"{LABELS_CSV} is larger than {MAX_LABELS_BYTES} bytes")
        out.labels.update(parse_labels_csv(data.decode("utf-8", "replace")))
        return
    if PurePosixPath(name).name == CAPTIONS_CSV:
        data = stream.read(MAX_LABELS_BYTES + 1)
        if len(data) > MAX_LABELS_BYTES:
            raise DatasetError(f"{CAPTIONS_CSV} is larger than {MAX_LABELS_BYTES} bytes")
        out.add_captions(_utf8(data))
        return
    sha, size, path = blobs.put_stream(stream, settings.max_upload_bytes)
    _add_file(out, name, sha, size, path, settings)


def resolve_allowed(raw: str, settings: Settings) -> Path:
    """Resolve a server path and require it under an operator-allowed root (after following links)."""
    if not settings.allowed_roots:
        raise Forbidden("registering server directories is disabled: the operator sets SOUNDCHECK_ALLOWED_ROOTS")
    if "\x00" in raw:
        raise DatasetError("the path contains a NUL character")
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~user of an unknown user
        raise DatasetError(f"{raw!r}: unknown user in ~user; send an absolute path") from None
    if not path.is_absolute():
        raise DatasetError(f"{raw!r} is not an absolute path")
    real = path.resolve()
    if not any(real == root or root in real.parents for root in settings.allowed_roots):
        roots = ", ".join(str(r) for r in settings.allowed_roots)
        raise Forbidden(f"{raw!r} is outside the allowed roots ({roots})")
    try:
        is_dir = real.is_dir()
    except OSError as exc:  # name too long, permission denied
        raise DatasetError(f"{raw!r} cannot be read on the server ({exc.strerror})") from None
    if not is_dir:
        raise DatasetError(f"{raw!r} is not a directory on the server")
    return real


def scan_directory(out: Collected, root: Path, settings: Settings) -> None:
    """Hash and check every audio file under ``root``; links that leave the root are skipped and listed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            name = full.relative_to(root).as_posix()
            if _is_ignorable(name):
                continue
            if fname not in (LABELS_CSV, CAPTIONS_CSV) and full.suffix.lower() not in AUDIO_SUFFIXES:
                out.skipped.append(name)
                continue
            real = full.resolve()
            if root not in real.parents or not real.is_file():
                out.skipped.append(f"{name} (a link outside the dataset root, or not a regular file)")
                continue
            try:
                if fname == LABELS_CSV:
                    if real.stat().st_size > MAX_LABELS_BYTES:
                        raise DatasetError(f"{name} is larger than {MAX_LABELS_BYTES} bytes")
                    out.labels.update(parse_labels_csv(real.read_text("utf-8", "replace")))
                    continue
                if fname == CAPTIONS_CSV:
                    if real.stat().st_size > MAX_LABELS_BYTES:
                        raise DatasetError(f"{name} is larger than {MAX_LABELS_BYTES} bytes")
                    out.add_captions(_utf8(real.read_bytes()))
                    continue
                sha, size = sha256_file(real), real.stat().st_size
            except OSError as exc:
                out.invalid.append(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})")
                continue
            _add_file(out, name, sha, size, real, settings, stored_path=str(real))


def finish(out: Collected, source: str, on_invalid: str, root: str | None = None) -> DatasetView:
    """Turn collected files into a manifest, or refuse with every problem listed."""
    if out.invalid and on_invalid != "skip":
        shown = "; ".join(out.invalid[:10]) + (f"; and {len(out.invalid) - 10} more" if len(out.invalid) > 10 else "")
        raise DatasetError(f"{len(out.invalid)} file(s) cannot be used: {shown}. Fix or remove them, or send "
                           "on_invalid=skip to leave them out.")
    skipped = out.skipped + [f"{msg} (skipped)" for msg in out.invalid]
    return build_manifest(out.entries, source, out.silent, skipped, out.labels, root, out.captions)


def _utf8(data: bytes) -> str:
    """Captions are text a model reads: undecodable bytes are refused, not replaced (unlike labels' names)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{CAPTIONS_CSV} is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def set_captions(manifests: ManifestStore, dataset: str, captions: dict[str, str]) -> DatasetView | None:
    """Replace a stored dataset's captions (JSON of PUT /v1/datasets/{id}/captions); the id does not change.

    Every name must be a file of the dataset (a typo would silently leave a file unpaired)."""
    from soundcheck.datastore import MAX_CAPTION_CHARS, apply_captions

    view = manifests.get(dataset)
    if view is None:
        return None
    entries = [e.model_copy() for e in view.files or []]
    unknown = sorted(set(captions) - {e.name for e in entries})
    if unknown:
        raise DatasetError(f"{len(unknown)} caption name(s) are not files of dataset {dataset}: {unknown[:5]}")
    bad = [n for n, c in captions.items() if not c.strip() or len(c) > MAX_CAPTION_CHARS]
    if bad:
        raise DatasetError(f"captions must be non-empty and at most {MAX_CAPTION_CHARS} characters: {bad[:5]}")
    apply_captions(entries, {n: c.strip() for n, c in captions.items()})
    updated = view.model_copy(update={"files": entries, "n_captions": sum(e.caption is not None for e in entries)})
    return manifests.save(updated, name=view.name)


class DatasetInUse(DatasetError):
    """A queued or running job reads the dataset (the api answers 409)."""


def active_jobs_using(redis: Redis, settings: Settings, dataset: str) -> list[str]:
    """Queued or running jobs whose reference or candidate is ``dataset`` (reconciled, so a job whose worker
    died does not block a deletion forever)."""
    ids = [i.decode() if isinstance(i, bytes) else i for i in redis.zrange(JOB_INDEX, 0, -1)]
    found = []
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        for job_id, raw in zip(part, redis.mget([JOB_KEY.format(i) for i in part]), strict=True):
            if raw is None or not (b'"status":"queued"' in raw or b'"status":"running"' in raw):
                continue
            try:
                view = JobView.model_validate_json(raw)
            except ValueError:  # an unreadable record runs nothing (the job module shows it failed)
                continue
            spec = view.spec
            if spec is not None and dataset in (spec.reference, spec.candidate):
                current = get_job(redis, settings, job_id)
                if current is not None and current.status in ("queued", "running"):
                    found.append(job_id)
    return found


def delete_dataset(redis: Redis, settings: Settings, stores: Stores, dataset: str) -> DatasetView | None:
    """Remove a dataset and the blobs no other dataset (or upload in flight) uses; None when unknown."""
    manifests = stores.manifests(redis)
    if manifests.get(dataset) is None:
        return None
    busy = active_jobs_using(redis, settings, dataset)
    if busy:
        raise DatasetInUse(f"dataset {dataset!r} is used by {len(busy)} queued or running job(s) "
                           f"({', '.join(busy[:5])}); wait for them or cancel them (DELETE /v1/jobs/{{id}})")
    refs = BlobRefs(redis)
    refs.ensure_indexed(manifests)
    view = manifests.delete(dataset)
    if view is not None:
        blobs = stores.blobs()
        for sha in sorted(blob_shas(view)):
            refs.remove_if_unused(sha, blobs)
    return view
