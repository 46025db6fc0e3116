"""A bounded local read-through cache of shared objects (blobs, embeddings) on one host, evicted LRU.

With an object store, a worker must not fetch a file again for every job that reads it, nor fill its disk
with every file it ever read. Entries are ``<root>/<kind>/ab/<name>``; a hit touches the file's mtime, so the
mtime is the last use, and once the total passes ``max_bytes`` the least recently used go first (never the
entry just written). Blobs are fetched in ranges while their sha256 is computed, and published here only when
it matches the key. Evicting loses nothing: the shared store holds every object, and a miss fetches it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from soundcheck.storage import BLOCK_BYTES, CorruptObject

STAGING = ".incoming"
#: An eviction goes down to this share of the bound, so a full cache is not re-scanned on every new entry.
LOW_WATER = 0.9


class ReadCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._total: int | None = None  # bytes here, scanned on first use, then kept up to date
        self._lock = threading.Lock()

    def path(self, kind: str, name: str) -> Path:
        return self.root / kind / name[:2] / name

    def staging(self) -> Path:
        """Where partial files are written (same filesystem as the entries, so a rename publishes)."""
        path = self.root / STAGING
        path.mkdir(parents=True, exist_ok=True)
        return path

    def get(self, kind: str, name: str) -> Path | None:
        """The local copy (marked as just used), or None."""
        path = self.path(kind, name)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def adopt(self, kind: str, name: str, tmp: Path) -> Path:
        """Move a finished file in (``tmp`` from :meth:`staging`), then keep the bound."""
        path = self.path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = tmp.stat().st_size
        existed = path.exists()
        os.replace(tmp, path)
        if not existed:
            self._grow(size)
        self.evict(keep=path)
        return path

    def put_bytes(self, kind: str, name: str, data: bytes) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.staging())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return self.adopt(kind, name, Path(tmp))

    def fetch(self, kind: str, sha256: str, opener: Callable[[], IO[bytes]], where: str) -> Path:
        """The local copy of a content-addressed object: a hit, or streamed in blocks from ``opener()`` while
        hashed. Raises :class:`CorruptObject` (and keeps nothing) when the bytes do not hash to ``sha256``."""
        hit = self.get(kind, sha256)
        if hit is not None:
            return hit
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.staging())
        try:
            with os.fdopen(fd, "wb") as out, opener() as src:
                while block := src.read(BLOCK_BYTES):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != sha256:
                raise CorruptObject(f"{where} holds bytes with sha256 {digest.hexdigest()}, not the {sha256} it is "
                                    "stored under: the stored object is corrupt or was replaced; upload (or "
                                    "register) the file again")
            return self.adopt(kind, sha256, Path(tmp))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[Path, int, float]]:
        out = []
        for path in self.root.rglob("*"):
            if STAGING in path.parts[len(self.root.parts):len(self.root.parts) + 1]:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    st = path.stat()
                    out.append((path, st.st_size, st.st_mtime))
        return out

    def _grow(self, size: int) -> None:
        with self._lock:
            if self._total is None:
                self._total = self.total_bytes()  # includes the file just adopted
            else:
                self._total += size

    def evict(self, keep: Path | None = None) -> int:
        """Past ``max_bytes``, remove the least recently used entries down to LOW_WATER of it; bytes freed.
        The running total is re-scanned first, so processes sharing the directory correct each other."""
        with self._lock:
            if self._total is not None and self._total <= self.max_bytes:
                return 0
            entries = sorted(self._entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            freed = 0
            if total <= self.max_bytes:
                self._total = total
                return 0
            for path, size, _ in entries:
                if total <= self.max_bytes * LOW_WATER:
                    break
                if path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    total -= size
                    freed += size
            self._total = total
            return freed

    def remove_stale_staging(self, older_than_s: float) -> None:
        """Partial fetches left by a killed process."""
        cutoff = time.time() - older_than_s
        for path in (self.root / STAGING).glob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
