"""What makes two numbers comparable. Every cache key in soundcheck is built here and only here.

A key is the sha256 of canonical JSON of everything that can change the number: content ids, model id,
weight checksums, front end, resampler and the versions of the packages that compute it. Names never enter
a key, so a changed file, model, weight file or resampler can never return a stale number.
"""

from __future__ import annotations

import hashlib
import json
import platform
from functools import lru_cache
from importlib import metadata
from typing import Any

from soundcheck import audio

#: Packages whose version can change an embedding or a metric value.
NUMERIC_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "torchaudio", "onnxruntime", "soxr", "soundfile")
KEY_SCHEMA = "1"


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions (via metadata, so the api never imports torch to ask)."""
    versions = {"python": platform.python_version()}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def dataset_id(pairs: list[tuple[str, str]]) -> str:
    """Content id of a dataset: sha256 over the sorted (relative name, file sha256) pairs."""
    h = hashlib.sha256()
    for name, sha in sorted(pairs):
        h.update(name.encode("utf-8") + b"\0" + sha.encode("ascii") + b"\n")
    return h.hexdigest()


def embedding_provenance(model_provenance: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """The model's own provenance plus the device, decoder, resampler and package versions that produced it
    (GPU and CPU kernels differ in the last bits; MP3/Opus decoders differ between libsndfile versions)."""
    versions = package_versions()
    return {
        **model_provenance,
        "device": "cpu" if device is None or device == "cpu" else "cuda",
        "decoder": f"libsndfile-{audio.LIBSNDFILE_VERSION}",
        "resampler": audio.RESAMPLER,
        "packages": {k: v for k, v in versions.items()
                     if k in {"numpy", "torch", "onnxruntime", "soxr", "soundfile"}},
    }


def embedding_key(emb_provenance: dict[str, Any]) -> str:
    """Key of per-file embeddings: a file sha256 plus this key names one cached embedding."""
    return digest({"schema": KEY_SCHEMA, "kind": "embedding", "provenance": emb_provenance})


def reference_stats_key(dataset: str, emb_key: str) -> str:
    """Key of a dataset's Gaussian statistics under one embedding provenance."""
    return digest({"schema": KEY_SCHEMA, "kind": "gaussian", "dataset": dataset, "embedding": emb_key,
                   "numpy": package_versions().get("numpy")})


def ndb_bins_key(dataset: str, emb_key: str, k: int, whiten: bool, seed: int, metric_version: str) -> str:
    """Key of fitted NDB bins of a reference set (content, provenance, K, whitening, seed)."""
    return digest({"schema": KEY_SCHEMA, "kind": "ndb-bins", "dataset": dataset, "embedding": emb_key, "k": k,
                   "whiten": whiten, "seed": seed, "version": metric_version,
                   "sklearn": package_versions().get("scikit-learn")})


def reference_pack_key(dataset: str, emb_key: str, keep: str, probs: bool) -> str:
    """Key of a dataset's embeddings packed into one value, in the form its metrics keep (file means, frames),
    with or without the class probabilities. ``format`` 2: raw arrays behind a JSON header (worker/reference_pack.py),
    so no job ever meets a pack of the npz format 1."""
    return digest({"schema": KEY_SCHEMA, "kind": "reference-pack", "format": 2, "dataset": dataset,
                   "embedding": emb_key, "keep": keep, "probs": probs, "numpy": package_versions().get("numpy")})


def reference_term_key(dataset: str, emb_key: str, term: str, options: dict[str, Any]) -> str:
    """Key of one metric's reference-alone quantity (KAD's bandwidth and reference kernel sum, PRDC's k-NN radii)
    of a dataset under one embedding provenance; ``options`` are all that change it besides those (bandwidth
    option, seed, frame cap, backend, block size, k, unit, metric version: ``ReferenceSide.options``)."""
    versions = package_versions()
    return digest({"schema": KEY_SCHEMA, "kind": "reference-term", "term": term, "dataset": dataset,
                   "embedding": emb_key, "options": options,
                   "packages": {k: versions.get(k) for k in ("numpy", "scipy", "scikit-learn", "torch")}})


def result_provenance(emb_provenance: dict[str, Any] | None, metric_versions: dict[str, str]) -> dict[str, Any]:
    """Provenance block of a job result."""
    return {
        "embedding": emb_provenance,
        "embedding_key": embedding_key(emb_provenance) if emb_provenance else None,
        "metric_versions": metric_versions,
        "resampler": audio.RESAMPLER,
        "packages": package_versions(),
    }
