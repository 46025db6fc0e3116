"""Content-addressed audio blobs and dataset manifests (in Redis, mirrored to JSON files on disk).

Shared by the api (writes) and workers (reads). A dataset id is derived from its content only, so the same
files uploaded twice are the same dataset and hit the same cached statistics.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import LockError
from redis.lock import Lock

from soundcheck import audio
from soundcheck.jobspec import DatasetView, FileEntry
from soundcheck.provenance import dataset_id

DATASET_KEY = "sc:dataset:{}"
DATASET_INDEX = "sc:datasets"
DATASET_NAMES = "sc:dataset-names"
LABELS_CSV = "labels.csv"
CAPTIONS_CSV = "captions.csv"
MAX_CAPTION_CHARS = 2000
#: Per blob: the set of dataset ids whose manifest references it (uploaded entries; registered files are not blobs).
BLOB_REFS_KEY = "sc:blob-refs:{}"
#: Per blob: request tokens that wrote or reused it and have not ended, scored by when the claim expires.
BLOB_PENDING_KEY = "sc:blob-pending:{}"
BLOB_LOCK_KEY = "sc:blob-lock:{}"
#: Set once the reference sets were built from every manifest.
BLOB_REFS_INDEXED = "sc:blob-refs-indexed"
INCOMING_PREFIX = ".incoming-"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".w64", ".caf"}


class DatasetError(ValueError):
    """A dataset that cannot be built, with an actionable message (the api maps it to 4xx)."""


class TooLarge(DatasetError):
    """A size limit was hit (the api answers 413)."""


class BlobRefs:
    """Which datasets use each blob, and which requests are writing it, in Redis.

    Blobs are content-addressed, so two datasets (or two uploads in flight) can share one. A blob is removed
    only under its lock, when no dataset references it and no live request has claimed it; a request claims a
    blob under the same lock before it links the file into place, so a removal can never race an upload.
    """

    def __init__(self, redis: Redis, claim_ttl_s: float = 6 * 3600) -> None:
        self.redis = redis
        self.claim_ttl_s = claim_ttl_s

    def lock(self, sha256: str) -> Lock:
        return self.redis.lock(BLOB_LOCK_KEY.format(sha256), timeout=60, blocking_timeout=30)

    def claim(self, sha256: str, token: str) -> None:
        self.redis.zadd(BLOB_PENDING_KEY.format(sha256), {token: time.time() + self.claim_ttl_s})

    def unclaim(self, sha256: str, token: str) -> None:
        self.redis.zrem(BLOB_PENDING_KEY.format(sha256), token)

    def in_use(self, sha256: str) -> bool:
        """A dataset references it, or a request that has not ended (nor expired) claimed it."""
        pending = BLOB_PENDING_KEY.format(sha256)
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(pending, "-inf", time.time())
        pipe.exists(BLOB_REFS_KEY.format(sha256), pending)
        return bool(pipe.execute()[1])

    def add_dataset(self, manifest: DatasetView, pipe: Pipeline | None = None) -> None:
        target = pipe if pipe is not None else self.redis.pipeline()
        for sha in blob_shas(manifest):
            target.sadd(BLOB_REFS_KEY.format(sha), manifest.id)
        if pipe is None:
            target.execute()

    def remove_dataset(self, manifest: DatasetView) -> None:
        pipe = self.redis.pipeline()
        for sha in blob_shas(manifest):
            pipe.srem(BLOB_REFS_KEY.format(sha), manifest.id)
        pipe.execute()

    def remove_if_unused(self, sha256: str, path: Path) -> int:
        """Delete the blob file when nothing uses it; the bytes freed (0 when kept or absent)."""
        try:
            with self.lock(sha256):
                if self.in_use(sha256):
                    return 0
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    return 0
                return size
        except LockError:  # held elsewhere for 30 s: keep the blob (gc comes back)
            return 0

    def ensure_indexed(self, manifests: ManifestStore) -> None:
        """Build the reference sets once from every manifest (datasets created before references existed, or a
        Redis restored without them), before anything relies on them to remove a blob."""
        if self.redis.exists(BLOB_REFS_INDEXED):
            return
        with self.redis.lock(BLOB_REFS_INDEXED + ":lock", timeout=600, blocking_timeout=600):
            if self.redis.exists(BLOB_REFS_INDEXED):
                return
            for dataset in manifests.all_ids():
                view = manifests.get(dataset)
                if view is not None:
                    self.add_dataset(view)
            self.redis.set(BLOB_REFS_INDEXED, "1")


class BlobStore:
    """Files under ``<root>/ab/<sha256>``; writes are atomic (temp file + rename).

    With ``refs`` (the api), every blob written is claimed for this store's request until :meth:`release`,
    which removes the ones no dataset ended up referencing: a rejected upload leaves nothing behind."""

    def __init__(self, root: Path, refs: BlobRefs | None = None) -> None:
        self.root = Path(root)
        self.refs = refs
        self.token = uuid.uuid4().hex
        self.touched: set[str] = set()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put_stream(self, stream: IO[bytes], max_bytes: int, chunk: int = 1 << 20) -> tuple[str, int, Path]:
        """Copy a stream into the store; return (sha256, size, path). Raises DatasetError over max_bytes."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=INCOMING_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(chunk):
                    size += len(block)
                    if size > max_bytes:
                        raise TooLarge(f"a file is larger than the limit of {max_bytes} bytes "
                                       "(SOUNDCHECK_MAX_UPLOAD_BYTES)")
                    digest.update(block)
                    out.write(block)
            sha = digest.hexdigest()
            final = self.path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            if self.refs is None:
                self._link(tmp_name, final)
            else:
                with self.refs.lock(sha):
                    self.refs.claim(sha, self.token)
                    self.touched.add(sha)
                    self._link(tmp_name, final)
            return sha, size, final
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    @staticmethod
    def _link(tmp_name: str, final: Path) -> None:
        if final.exists():
            os.unlink(tmp_name)
        else:
            os.replace(tmp_name, final)

    def release(self) -> int:
        """End of the request: drop its claims and remove the blobs it wrote that no dataset references
        (a rejected upload, files skipped as invalid). Returns the bytes freed."""
        if self.refs is None:
            return 0
        freed = 0
        for sha in sorted(self.touched):
            self.refs.unclaim(sha, self.token)
            freed += self.refs.remove_if_unused(sha, self.path(sha))
        self.touched.clear()
        return freed


