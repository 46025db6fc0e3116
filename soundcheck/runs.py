"""Runs: a training run's jobs as series over steps. Pure functions from job views and results to the typed
:class:`~soundcheck.jobspec.RunView`; the Redis side (which jobs belong to which run) is in soundcheck.jobstore.

Light on purpose (no numpy, no redis): the api builds a run's series from stored results on each read, and the
client and CLI share the same models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from soundcheck.jobspec import JobView, RunMetric, RunPoint, RunSummary, RunView


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _metric(entry: Mapping[str, Any]) -> RunMetric:
    interval = entry.get("interval") if isinstance(entry.get("interval"), dict) else {}
    return RunMetric(value=_number(entry.get("value")), low=_number(interval.get("low")),
                     high=_number(interval.get("high")), confidence=_number(interval.get("level")),
                     error=entry.get("error") if isinstance(entry.get("error"), str) else None)


def run_metrics(result: Mapping[str, Any] | None) -> dict[str, RunMetric]:
    """Each metric of a job result as value and interval. A metric whose entry has no value of its own but
    scored parts (prdc's precision, recall, density, coverage, each ``{"value", "interval"}``) gives one series
    per part, named ``metric.part``, as the CLI's result table names them."""
    metrics = (result or {}).get("metrics") or {}
    out: dict[str, RunMetric] = {}
    for name, entry in metrics.items():
        if not isinstance(entry, dict):
            continue
        parts = ({k: v for k, v in entry.items() if isinstance(v, dict) and "value" in v}
                 if entry.get("value") is None and not entry.get("error") else None)
        if parts:
            out.update({f"{name}.{part}": _metric(sub) for part, sub in parts.items()})
        else:
            out[name] = _metric(entry)
    return out


def run_point(view: JobView, step: int) -> RunPoint:
    spec = view.spec
    return RunPoint(step=step, job_id=view.id, status=view.status, created_at=view.created_at,
                    ended_at=view.ended_at, tags=list(spec.tags) if spec is not None else [],
                    metrics=run_metrics(view.result) if view.status == "finished" else {}, error=view.error)


def build_run(summary: RunSummary, members: Iterable[tuple[JobView, int]]) -> RunView:
    """The series of a run from its jobs and their steps: sorted by step, then by creation (a step evaluated
    again comes after the earlier job of that step)."""
    def order(point: RunPoint) -> tuple[int, float, str]:
        created = point.created_at.timestamp() if point.created_at is not None else -math.inf
        return point.step, created, point.job_id

    points = sorted((run_point(view, step) for view, step in members), key=order)
    names = list(dict.fromkeys(name for p in points for name in p.metrics))
    return RunView(**summary.model_dump(), metrics=names, points=points)
