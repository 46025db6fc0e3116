"""Embedding models: a registry of ids and weight files, lazily imported implementations."""

from soundcheck.embeddings.base import Availability, Embedded, EmbeddingModel, ModelSpec, WeightFile
from soundcheck.embeddings.registry import SPECS, ModelUnavailable, availability, default_preload, load

__all__ = [
    "SPECS", "Availability", "Embedded", "EmbeddingModel", "ModelSpec", "ModelUnavailable", "WeightFile",
    "availability", "default_preload", "load",
]
