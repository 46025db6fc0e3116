"""Per-file embedding cache on disk: ``<dir>/<embedding key>/<sha[:2]>/<sha>.npz`` (numpy, never pickle).

The embedding key (see provenance.py) covers model id, weight checksums, front end, resampler and package
versions, so a changed weight file or resampler is a miss; the file's content sha256 names the entry.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from soundcheck.embeddings.base import Embedded


class EmbeddingCache:
    def __init__(self, root: Path, emb_key: str) -> None:
        self.dir = Path(root) / emb_key

    def _path(self, sha256: str) -> Path:
        return self.dir / sha256[:2] / f"{sha256}.npz"

    def get(self, sha256: str) -> Embedded | None:
        path = self._path(sha256)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                probs = z["probs"] if "probs" in z.files else None
                return Embedded(z["frames"].copy(), None if probs is None else probs.copy())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # a torn or foreign file is a miss, never an error
            return None

    def put(self, sha256: str, emb: Embedded) -> None:
        path = self._path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"frames": emb.frames} if emb.probs is None else {"frames": emb.frames, "probs": emb.probs}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
