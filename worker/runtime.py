"""The models a worker process holds for its lifetime (loaded once at start, never per job)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from soundcheck.embeddings import registry
from soundcheck.embeddings.base import EmbeddingModel
from soundcheck.provenance import embedding_key, embedding_provenance
from soundcheck.settings import Settings
from soundcheck.stores import Stores

log = logging.getLogger("soundcheck.worker")


@dataclass
class Runtime:
    settings: Settings
    device: str
    models: dict[str, EmbeddingModel] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    classifiers: dict[str, Any] = field(default_factory=dict)
    embedding_provenances: dict[str, dict[str, Any]] = field(default_factory=dict)
    embedding_keys: dict[str, str] = field(default_factory=dict)
    #: Where this worker reads blobs and reads/writes embeddings: the shared storage and its local read cache.
    stores: Stores | None = None

    def storage(self) -> Stores:
        if self.stores is None:
            self.stores = Stores.from_settings(self.settings)
        return self.stores

    def model(self, model_id: str) -> EmbeddingModel:
        if model_id in self.models:
            return self.models[model_id]
        if model_id not in registry.SPECS:
            raise registry.ModelUnavailable(f"unknown model {model_id!r}; known: {', '.join(registry.SPECS)}")
        reason = self.unavailable.get(model_id) or registry.availability(model_id, self.settings.models_dir).reason
        raise registry.ModelUnavailable(
            f"model {model_id!r} is not loaded on this worker"
            + (f": {reason}" if reason else f" (add it to SOUNDCHECK_PRELOAD; loaded: {', '.join(self.models)})")
        )

    def classifier(self, name: str) -> Any:
        """An operator TorchScript classifier from <model_dir>/classifiers, loaded on first use, then kept."""
        if name not in self.classifiers:
            from soundcheck.embeddings.classifier import load_classifier

            self.classifiers[name] = load_classifier(self.settings.models_dir, name, device=self.device)
        return self.classifiers[name]

    def describe(self) -> dict[str, object]:
        return {"loaded": sorted(self.models), "unavailable": self.unavailable, "device": self.device,
                "threads": self.settings.effective_threads()}


def load_runtime(settings: Settings) -> Runtime:
    """Load every configured model; one model failing never stops the others."""
    device = registry.resolve_device(settings.device)
    wanted = settings.preload or registry.default_preload(settings.models_dir)
    runtime = Runtime(settings, device, stores=Stores.from_settings(settings))
    for model_id in dict.fromkeys(wanted):
        try:
            model = registry.load(model_id, settings.models_dir, device=device)
            runtime.models[model_id] = model
            # computed once here (hashing weights, reading package versions), not per job; jobs and fan-out
            # helpers read the same provenance and key
            prov = embedding_provenance(model.provenance(), device)
            runtime.embedding_provenances[model_id] = prov
            runtime.embedding_keys[model_id] = embedding_key(prov)
            log.info("loaded model %s on %s", model_id, device)
        except Exception as exc:  # noqa: BLE001 - report, keep the others
            runtime.unavailable[model_id] = str(exc)
            log.warning("model %s unavailable: %s", model_id, exc)
    for model_id in registry.SPECS:
        if model_id not in runtime.models and model_id not in runtime.unavailable:
            status = registry.availability(model_id, settings.models_dir)
            runtime.unavailable[model_id] = status.reason or "not in SOUNDCHECK_PRELOAD"
    return runtime


_current: Runtime | None = None


def set_runtime(runtime: Runtime) -> None:
    global _current
    _current = runtime


def get_runtime(settings: Settings) -> Runtime:
    """The worker's runtime; a process that was not started as a soundcheck worker loads one lazily."""
    global _current
    if _current is None:
        _current = load_runtime(settings)
    return _current
