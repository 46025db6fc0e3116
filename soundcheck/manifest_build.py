"""Manifests from checked files: safe names, labels, probing, and the content id (no Redis, no storage).

Shared by uploads, registered directories and registered object-store prefixes, so every source gives the
same manifest (and the same id) for the same files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from soundcheck import audio
from soundcheck.jobspec import DatasetView, FileEntry
from soundcheck.provenance import dataset_id

LABELS_CSV = "labels.csv"
CAPTIONS_CSV = "captions.csv"
MAX_CAPTION_CHARS = 2000


class DatasetError(ValueError):
    """A dataset that cannot be built, with an actionable message (the api maps it to 4xx)."""


class TooLarge(DatasetError):
    """A size limit was hit (the api answers 413)."""


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