def safe_relative_name(name: str) -> str:
    """Normalise an uploaded name to a relative POSIX path; refuse absolute paths and '..' (zip-slip)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise DatasetError(f"file name {name!r} contains control characters: rename the file")
    cleaned = name.replace("\\", "/")
    pure = PurePosixPath(cleaned)
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":") or ".." in pure.parts:
        raise DatasetError(f"unsafe file name {name!r}: absolute paths and '..' are not allowed")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise DatasetError(f"empty file name {name!r}")
    return "/".join(parts)


def label_of(name: str) -> str | None:
    """Label convention: the first folder of the relative name (``dog/001.wav`` → ``dog``)."""
    parts = name.split("/")
    return parts[-2] if len(parts) > 1 else None


def parse_labels_csv(text: str) -> dict[str, str]:
    """``name,label`` lines (a header line ``name,label`` is allowed) → {name: label}."""
    import csv
    import io

    labels: dict[str, str] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0].strip().lower() in {"name", "file", "filename"}:
            continue
        if len(row) < 2:
            raise DatasetError(f"{LABELS_CSV}: every row must be 'name,label' (row {len(labels) + 1} is not)")
        labels[safe_relative_name(row[0].strip())] = row[1].strip()
    return labels


def parse_captions_csv(text: str) -> dict[str, str]:
    """``name,caption`` rows (an optional header ``name,caption``) -> {name: caption}.

    Strict, because a caption silently cut at a comma would change a CLAP score: a caption with commas must be
    quoted (standard CSV), every row has exactly two fields, no name twice, no empty caption."""
    import csv
    import io

    captions: dict[str, str] = {}
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise DatasetError(f"{CAPTIONS_CSV} is not valid CSV ({exc})") from None
    for number, row in enumerate(rows, start=1):
        if not row or (number == 1 and [c.strip().lower() for c in row] == ["name", "caption"]):
            continue
        if len(row) != 2:
            raise DatasetError(f"{CAPTIONS_CSV} row {number}: expected 2 fields 'name,caption', got {len(row)} "
                               "(quote a caption that contains commas: \"a, b\")")
        name, caption = safe_relative_name(row[0].strip()), row[1].strip()
        if not caption:
            raise DatasetError(f"{CAPTIONS_CSV} row {number}: empty caption for {name!r}")
        if len(caption) > MAX_CAPTION_CHARS:
            raise DatasetError(f"{CAPTIONS_CSV} row {number}: caption longer than {MAX_CAPTION_CHARS} characters")
        if name in captions:
            raise DatasetError(f"{CAPTIONS_CSV} row {number}: {name!r} has a caption already")
        captions[name] = caption
    return captions


def apply_captions(entries: list[FileEntry], captions: dict[str, str]) -> list[str]:
    """Set each entry's caption (None where it has none); return the caption names no file has (sorted)."""
    names = {e.name for e in entries}
    for e in entries:
        e.caption = captions.get(e.name)
    return sorted(set(captions) - names)


