"""Comparison records in Redis: state, progress, result and error of POST /v1/comparisons.

Kept apart from job records (their own keys and index), so a comparison never shows in the job list and the
job maintenance never touches it. The write methods have the signatures the worker's ``Reporter`` calls on a
``JobStore`` (``progress``, ``get(with_result=False)``, ``redis``), so one progress reporter serves both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from soundcheck.comparespec import ComparisonCreate, ComparisonResult, ComparisonView
from soundcheck.jobspec import Progress
from soundcheck.jobstore import TERMINAL

COMPARISON_KEY = "sc:comparison:{}"
COMPARISON_RESULT_KEY = "sc:comparison-result:{}"
COMPARISON_INDEX = "sc:comparisons"


def _now() -> datetime:
    return datetime.now(UTC)


class ComparisonStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(self, comparison_id: str, spec: ComparisonCreate, pipeline: Pipeline | None = None) -> ComparisonView:
        view = ComparisonView(id=comparison_id, status="queued", spec=spec, progress=Progress(), created_at=_now())
        pipe = pipeline if pipeline is not None else self.redis.pipeline()
        pipe.set(COMPARISON_KEY.format(comparison_id), view.model_dump_json(exclude={"result"}))
        pipe.zadd(COMPARISON_INDEX, {comparison_id: view.created_at.timestamp()})  # type: ignore[union-attr]
        if pipeline is None:
            pipe.execute()
        return view

    def get(self, comparison_id: str, with_result: bool = True) -> ComparisonView | None:
        raw, result = self.redis.mget(COMPARISON_KEY.format(comparison_id), COMPARISON_RESULT_KEY.format(comparison_id))
        if raw is None:
            return None
        view = read_view(comparison_id, raw)
        if with_result and view.status == "finished" and result is not None:
            try:
                view = view.model_copy(update={"result": ComparisonResult.model_validate_json(result)})
            except (ValidationError, ValueError) as exc:
                view = _unreadable(comparison_id, f"its stored result cannot be read ({type(exc).__name__})")
        return view

    def list(self, limit: int = 50) -> list[ComparisonView]:
        ids = [i.decode() if isinstance(i, bytes) else i for i in self.redis.zrevrange(COMPARISON_INDEX, 0, limit - 1)]
        raws = self.redis.mget([COMPARISON_KEY.format(i) for i in ids]) if ids else []
        return [read_view(i, r) for i, r in zip(ids, raws, strict=True) if r is not None]

    def open_ids(self, limit: int = 500) -> list[str]:
        """Recent comparisons not finished or failed (for the workers' maintenance)."""
        return [v.id for v in self.list(limit) if v.status not in TERMINAL]

    def _update(self, comparison_id: str, change: Callable[[ComparisonView], dict[str, Any]] | None = None,
                **fields: Any) -> ComparisonView | None:
        """Atomic read-modify-write; a finished or failed record never changes again."""
        key = COMPARISON_KEY.format(comparison_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    view = ComparisonView.model_validate_json(raw)
                    if view.status in TERMINAL:
                        return None
                    new = view.model_copy(update={**(change(view) if change else {}), **fields})
                    pipe.multi()
                    pipe.set(key, new.model_dump_json(exclude={"result"}))
                    pipe.execute()
                    return new
                except WatchError:
                    continue

    def start(self, comparison_id: str, worker: str) -> ComparisonView | None:
        return self._update(comparison_id, status="running", started_at=_now(), worker=worker,
                            progress=Progress(stage="starting"))

    def progress(self, comparison_id: str, done: int, total: int, stage: str, attempt: int | None = None) -> bool:
        return self._update(comparison_id, progress=Progress(done=done, total=total, stage=stage)) is not None

    def finish(self, comparison_id: str, result: dict[str, Any]) -> bool:
        self.redis.set(COMPARISON_RESULT_KEY.format(comparison_id), json.dumps(result, allow_nan=False))
        return self._update(comparison_id, lambda v: {"progress": v.progress.model_copy(update={"stage": "finished"})},
                            status="finished", ended_at=_now()) is not None

    def fail(self, comparison_id: str, error: str) -> bool:
        return self._update(comparison_id, lambda v: {"progress": v.progress.model_copy(update={"stage": "failed"})},
                            status="failed", ended_at=_now(), error=error) is not None


def _unreadable(comparison_id: str, why: str) -> ComparisonView:
    return ComparisonView(id=comparison_id, status="failed", spec=None, progress=Progress(stage="failed"),
                          error=f"the comparison record cannot be used: {why}; submit the comparison again")


def read_view(comparison_id: str, raw: bytes | str) -> ComparisonView:
    """A stored record, or a failed view saying why it cannot be read (never an exception: GET answers)."""
    try:
        return ComparisonView.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        return _unreadable(comparison_id, f"it is not a comparison record this version can read ({type(exc).__name__})")
