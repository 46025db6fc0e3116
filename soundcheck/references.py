"""References brought from elsewhere (issue 10.5): Gaussian statistics in the layouts peers write, imported as a
reference for the FAD family and stored with the importer's declared provenance; and soundcheck's own cached
statistics exported in the same layouts.

Layouts (both ``np.savez`` archives of two float arrays, no pickle):

- ``fadtk``: ``mu`` [d], ``cov`` [d, d]; or, as fadtk packages its reference statistics (``fadtk/stats/*.npz``,
  e.g. ``fma_pop.npz``), one ``<model>.mu`` / ``<model>.cov`` pair per model (``provenance.model`` picks one);
- ``stable-audio-metrics``: ``mu_ref`` [d], ``sigma_ref`` [d, d] (its ``load/openl3_fd/*.npz``).

An imported reference is only a mean and a covariance: no frames, no files. FAD, FAD-inf and per-file FAD need
nothing more (:data:`soundcheck.jobspec.IMPORTED_METRICS`); the rest are refused at the door. Its arrays are
kept exactly as imported (float64) and the covariance is used as given, so FAD against it is the Fréchet
distance to those very numbers. Records live in Redis (``sc:references``, id -> ReferenceView JSON); the
imported arrays in the shared storage under ``references/<id>.npz`` (the data dir, or the bucket of
``SOUNDCHECK_STORAGE_URL``; never evicted, unlike the statistics cache).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from redis import Redis

from soundcheck import stats_lru
from soundcheck.jobspec import IMPORTED_METRICS, DeclaredProvenance, ReferenceView
from soundcheck.storage import Storage

LAYOUTS: dict[str, tuple[str, str]] = {"fadtk": ("mu", "cov"), "stable-audio-metrics": ("mu_ref", "sigma_ref")}
REFERENCES_KEY = "sc:references"
#: The worker's cached statistics (worker/stats_cache.py STATS_KEY): read here for export, never written.
STATS_VALUE_KEY = "sc:stats:{}"
#: Largest dimension accepted (a 8192 x 8192 float64 covariance is 512 MB; the largest model here is 6144-d).
MAX_DIM = 8192
#: Relative asymmetry tolerated in an imported covariance (np.cov output is symmetric to round-off).
SYMMETRY_RTOL = 1e-9


class ReferenceFileError(ValueError):
    """The uploaded file is not usable reference statistics (the api answers 422 with this message)."""


@dataclass(frozen=True)
class ImportedGaussian:
    """A reference Gaussian given as mean and covariance (no frames): what ``evaluate_embeddings`` reads as
    ``reference_stats`` for an imported reference. ``n``: frames, as declared (None: unknown)."""

    mean: np.ndarray
    cov: np.ndarray
    n: int | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.size)


def _packaged_keys(names: set[str], wanted: tuple[str | None, ...]) -> tuple[str, str] | None:
    """fadtk's packaged statistics (``fadtk/stats/*.npz``, e.g. ``fma_pop.npz``) hold one pair per model,
    ``<model>.mu`` and ``<model>.cov`` (fadtk ``load_stats``): the one pair, or the declared model's."""
    models = sorted(k[:-3] for k in names if k.endswith(".mu") and f"{k[:-3]}.cov" in names)
    if not models:
        return None
    named = [w for w in wanted if w in models]
    if len(models) > 1 and not named:
        raise ReferenceFileError(f"the npz holds statistics of several models ({', '.join(models)}): say which "
                                 "with provenance.embedding or provenance.model (fadtk's name, e.g. clap-laion-audio)")
    chosen = named[0] if named else models[0]
    return f"{chosen}.mu", f"{chosen}.cov"


def parse_npz(data: bytes, wanted: tuple[str | None, ...] = ()) -> tuple[np.ndarray, np.ndarray, str]:
    """(mu, cov, layout) of an npz in one of :data:`LAYOUTS`, checked: 1-d mean, square covariance of the same
    dimension, finite, symmetric to round-off. Raises :class:`ReferenceFileError` saying what is wrong."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ReferenceFileError(f"not an npz archive (np.savez) of plain arrays: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ReferenceFileError("a single .npy array, not an npz archive: save with np.savez(path, mu=..., cov=...)")
    with archive as z:
        names = set(z.files)
        layout = next((name for name, keys in LAYOUTS.items() if set(keys) <= names), None)
        packaged = _packaged_keys(names, wanted) if layout is None else None
        if layout is None and packaged is None:
            wanted = " or ".join(f"{'+'.join(k)} ({name})" for name, k in LAYOUTS.items())
            raise ReferenceFileError(f"the npz needs the keys {wanted}, or <model>.mu + <model>.cov (fadtk's "
                                     f"packaged statistics); it has {sorted(names) or 'none'}")
        mu_key, cov_key = LAYOUTS[layout] if layout is not None else packaged
        layout = layout or "fadtk"
        try:
            mu, cov = z[mu_key], z[cov_key]
        except ValueError as exc:  # object arrays need pickle
            raise ReferenceFileError(f"{mu_key}/{cov_key} must be numeric arrays: {exc}") from exc
    for key, arr in ((mu_key, mu), (cov_key, cov)):
        if arr.dtype.kind not in "fiu":
            raise ReferenceFileError(f"{key} must be a real numeric array, got dtype {arr.dtype}")
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mu.ndim != 1 or mu.size < 1:
        raise ReferenceFileError(f"{mu_key} must be a 1-d mean vector, got shape {list(mu.shape)}")
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ReferenceFileError(f"{cov_key} must be a square covariance matrix, got shape {list(cov.shape)}")
    if cov.shape[0] != mu.size:
        raise ReferenceFileError(f"{cov_key} is {cov.shape[0]} x {cov.shape[1]} but {mu_key} has {mu.size} "
                                 "dimensions")
    if mu.size > MAX_DIM:
        raise ReferenceFileError(f"dimension {mu.size} exceeds the limit of {MAX_DIM}")
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ReferenceFileError(f"{mu_key} and {cov_key} must be finite (NaN or infinity found)")
    scale = float(np.abs(cov).max()) or 1.0
    if float(np.abs(cov - cov.T).max()) > SYMMETRY_RTOL * scale:
        raise ReferenceFileError(f"{cov_key} is not symmetric: not a covariance matrix")
    return mu, cov, layout


def to_npz(mu: np.ndarray, cov: np.ndarray, layout: str = "fadtk") -> bytes:
    """The statistics as the peer writes them (``np.savez``, float64, no pickle)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    mu_key, cov_key = LAYOUTS[layout]
    buf = io.BytesIO()
    np.savez(buf, **{mu_key: np.asarray(mu, dtype=np.float64), cov_key: np.asarray(cov, dtype=np.float64)})
    return buf.getvalue()


