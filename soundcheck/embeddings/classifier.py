"""Operator classifiers: TorchScript modules an operator drops into ``<model_dir>/classifiers/``.

A classifier ``NAME`` is two files:

- ``NAME.pt``: a TorchScript module (``torch.jit.save``) mapping a batch of mono float32 waveforms
  ``[b, samples]`` at the classifier's sample rate (values in [-1, 1]) to logits ``[b, n_labels]``;
- ``NAME.labels.json``: ``{"sample_rate": 16000, "labels": ["dog", "cat", ...]}``, labels in output order.

Logits are read as mutually exclusive classes (softmax) by :meth:`OperatorClassifier.probabilities`, which is
what the classifier metrics (accuracy, inception score, KL) need. Waveforms of equal length are run together in
batches; others one length at a time, so the module never sees padding it was not trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundcheck.classifier_files import CLASSIFIER_DIR, classifier_paths, list_classifiers, read_labels
from soundcheck.embeddings.base import sha256_file
from soundcheck.embeddings.registry import ModelUnavailable

__all__ = ["CLASSIFIER_DIR", "OperatorClassifier", "classifier_paths", "list_classifiers", "load_classifier",
           "read_labels"]


class OperatorClassifier:
    """A loaded operator classifier; construct once per process, like the embedding models."""

    def __init__(self, model_dir: Path, name: str, device: str = "cpu") -> None:
        module_path, labels_path = classifier_paths(model_dir, name)
        missing = [str(p) for p in (module_path, labels_path) if not p.is_file()]
        if missing:
            known = ", ".join(list_classifiers(model_dir)) or "none"
            raise ModelUnavailable(f"classifier {name!r} is unavailable: missing {', '.join(missing)} "
                                   f"(classifiers present: {known})")
        self.name = name
        self.sample_rate, self.labels = read_labels(labels_path)
        self.device = torch.device(device)
        self.module = torch.jit.load(str(module_path), map_location=self.device).eval()
        self.files = {p.name: sha256_file(p) for p in (module_path, labels_path)}

    def provenance(self) -> dict[str, Any]:
        return {
            "classifier": self.name, "sample_rate": self.sample_rate, "n_labels": len(self.labels),
            "files": [{"name": n, "sha256": s} for n, s in self.files.items()],
        }

    def logits(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Logits ``[n_files, n_labels]`` float32 for mono waveforms at :attr:`sample_rate`."""
        waves = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waves]
        out = np.zeros((len(waves), len(self.labels)), dtype=np.float32)
        lengths = np.array([len(w) for w in waves])
        with torch.inference_mode():
            for length in np.unique(lengths):
                rows = np.flatnonzero(lengths == length)
                for start in range(0, len(rows), batch_size):
                    part = rows[start:start + batch_size]
                    batch = torch.from_numpy(np.stack([waves[i] for i in part])).to(self.device)
                    result = self.module(batch)
                    if tuple(result.shape) != (len(part), len(self.labels)):
                        raise ValueError(f"classifier {self.name!r} returned shape {tuple(result.shape)} for "
                                         f"{len(part)} waveforms; expected ({len(part)}, {len(self.labels)})")
                    out[part] = result.float().cpu().numpy()
        return out

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Softmax of :meth:`logits`, ``[n_files, n_labels]``."""
        logits = self.logits(waves, batch_size).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        expo = np.exp(logits)
        return (expo / expo.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> list[str]:
        """The most likely label of each waveform."""
        return [self.labels[i] for i in self.logits(waves, batch_size).argmax(axis=1)]


def load_classifier(model_dir: Path, name: str, device: str = "cpu") -> OperatorClassifier:
    return OperatorClassifier(model_dir, name, device)
