"""Cache keys change with everything that can change a number, and with nothing else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from soundcheck import audio
from soundcheck.embed_cache import EmbeddingCache
from soundcheck.embeddings.base import Embedded
from soundcheck.provenance import dataset_id, embedding_key, embedding_provenance, ndb_bins_key, reference_stats_key


def _prov(weights_sha: str = "a" * 64, frontend: str = "1") -> dict:
    return embedding_provenance({"model": "vggish", "frontend_version": frontend,
                                 "weights": [{"name": "vggish-10086976.pth", "sha256": weights_sha}]})


def test_dataset_id_is_order_free_and_content_bound() -> None:
    pairs = [("b.wav", "2" * 64), ("a.wav", "1" * 64)]
    expected = hashlib.sha256(b"a.wav\x00" + b"1" * 64 + b"\nb.wav\x00" + b"2" * 64 + b"\n").hexdigest()
    assert dataset_id(pairs) == dataset_id(list(reversed(pairs))) == expected
    assert dataset_id([("a.wav", "1" * 64), ("b.wav", "3" * 64)]) != expected


def test_embedding_key_changes_with_weights_frontend_and_resampler(monkeypatch) -> None:
    base = embedding_key(_prov())
    assert embedding_key(_prov()) == base
    assert embedding_key(_prov(weights_sha="b" * 64)) != base
    assert embedding_key(_prov(frontend="2")) != base
    assert embedding_key(embedding_provenance(_prov(), device="cuda:0")) != base
    monkeypatch.setattr(audio, "RESAMPLER", "soxr-9.9-VHQ")
    assert embedding_key(_prov()) != base


def test_reference_keys_depend_on_dataset_and_embedding() -> None:
    key = reference_stats_key("d1", "e1")
    assert key != reference_stats_key("d2", "e1") and key != reference_stats_key("d1", "e2")
    bins = ndb_bins_key("d1", "e1", 100, True, 0, "1")
    assert bins != ndb_bins_key("d1", "e1", 50, True, 0, "1") != ndb_bins_key("d1", "e1", 100, False, 0, "1")
    assert bins != ndb_bins_key("d1", "e1", 100, True, 1, "1")


def test_embedding_cache_hits_only_under_the_same_key(tmp_path: Path) -> None:
    frames = np.arange(12, dtype=np.float32).reshape(3, 4)
    sha = "c" * 64
    old = EmbeddingCache(tmp_path, embedding_key(_prov()))
    old.put(sha, Embedded(frames))
    assert np.array_equal(old.get(sha).frames, frames)
    changed_weights = EmbeddingCache(tmp_path, embedding_key(_prov(weights_sha="d" * 64)))
    assert changed_weights.get(sha) is None
    probs = np.full((3, 2), 0.5, dtype=np.float32)
    changed_weights.put(sha, Embedded(frames, probs))
    assert np.array_equal(changed_weights.get(sha).probs, probs)


def test_torn_cache_file_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "k")
    path = tmp_path / "k" / "ee" / f"{'e' * 64}.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 torn")
    assert cache.get("e" * 64) is None and not path.exists()