def describe(name: str, path: Path, sha256: str, size: int, stored_path: str | None = None,
             info: audio.AudioInfo | None = None) -> tuple[FileEntry, bool]:
    """Probe a stored file into a manifest entry; also say whether it is silent. Raises AudioError."""
    info = info or audio.probe(path, name)
    peak = audio.scan_peak(path, name)
    entry = FileEntry(
        name=name, sha256=sha256, bytes=size, duration_s=info.duration_s, sample_rate=info.sample_rate,
        channels=info.channels, format=info.format, label=label_of(name), path=stored_path,
        silent=peak < audio.SILENCE_PEAK,
    )
    return entry, peak < audio.SILENCE_PEAK


def build_manifest(
    entries: list[FileEntry],
    source: str,
    silent: Iterable[str] = (),
    skipped: Iterable[str] = (),
    labels: dict[str, str] | None = None,
    root: str | None = None,
    captions: dict[str, str] | None = None,
) -> DatasetView:
    if not entries:
        raise DatasetError("the dataset has no audio files")
    counts = Counter(e.name for e in entries)
    dupes = sorted(n for n, c in counts.items() if c > 1)[:5]
    if dupes:
        raise DatasetError(f"duplicate file names in one dataset: {dupes}")
    if labels:
        for e in entries:
            e.label = labels.get(e.name, e.label)
    silent = sorted(silent)
    warnings = []
    if captions:
        unknown = apply_captions(entries, captions)
        if unknown:
            warnings.append(f"{len(unknown)} caption(s) name no file of the dataset: {unknown[:5]}")
    if silent:
        warnings.append(f"{len(silent)} of {len(entries)} files are silent (peak < -80 dBFS): {silent[:5]}")
    rates = sorted({e.sample_rate for e in entries})
    if len(rates) > 1:
        warnings.append(f"files have different sample rates {rates}; each is resampled to the model's rate")
    entries = sorted(entries, key=lambda e: e.name)
    return DatasetView(
        id=dataset_id([(e.name, e.sha256) for e in entries]),
        source=source,  # type: ignore[arg-type]
        root=root,
        n_files=len(entries),
        total_duration_s=float(sum(e.duration_s for e in entries)),
        sample_rates=rates,
        channels=sorted({e.channels for e in entries}),
        labels=sorted({e.label for e in entries if e.label}),
        n_captions=sum(e.caption is not None for e in entries),
        warnings=warnings,
        skipped=sorted(skipped),
        created_at=datetime.now(UTC),
        files=entries,
    )


