"""Per-file embedding cache: ``<embedding key>/<sha[:2]>/<sha>.npz`` (numpy, never pickle) in a :class:`Storage`.

The embedding key (see provenance.py) covers model id, weight checksums, front end, resampler and package
versions, so a changed weight file or resampler is a miss; the file's content sha256 names the entry. On a
local store (the default) the entries are files under ``<data dir>/embeddings``; on an object store they are
shared by every worker, and a worker's :class:`ReadCache` keeps recently used ones on its own disk.

Each entry carries the sha256 of its arrays: an entry whose arrays do not hash to it (corrupted at rest or in
transit) is a miss and is computed again from the audio, never read as numbers.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np

from soundcheck.embeddings.base import Embedded
from soundcheck.read_cache import ReadCache
from soundcheck.storage import LocalStore, Storage

log = logging.getLogger("soundcheck.cache")


def arrays_digest(frames: np.ndarray, probs: np.ndarray | None) -> str:
    """sha256 over dtype, shape and bytes of the arrays of one entry."""
    digest = hashlib.sha256()
    for arr in (frames,) if probs is None else (frames, probs):
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def encode(emb: Embedded) -> bytes:
    arrays = {"frames": emb.frames} if emb.probs is None else {"frames": emb.frames, "probs": emb.probs}
    buf = io.BytesIO()
    np.savez(buf, sha256=np.array(arrays_digest(emb.frames, emb.probs)), **arrays)
    return buf.getvalue()


def decode(source: Path | bytes) -> Embedded | None:
    """An entry's arrays, or None when it is torn, foreign or fails its checksum."""
    try:
        with np.load(source if isinstance(source, Path) else io.BytesIO(source), allow_pickle=False) as z:
            frames = z["frames"].copy()
            probs = z["probs"].copy() if "probs" in z.files else None
            stored = str(z["sha256"]) if "sha256" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if stored is not None and stored != arrays_digest(frames, probs):
        log.warning("a cached embedding failed its sha256 check; it is computed again")
        return None
    return Embedded(frames, probs)


class EmbeddingCache:
    """``root``: a directory (the local layout) or a :class:`Storage` with ``prefix``; ``local``: the worker's
    read-through cache when the storage is shared."""

    def __init__(self, root: Path | Storage, emb_key: str, prefix: str = "", local: ReadCache | None = None) -> None:
        self.storage = root if isinstance(root, Storage) else LocalStore(Path(root))
        self.emb_key = emb_key
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.local = local if self.storage.remote else None

    @property
    def dir(self) -> Path | None:
        return self.storage.local_path(self.prefix + self.emb_key)

    def key(self, sha256: str) -> str:
        return f"{self.prefix}{self.emb_key}/{sha256[:2]}/{sha256}.npz"

    def _local_kind(self) -> str:
        return f"embeddings/{self.emb_key}"

    def get(self, sha256: str) -> Embedded | None:
        key = self.key(sha256)
        if self.local is not None:
            hit = self.local.get(self._local_kind(), f"{sha256}.npz")
            if hit is not None:
                emb = decode(hit)
                if emb is not None:
                    return emb
                hit.unlink(missing_ok=True)
        path = self.storage.local_path(key)
        if path is not None:
            if not path.is_file():
                return None
            emb = decode(path)
            if emb is None:
                path.unlink(missing_ok=True)  # a torn or foreign file is a miss, never an error
            return emb
        data = self.storage.read_bytes(key)
        emb = decode(data) if data is not None else None
        if emb is not None and self.local is not None:
            self.local.put_bytes(self._local_kind(), f"{sha256}.npz", data)  # type: ignore[arg-type]
        return emb

    def put(self, sha256: str, emb: Embedded) -> None:
        data = encode(emb)
        self.storage.write_bytes(self.key(sha256), data)
        if self.local is not None:
            self.local.put_bytes(self._local_kind(), f"{sha256}.npz", data)
