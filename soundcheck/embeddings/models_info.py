"""A JSON-safe description of every model for `GET /v1/models` and `soundcheck models list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soundcheck.embeddings.registry import OPTIONAL_WEIGHTS, SPECS, availability


def describe_models(model_dir: Path) -> list[dict[str, Any]]:
    out = []
    for spec in SPECS.values():
        status = availability(spec.id, model_dir)
        out.append({
            "id": spec.id,
            "available": status.available,
            "reason": status.reason or None,
            "description": spec.description,
            "paper": spec.paper,
            "sample_rate": spec.sample_rate,
            "frame_s": spec.frame_s,
            "hop_s": spec.hop_s,
            "dim": spec.dim,
            "n_classes": spec.n_classes,
            "packaged_weights": spec.packaged_weights,
            "missing_packages": status.missing_packages,
            "weights": [
                {"name": w.name, "path": w.path, "present": w.present, "sha256": w.sha256,
                 "expected_sha256": w.expected_sha256, "matches": w.matches, "optional": w.name in OPTIONAL_WEIGHTS}
                for w in status.weights
            ],
        })
    return out
