"""GET /v1/metrics: the metric names a job accepts, what each needs, which direction is better, and the options
each one reads with their defaults and limits (generated from the pydantic schema of ``MetricOptions``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter

from soundcheck.jobspec import METRIC_INFO, METRIC_NAMES, MetricOptions, option_use
from soundcheck.results import METRIC_LABELS, PRDC_PARTS, result_fields

router = APIRouter(prefix="/metrics", tags=["metrics"])

_BOUNDS = {"minimum": "min", "exclusiveMinimum": "gt", "maximum": "max", "exclusiveMaximum": "lt",
           "minItems": "min_items", "maxItems": "max_items", "pattern": "pattern", "maxLength": "max_length"}


def _describe(prop: dict[str, Any]) -> dict[str, Any]:
    """Type, default, bounds and description of one JSON-schema property (``X | None`` is ``anyOf``)."""
    variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
    main = variants[0] if variants else {}
    out: dict[str, Any] = {"type": main.get("type", "object"), "nullable": "anyOf" in prop,
                           "default": prop.get("default")}
    if "enum" in main:
        out["choices"] = main["enum"]
    out.update({short: main[key] for key, short in _BOUNDS.items() if key in main})
    if main.get("type") == "array" and isinstance(main.get("items"), dict):
        out["items"] = {short: main["items"][key] for key, short in _BOUNDS.items() if key in main["items"]}
    out["description"] = prop.get("description")
    return out


@lru_cache(maxsize=1)
def option_catalogue() -> dict[str, dict[str, Any]]:
    """``{"options.ndb.k": {...}, "options.bootstrap": {...}}`` for every scalar option of a job."""
    schema = MetricOptions.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    out: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        ref = prop.get("$ref") or next((v["$ref"] for v in prop.get("allOf", []) if "$ref" in v), None)
        if ref is None:
            out[f"options.{name}"] = _describe(prop)
            continue
        for sub, sub_prop in defs[ref.rsplit("/", 1)[-1]]["properties"].items():
            out[f"options.{name}.{sub}"] = _describe(sub_prop)
    return out


@router.get("")
def list_metrics() -> list[dict[str, Any]]:
    """Each metric with ``options``: the job options it reads, each with type, default, bounds, description;
    ``label`` (a short name), ``result_fields`` (of its model in soundcheck.results) and ``parts`` (scored parts,
    each a value with an interval). The dashboard reads its metric names and directions from here."""
    catalogue = option_catalogue()
    return [{"name": name, **METRIC_INFO[name], "label": METRIC_LABELS.get(name, name),
             "result_fields": result_fields(name), "parts": list(PRDC_PARTS) if name == "prdc" else [],
             "options": {path: catalogue[path] for path in catalogue if option_use(path, name)}}
            for name in METRIC_NAMES]