class ManifestStore:
    """Dataset manifests in Redis, mirrored as JSON files so a Redis loss does not lose a dataset."""

    def __init__(self, redis: Redis, mirror_dir: Path) -> None:
        self.redis = redis
        self.mirror_dir = Path(mirror_dir)

    def save(self, manifest: DatasetView, name: str | None = None) -> DatasetView:
        """Store a manifest; an existing one with the same id (same content) is kept and returned.

        The name is metadata, not content: the last name given to a dataset is the one shown."""
        if name:
            self.redis.hset(DATASET_NAMES, manifest.id, name[:200])
        existing = self.get(manifest.id)
        if existing is not None and not _replaces(manifest, existing):
            BlobRefs(self.redis).add_dataset(existing)  # idempotent; repairs references a lost Redis dropped
            return existing
        payload = manifest.model_dump_json()
        self.mirror_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.mirror_dir / f".{manifest.id}.json.tmp"
        tmp.write_text(payload)
        os.replace(tmp, self.mirror_dir / f"{manifest.id}.json")
        pipe = self.redis.pipeline()
        pipe.set(DATASET_KEY.format(manifest.id), payload)
        pipe.zadd(DATASET_INDEX, {manifest.id: manifest.created_at.timestamp()})
        BlobRefs(self.redis).add_dataset(manifest, pipe)
        pipe.execute()
        return manifest.model_copy(update={"name": name[:200] if name else None})

    def delete(self, dataset: str) -> DatasetView | None:
        """Remove a manifest (Redis, mirror, name, blob references); the blobs themselves are the caller's."""
        view = self.get(dataset)
        if view is None:
            return None
        pipe = self.redis.pipeline()
        pipe.delete(DATASET_KEY.format(dataset))
        pipe.zrem(DATASET_INDEX, dataset)
        pipe.hdel(DATASET_NAMES, dataset)
        pipe.execute()
        (self.mirror_dir / f"{dataset}.json").unlink(missing_ok=True)
        BlobRefs(self.redis).remove_dataset(view)
        return view

    def all_ids(self) -> list[str]:
        """Every dataset id, in Redis or only in the mirror (a Redis that lost its data)."""
        ids = {i.decode() if isinstance(i, bytes) else i for i in self.redis.zrange(DATASET_INDEX, 0, -1)}
        if self.mirror_dir.is_dir():
            ids.update(p.stem for p in self.mirror_dir.glob("*.json") if _is_hex_id(p.stem))
        return sorted(ids)

    def get(self, dataset: str) -> DatasetView | None:
        raw = self.redis.get(DATASET_KEY.format(dataset))
        if raw is None:
            mirror = self.mirror_dir / f"{dataset}.json"
            if not _is_hex_id(dataset) or not mirror.is_file():
                return None
            raw = mirror.read_text()
            self.redis.set(DATASET_KEY.format(dataset), raw)
        view = DatasetView.model_validate_json(raw)
        name = self.redis.hget(DATASET_NAMES, dataset)
        view.name = name.decode() if isinstance(name, bytes) else name
        return view

    def list(self, limit: int = 100) -> list[DatasetView]:
        ids = self.redis.zrevrange(DATASET_INDEX, 0, limit - 1)
        views = [self.get(i.decode() if isinstance(i, bytes) else i) for i in ids]
        return [v.model_copy(update={"files": None}) for v in views if v is not None]


def _replaces(new: DatasetView, old: DatasetView) -> bool:
    """Same content, better manifest: uploaded bytes (durable blobs) over a registered directory, or new
    labels or captions (they are not content: they change no embedding, statistics or cache entry)."""
    if new.source != old.source:
        return new.source == "upload"
    new_meta = {f.name: (f.label, f.caption) for f in new.files or []}
    return any(new_meta.get(f.name) != (f.label, f.caption) for f in old.files or [])


def _is_hex_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def blob_shas(manifest: DatasetView) -> set[str]:
    """Blobs a manifest needs: its uploaded entries (registered entries are read from their own path)."""
    return {f.sha256 for f in manifest.files or [] if not f.path}


def file_location(entry: FileEntry, blobs: BlobStore) -> Path:
    """Where a manifest entry's bytes are: its registered path, else its blob."""
    return Path(entry.path) if entry.path else blobs.path(entry.sha256)
