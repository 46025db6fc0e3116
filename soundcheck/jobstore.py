"""Job records in Redis: the one place where a job's state, progress, result and error live.

RQ carries the work; this record is what the api shows. Records and results have no expiry, so a job is
never lost, and the api reconciles a record with RQ when a worker died without saying so.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from redis import Redis
from redis.exceptions import WatchError

from soundcheck.jobspec import JobCreate, JobView, Progress

JOB_KEY = "sc:job:{}"
RESULT_KEY = "sc:result:{}"
JOB_INDEX = "sc:jobs"
TERMINAL = ("finished", "failed")
#: Field of RQ's worker hash where a soundcheck worker lists the models it loaded.
WORKER_MODELS_FIELD = "soundcheck"
#: Liveness key of a worker, refreshed by a thread; gone = the worker died.
ALIVE_KEY = "sc:alive:{}"
ALIVE_TTL_S = 12
#: Set by DELETE /v1/jobs/{id}; a running job checks it at every progress update.
CANCEL_KEY = "sc:cancel:{}"
CANCELED = "canceled on request"


def _now() -> datetime:
    return datetime.now(UTC)


def _reason(exc: Exception, limit: int = 300) -> str:
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors())
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


def read_record(job_id: str, raw: bytes | str) -> JobView:
    """Parse a stored job record, tolerating records this version cannot read (an older schema, corruption).

    A record whose request no longer validates keeps its state and result with ``spec`` None (an unfinished
    one is shown failed: no worker can run it); a record that is not a job at all shows as failed. Never raises,
    so one bad record cannot turn a job list into a 500.
    """
    try:
        return JobView.model_validate_json(raw)
    except ValidationError as exc:
        first: Exception = exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        data, first = None, exc
    if isinstance(data, dict) and "spec" in data:
        try:
            view = JobView.model_validate({**data, "id": job_id, "spec": None})
        except ValidationError:
            pass
        else:
            note = f"the stored job request cannot be read by this version ({_reason(first)})"
            if view.status in TERMINAL:
                return view.model_copy(update={"error": f"{view.error}; {note}" if view.error else note})
            return view.model_copy(update={"status": "failed", "error": f"{note}; submit the job again",
                                           "progress": view.progress.model_copy(update={"stage": "failed"})})
    created = data.get("created_at") if isinstance(data, dict) else None
    try:
        created_at = TypeAdapter(datetime).validate_python(created) if created is not None else None
    except ValidationError:
        created_at = None
    return JobView(id=job_id, status="failed", spec=None, progress=Progress(stage="failed"), created_at=created_at,
                   error=f"the stored job record cannot be read ({_reason(first)}); submit the job again")


class JobStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(self, job_id: str, spec: JobCreate) -> JobView:
        view = JobView(id=job_id, status="queued", spec=spec, progress=Progress(), created_at=_now())
        pipe = self.redis.pipeline()
        pipe.set(JOB_KEY.format(job_id), view.model_dump_json(exclude={"result"}))
        pipe.zadd(JOB_INDEX, {job_id: view.created_at.timestamp()})  # type: ignore[union-attr]
        pipe.execute()
        return view

    def get(self, job_id: str, with_result: bool = True) -> JobView | None:
        """The job's view; a record or result that cannot be read shows as a failed job that says why."""
        raw = self.redis.get(JOB_KEY.format(job_id))
        if raw is None:
            return None
        view = read_record(job_id, raw)
        if with_result and view.status == "finished":
            result = self.redis.get(RESULT_KEY.format(job_id))
            try:
                view.result = json.loads(result) if result else None
            except (ValueError, UnicodeDecodeError) as exc:
                return view.model_copy(update={"status": "failed", "result": None, "error": (
                    f"the stored result of this job cannot be read ({_reason(exc)}); submit the job again")})
        return view

    def _update(self, job_id: str, **fields: Any) -> bool:
        """Atomic read-modify-write (WATCH/MULTI); a finished or failed record never changes again, so a
        late progress write or a reconciliation can never overwrite the final state."""
        key = JOB_KEY.format(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return False
                    view = JobView.model_validate_json(raw)
                    if view.status in TERMINAL:
                        return False
                    pipe.multi()
                    pipe.set(key, view.model_copy(update=fields).model_dump_json(exclude={"result"}))
                    pipe.execute()
                    return True
                except WatchError:
                    continue

    def start(self, job_id: str, worker: str) -> None:
        self._update(job_id, status="running", started_at=_now(), worker=worker,
                     progress=Progress(stage="starting"))

    def progress(self, job_id: str, done: int, total: int, stage: str) -> None:
        self._update(job_id, progress=Progress(done=done, total=total, stage=stage))

    def finish(self, job_id: str, result: dict[str, Any]) -> None:
        self.redis.set(RESULT_KEY.format(job_id), json.dumps(result, allow_nan=False))
        view = self.get(job_id, with_result=False)
        progress = view.progress.model_copy(update={"stage": "finished"}) if view else Progress(stage="finished")
        self._update(job_id, status="finished", ended_at=_now(), progress=progress)

    def fail(self, job_id: str, error: str) -> None:
        view = self.get(job_id, with_result=False)
        progress = view.progress.model_copy(update={"stage": "failed"}) if view else Progress(stage="failed")
        self._update(job_id, status="failed", ended_at=_now(), error=error, progress=progress)

    def list(self, limit: int = 50) -> list[JobView]:
        ids = self.redis.zrevrange(JOB_INDEX, 0, limit - 1)
        views = [self.get(i.decode(errors="replace") if isinstance(i, bytes) else i, with_result=False) for i in ids]
        return [v for v in views if v is not None]