def imported_id(mu: np.ndarray, cov: np.ndarray, declared: DeclaredProvenance) -> str:
    """Content id: the arrays' bytes and the declared provenance (the same numbers declared differently are two
    references, so one importer's word never overwrites another's)."""
    h = hashlib.sha256(b"soundcheck-imported-reference-1\n")
    for arr in (mu, cov):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(declared.model_dump(mode="json"), sort_keys=True).encode())
    return h.hexdigest()


#: Where the imported arrays live in the shared storage (local data dir or s3://): every host reads them.
REFERENCES_PREFIX = "references"


class ReferenceStore:
    """Records in Redis; the imported arrays in the shared :class:`~soundcheck.storage.Storage` (so a worker on
    another host reads what the api imported), written atomically by the storage."""

    def __init__(self, redis: Redis, storage: Storage | None = None) -> None:
        self.redis, self._storage = redis, storage  # storage: only to write or read the arrays

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("ReferenceStore needs the storage to read or write imported arrays")
        return self._storage

    @staticmethod
    def _key(ref_id: str) -> str:
        return f"{REFERENCES_PREFIX}/{ref_id}.npz"

    def import_npz(self, data: bytes, declared: DeclaredProvenance) -> ReferenceView:
        mu, cov, layout = parse_npz(data, (declared.embedding, declared.model))
        ref_id = imported_id(mu, cov, declared)
        self.storage.write_bytes(self._key(ref_id), to_npz(mu, cov, "fadtk"))
        view = ReferenceView(id=ref_id, kind="imported", dim=mu.size, supports=list(IMPORTED_METRICS),
                             created_at=datetime.now(UTC), declared=declared, verified=False, layout=layout,
                             n_frames=declared.n_frames)
        self.redis.hset(REFERENCES_KEY, ref_id, view.model_dump_json())
        return view

    def record_computed(self, stats_key: str, dataset: str, embedding: str, embedding_key: str, n_frames: int,
                        dim: int) -> None:
        """Called by the worker when it caches a dataset's statistics: they become listable and exportable."""
        view = ReferenceView(id=stats_key, kind="computed", dim=dim, supports=["export"],
                             created_at=datetime.now(UTC), verified=True, dataset=dataset, embedding=embedding,
                             embedding_key=embedding_key, n_frames=n_frames)
        self.redis.hset(REFERENCES_KEY, stats_key, view.model_dump_json())

    def get(self, ref_id: str) -> ReferenceView | None:
        raw = self.redis.hget(REFERENCES_KEY, ref_id)
        if raw is None:
            return None
        view = ReferenceView.model_validate_json(raw)
        if view.kind == "computed":
            view.cached = bool(self.redis.exists(STATS_VALUE_KEY.format(ref_id)))
        return view

    def list(self) -> list[ReferenceView]:
        views = [ReferenceView.model_validate_json(raw) for raw in self.redis.hvals(REFERENCES_KEY)]
        return sorted(views, key=lambda v: (v.created_at or datetime.min.replace(tzinfo=UTC)), reverse=True)

    def gaussian(self, ref_id: str) -> ImportedGaussian | None:
        """The imported statistics, exactly as imported; None when the id is not an imported reference."""
        view = self.get(ref_id)
        if view is None or view.kind != "imported":
            return None
        data = self.storage.read_bytes(self._key(ref_id))
        if data is None:
            return None
        mu, cov, _ = parse_npz(data)
        return ImportedGaussian(mu, cov, view.n_frames)

    def export(self, ref_id: str, layout: str = "fadtk") -> bytes | None:
        """npz bytes in ``layout``: an imported reference as imported; computed statistics as the mean and the
        (ddof=1) covariance the FAD of a job against that dataset uses. None: unknown id, or evicted."""
        view = self.get(ref_id)
        if view is None:
            return None
        if view.kind == "imported":
            found = self.gaussian(ref_id)
            return None if found is None else to_npz(found.mean, found.cov, layout)
        raw = stats_lru.get(self.redis, STATS_VALUE_KEY.format(ref_id))
        if raw is None:
            return None
        from soundcheck.metrics.frechet import GaussianStats  # scipy only where statistics are exported

        stats = GaussianStats.from_bytes(raw)
        return to_npz(stats.mean, stats.cov, layout)
