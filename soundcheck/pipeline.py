"""Embed the files of a manifest with a loaded model: cache lookups, decoding, then the model's batching.

Used by the worker (and by local CLI runs). :func:`embed_stream` yields FileEmbeddings chunk by chunk so the
worker can fold them into statistics and drop them (soundcheck.streaming); :func:`embed_files` keeps them all.
Progress is reported through a callback; no Redis here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from soundcheck import audio
from soundcheck.datastore import BlobStore, file_location
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.embeddings.base import Embedded, EmbeddingModel, sha256_file
from soundcheck.evaluation import FileEmbedding
from soundcheck.jobspec import FileEntry
from soundcheck.storage import CorruptObject, is_url

#: Files per list yielded by embed_stream (what a consumer holds at once). Batching is the model's Batcher's:
#: rows are packed across these boundaries, and files are decoded one at a time.
FILES_PER_CHUNK = 32
#: Audio per chunk of :func:`chunks` (10 min: ~40 MB of float32 at 16 kHz, ~80 MB at 32 kHz), used where whole
#: waveforms are held together (the operator classifier).
SECONDS_PER_CHUNK = 600.0


class InputChanged(RuntimeError):
    """A registered file no longer has the content recorded at registration."""


def read_entry(entry: FileEntry, blobs: BlobStore) -> Path:
    """Path of an entry's bytes on this host; registered files are re-hashed so a changed file never passes
    silently, and a blob or registered object fetched from an object store is checked against its sha256."""
    where = entry.path or f"blob {entry.sha256}"
    try:
        path = file_location(entry, blobs)
    except FileNotFoundError:
        raise InputChanged(f"{entry.name}: {where} is missing; upload or register the dataset again") from None
    except CorruptObject as exc:
        raise InputChanged(f"{entry.name}: {exc}") from None
    if not path.is_file():
        raise InputChanged(f"{entry.name}: {path} is missing; upload or register the dataset again")
    if entry.path and not is_url(entry.path) and sha256_file(path) != entry.sha256:
        raise InputChanged(f"{entry.name}: {path} changed since the dataset was registered; register it again")
    return path


def load_wave(entry: FileEntry, blobs: BlobStore, sample_rate: int, channels: int = 1) -> np.ndarray:
    """The waveform a model sees: mono ``[frames]``, or ``[frames, channels]`` for a model that reads channels
    (``input_channels``, e.g. the stable-audio OpenL3 variants)."""
    return audio.load_channels(read_entry(entry, blobs), sample_rate, channels, entry.name)


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


def embed_stream(
    files: Sequence[FileEntry],
    model: EmbeddingModel,
    blobs: BlobStore,
    cache: EmbeddingCache | None,
    batch_size: int | None = None,
    on_file: Callable[[int], None] | None = None,
    timing: dict[str, float] | None = None,
    chunk_files: int = FILES_PER_CHUNK,
) -> Iterator[list[FileEmbedding]]:
    """FileEmbeddings of ``files`` in order, as lists of at most ``chunk_files``; cached files are not decoded.

    Files are decoded one at a time and their model inputs batched across files by the model's one
    :class:`~soundcheck.embeddings.base.Batcher` (``batch_size`` rows per forward pass, default the model's
    ``batch_rows``), so a consumer that folds each list and drops it holds one chunk of frames at most.
    ``timing`` gathers seconds per step: ``cache`` (reads and writes), ``decode`` (read, hash check, decode,
    resample), ``frontend`` and ``forward`` (the model's own two parts).
    """
    hits: set[int] = set()

    def items() -> Iterator[tuple[int, np.ndarray | Embedded]]:
        for i, entry in enumerate(files):
            started = time.perf_counter()
            hit = cache.get(entry.sha256) if cache is not None else None
            _add(timing, "cache", started)
            if hit is not None:
                hits.add(i)
                yield i, hit
                continue
            started = time.perf_counter()
            wave = load_wave(entry, blobs, model.spec.sample_rate, getattr(model, "input_channels", 1))
            _add(timing, "decode", started)
            yield i, wave

    out: list[FileEmbedding] = []
    for i, emb in model.embed_iter(items(), batch_size, timing):
        entry = files[i]
        if i not in hits:
            if len(emb.frames) == 0:
                raise audio.AudioError(f"{entry.name}: too short to give one {model.spec.id} frame")
            if cache is not None:
                started = time.perf_counter()
                cache.put(entry.sha256, emb)
                _add(timing, "cache", started)
        hits.discard(i)
        out.append(FileEmbedding(name=entry.name, frames=emb.frames, probs=emb.probs, label=entry.label,
                                 sample_rate=entry.sample_rate, silent=entry.silent, caption=entry.caption))
        if len(out) >= chunk_files or i == len(files) - 1:
            if on_file is not None:
                on_file(len(out))
            yield out
            out = []


def embed_files(
    files: Sequence[FileEntry],
    model: EmbeddingModel,
    blobs: BlobStore,
    cache: EmbeddingCache | None,
    batch_size: int | None = None,
    on_file: Callable[[int], None] | None = None,
    timing: dict[str, float] | None = None,
) -> list[FileEmbedding]:
    """One FileEmbedding per entry, in order, all in memory (see :func:`embed_stream` to fold instead)."""
    return [f for chunk in embed_stream(files, model, blobs, cache, batch_size, on_file, timing) for f in chunk]


def _add(timing: dict[str, float] | None, stage: str, started: float) -> None:
    if timing is not None:
        timing[stage] = timing.get(stage, 0.0) + time.perf_counter() - started
