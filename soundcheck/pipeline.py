"""Embed the files of a manifest with a loaded model: cache lookups, decoding, cross-file batching.

Used by the worker (and by local CLI runs). Progress is reported through a callback; no Redis here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from soundcheck import audio
from soundcheck.datastore import BlobStore, file_location
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.embeddings.base import Embedded, EmbeddingModel, sha256_file
from soundcheck.evaluation import FileEmbedding
from soundcheck.jobspec import FileEntry

#: Files decoded and embedded together; bounds memory while letting patches batch across files.
FILES_PER_CHUNK = 32
#: ... and at most this much audio per chunk (10 min: ~40 MB of float32 at 16 kHz, ~80 MB at 32 kHz).
SECONDS_PER_CHUNK = 600.0


class InputChanged(RuntimeError):
    """A registered file no longer has the content recorded at registration."""


def read_entry(entry: FileEntry, blobs: BlobStore) -> Path:
    """Path of an entry's bytes; registered files are re-hashed so a changed file never passes silently."""
    path = file_location(entry, blobs)
    if not path.is_file():
        raise InputChanged(f"{entry.name}: {path} is missing; upload or register the dataset again")
    if entry.path and sha256_file(path) != entry.sha256:
        raise InputChanged(f"{entry.name}: {path} changed since the dataset was registered; register it again")
    return path


def load_wave(entry: FileEntry, blobs: BlobStore, sample_rate: int) -> np.ndarray:
    return audio.load_mono(read_entry(entry, blobs), sample_rate, entry.name)


def chunks(items: Sequence[FileEntry], size: int, seconds: float = SECONDS_PER_CHUNK
            ) -> Iterator[Sequence[FileEntry]]:
    """Consecutive runs of at most ``size`` files and (unless one file is longer) ``seconds`` of audio."""
    start, total = 0, 0.0
    for i, entry in enumerate(items):
        if i > start and (i - start >= size or total + entry.duration_s > seconds):
            yield items[start:i]
            start, total = i, 0.0
        total += entry.duration_s
    if start < len(items):
        yield items[start:]


def embed_files(
    files: Sequence[FileEntry],
    model: EmbeddingModel,
    blobs: BlobStore,
    cache: EmbeddingCache | None,
    batch_size: int = 64,
    on_file: Callable[[int], None] | None = None,
) -> list[FileEmbedding]:
    """One FileEmbedding per entry, in order; cached files are not decoded again."""
    out: list[FileEmbedding] = []
    for chunk in chunks(files, FILES_PER_CHUNK):
        found: dict[int, Embedded] = {}
        todo: list[int] = []
        for i, entry in enumerate(chunk):
            hit = cache.get(entry.sha256) if cache is not None else None
            if hit is not None:
                found[i] = hit
            else:
                todo.append(i)
        if todo:
            waves = [load_wave(chunk[i], blobs, model.spec.sample_rate) for i in todo]
            for i, emb in zip(todo, model.embed(waves, batch_size=batch_size), strict=True):
                if len(emb.frames) == 0:
                    raise audio.AudioError(f"{chunk[i].name}: too short to give one {model.spec.id} frame")
                found[i] = emb
                if cache is not None:
                    cache.put(chunk[i].sha256, emb)
        for i, entry in enumerate(chunk):
            emb = found[i]
            out.append(FileEmbedding(name=entry.name, frames=emb.frames, probs=emb.probs, label=entry.label,
                                     sample_rate=entry.sample_rate, silent=entry.silent))
        if on_file is not None:
            on_file(len(chunk))
    return out
