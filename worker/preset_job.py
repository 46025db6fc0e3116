"""A preset job: one ordinary embedding evaluation per number of the peer's table, labelled as the peer names it.

Each part is a normal job spec (soundcheck.presets.part_specs), so every part uses the caches (embeddings,
reference statistics and terms) as a plain job would: the second part on the same model reads the candidate's
embeddings from the disk cache instead of running the model again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from soundcheck.evaluation import MetricInputError, failed_metric
from soundcheck.jobspec import JobCreate
from soundcheck.presets import PRESETS, PresetMetric, part_specs

#: Runs one part: (part spec) -> (embedding provenance, evaluate_embeddings-shaped part result).
RunPart = Callable[[JobCreate], tuple[dict[str, Any], dict[str, Any]]]


def run_preset(spec: JobCreate, run_part: RunPart, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fill ``result`` (metrics, diagnostics, warnings, timing) with every part of ``spec.preset``; returns the
    provenance of each model used. A part that cannot be computed gets an ``error`` entry (the others stay);
    only when all fail is :class:`MetricInputError` raised."""
    preset = PRESETS[spec.preset]
    result["preset"] = preset.model_dump(mode="json", exclude={"metrics"}) | {
        "metrics": [pm.model_dump(mode="json") for pm in preset.metrics]}
    provenance: dict[str, dict[str, Any]] = {}
    for pm, part_spec in part_specs(spec):
        try:
            emb_prov, part = run_part(part_spec)
        except MetricInputError as exc:
            result["metrics"][pm.label] = _labelled(pm, failed_metric(pm.metric, str(exc)))
            result["warnings"].append(f"{pm.label} ({pm.title}) was not computed: {exc}")
            continue
        provenance[pm.embedding] = emb_prov
        entry = part.get("metrics", {}).get(pm.metric, failed_metric(pm.metric, "the part gave no value"))
        result["metrics"][pm.label] = _labelled(pm, entry)
        result["diagnostics"][pm.label] = part.get("diagnostics", {})
        result.setdefault("metric_timing_s", {})[pm.label] = sum(part.get("timing_s", {}).values())
        result["warnings"].extend(f"{pm.label}: {w}" for w in part.get("warnings", []))
    if all("error" in e for e in result["metrics"].values()):
        raise MetricInputError("; ".join(f"{label}: {e['error']}" for label, e in result["metrics"].items()))
    return provenance


def _labelled(pm: PresetMetric, entry: dict[str, Any]) -> dict[str, Any]:
    """The metric's entry plus what the peer calls it and how soundcheck computed it."""
    return {**entry, "title": pm.title, "metric": pm.metric, "embedding": pm.embedding,
            "preset_options": pm.options}
