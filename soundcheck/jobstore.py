"""Job records in Redis: the one place where a job's state, progress, result and error live.

RQ carries the work; this record is what the api shows. Records and results have no expiry, so a job is
never lost. Reading a record is one round trip and never writes: the workers keep records true (a worker
that died is noticed by the others through RQ's heartbeats, see ``worker.gpu_worker``), not the api.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from soundcheck.jobspec import JobCreate, JobView, Progress, RunSummary, RunView
from soundcheck.runs import build_run

JOB_KEY = "sc:job:{}"
RESULT_KEY = "sc:result:{}"
JOB_INDEX = "sc:jobs"
#: Ids of jobs neither finished nor failed: what the workers' maintenance reconciles with RQ.
OPEN_JOBS = "sc:jobs:open"
#: Why each earlier attempt of a job ended (a list, oldest first); shown in the result or the error.
ATTEMPTS_KEY = "sc:attempts:{}"
TERMINAL = ("finished", "failed")
#: Field of RQ's worker hash where a soundcheck worker lists the models it loaded.
WORKER_MODELS_FIELD = "soundcheck"
#: Set by DELETE /v1/jobs/{id}; a running job's cancel watch polls it.
CANCEL_KEY = "sc:cancel:{}"
CANCELED = "canceled on request"
#: Runs (a job's ``spec.run``/``spec.step``): the job ids of a run scored by step; the distinct steps of a run
#: (member and score the step, so ZCARD counts steps); every run scored by its last update (a job submitted or
#: ended). Prefixes differ ("runjobs", "runsteps") because a run name may contain ':'.
RUN_JOBS_KEY = "sc:runjobs:{}"
RUN_STEPS_KEY = "sc:runsteps:{}"
RUN_INDEX = "sc:runs"
#: One worker at a time runs a maintenance task (per queue, or "jobs"); the key expires, it is never released.
MAINTENANCE_KEY = "sc:maintenance:{}"


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


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class JobStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(self, job_id: str, spec: JobCreate, pipeline: Pipeline | None = None) -> JobView:
        """Write a new record; with ``pipeline`` the caller executes it (with the RQ enqueue, atomically)."""
        view = JobView(id=job_id, status="queued", spec=spec, progress=Progress(), created_at=_now())
        pipe = pipeline if pipeline is not None else self.redis.pipeline()
        pipe.set(JOB_KEY.format(job_id), view.model_dump_json(exclude={"result"}, by_alias=True))
        pipe.zadd(JOB_INDEX, {job_id: view.created_at.timestamp()})  # type: ignore[union-attr]
        pipe.sadd(OPEN_JOBS, job_id)
        if spec.run is not None and spec.step is not None:  # in the same MULTI: a run never lists a lost job
            pipe.zadd(RUN_JOBS_KEY.format(spec.run), {job_id: spec.step})
            pipe.zadd(RUN_STEPS_KEY.format(spec.run), {str(spec.step): spec.step})
            pipe.zadd(RUN_INDEX, {spec.run: view.created_at.timestamp()})  # type: ignore[union-attr]
        if pipeline is None:
            pipe.execute()
        return view

    def get(self, job_id: str, with_result: bool = True) -> JobView | None:
        """The record (and the result of a finished job): one read, no write. A record or result that cannot be
        read shows as a failed job that says why."""
        if not with_result:
            raw = self.redis.get(JOB_KEY.format(job_id))
            return read_record(job_id, raw) if raw is not None else None
        raw, result = self.redis.mget(JOB_KEY.format(job_id), RESULT_KEY.format(job_id))
        if raw is None:
            return None
        view = read_record(job_id, raw)
        if view.status == "finished":  # the result is written before the record turns finished
            try:
                view.result = json.loads(result) if result else None
            except (ValueError, UnicodeDecodeError) as exc:
                return view.model_copy(update={"status": "failed", "result": None, "error": (
                    f"the stored result of this job cannot be read ({_reason(exc)}); submit the job again")})
        return view

    def get_json(self, job_id: str) -> bytes | None:
        """The JobView of GET /v1/jobs/{id} as JSON bytes, spliced from the stored record and result without
        parsing either into models (a finished job's result can be large): one MGET, no write."""
        raw, result = self.redis.mget(JOB_KEY.format(job_id), RESULT_KEY.format(job_id))
        if raw is None:
            return None
        try:  # the record is small: validating it is cheap; the result is spliced in unparsed
            view = JobView.model_validate_json(raw)
            if view.status == "finished" and result is not None:
                json.loads(result)  # a corrupt result must not reach a client as a broken body
        except (ValueError, UnicodeDecodeError):  # pydantic's ValidationError is a ValueError
            view = self.get(job_id)
            return view.model_dump_json().encode() if view is not None else None
        finished = view.status == "finished" and result is not None
        return raw.rstrip()[:-1] + b',"result":' + (result if finished else b"null") + b"}"

    def get_many(self, job_ids: list[str]) -> list[JobView]:
        """Records without results, in the order asked, missing ones left out: one MGET."""
        if not job_ids:
            return []
        raws = self.redis.mget([JOB_KEY.format(i) for i in job_ids])
        return [read_record(i, r) for i, r in zip(job_ids, raws, strict=True) if r is not None]

    def _update(self, job_id: str, change: Callable[[JobView], dict[str, Any]] | None = None,
                when: Callable[[JobView], bool] | None = None, **fields: Any) -> JobView | None:
        """Atomic read-modify-write (WATCH/MULTI); a finished or failed record never changes again, so a
        late progress write or a reconciliation can never overwrite the final state. Returns the new view,
        or None when nothing was written."""
        key = JOB_KEY.format(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    view = JobView.model_validate_json(raw)
                    if view.status in TERMINAL or (when is not None and not when(view)):
                        return None
                    new = view.model_copy(update={**(change(view) if change else {}), **fields})
                    pipe.multi()
                    pipe.set(key, new.model_dump_json(exclude={"result"}, by_alias=True))
                    if new.status in TERMINAL:
                        pipe.srem(OPEN_JOBS, job_id)
                        if new.spec is not None and new.spec.run is not None:  # the run's last update
                            pipe.zadd(RUN_INDEX, {new.spec.run: _now().timestamp()})
                    pipe.execute()
                    return new
                except WatchError:
                    continue

    def start(self, job_id: str, worker: str) -> JobView | None:
        """A new attempt begins; None when the record is gone or already final (nothing to run)."""
        return self._update(job_id, lambda v: {"attempts": v.attempts + 1}, status="running", started_at=_now(),
                            worker=worker, progress=Progress(stage="starting"))

    def requeue(self, job_id: str, reason: str) -> JobView | None:
        """An attempt ended without a result and the job goes back to the queue; ``reason`` is kept."""
        self.redis.rpush(ATTEMPTS_KEY.format(job_id), reason)
        return self._update(job_id, status="queued", worker=None,
                            progress=Progress(stage=f"queued again: {reason}"))

    def attempt_notes(self, job_id: str) -> list[str]:
        return [_text(n) for n in self.redis.lrange(ATTEMPTS_KEY.format(job_id), 0, -1)]

    @staticmethod
    def _owned_by(attempt: int | None) -> Callable[[JobView], bool]:
        """With ``attempt``: only while that attempt is the running one (an attempt taken for dead must not
        write over the one that replaced it); without: any unfinished record."""
        def current(view: JobView) -> bool:
            return attempt is None or (view.status == "running" and view.attempts == attempt)
        return current

    def progress(self, job_id: str, done: int, total: int, stage: str, attempt: int | None = None) -> bool:
        """Write progress; False when nothing was written: the job ended, or (with ``attempt``) another attempt
        took it over."""
        return self._update(job_id, when=self._owned_by(attempt),
                            progress=Progress(done=done, total=total, stage=stage)) is not None

    def finish(self, job_id: str, result: dict[str, Any], attempt: int | None = None) -> bool:
        """Store the result and mark the record finished (with ``attempt``: only if that attempt still owns it)."""
        view = self.get(job_id, with_result=False)
        if view is None or view.status in TERMINAL or not self._owned_by(attempt)(view):
            return False  # never overwrite the result of the attempt that replaced this one
        self.redis.set(RESULT_KEY.format(job_id), json.dumps(result, allow_nan=False))
        return self._update(job_id, lambda v: {"progress": v.progress.model_copy(update={"stage": "finished"})},
                            when=self._owned_by(attempt), status="finished", ended_at=_now()) is not None

    def fail(self, job_id: str, error: str, attempt: int | None = None) -> bool:
        return self._update(job_id, lambda v: {"progress": v.progress.model_copy(update={"stage": "failed"})},
                            when=self._owned_by(attempt), status="failed", ended_at=_now(), error=error) is not None

    def list(self, limit: int = 50, offset: int = 0) -> list[JobView]:
        """The newest records without results (skipping ``offset``): two round trips whatever ``limit`` is."""
        return self.get_many([_text(i) for i in self.redis.zrevrange(JOB_INDEX, offset, offset + limit - 1)])

    def count(self) -> int:
        return int(self.redis.zcard(JOB_INDEX))

    def open_ids(self) -> list[str]:
        return [_text(i) for i in self.redis.smembers(OPEN_JOBS)]

    def runs(self, limit: int = 100) -> list[RunSummary]:
        """Runs, most recently updated first: two round trips whatever ``limit`` is."""
        named = self.redis.zrevrange(RUN_INDEX, 0, limit - 1, withscores=True)
        pipe = self.redis.pipeline(transaction=False)
        for name, _ in named:
            pipe.zcard(RUN_STEPS_KEY.format(_text(name)))
            pipe.zrange(RUN_STEPS_KEY.format(_text(name)), -1, -1, withscores=True)
        answers = pipe.execute()
        return [RunSummary(name=_text(name), steps=count, last_step=int(last[0][1]) if last else None,
                           updated_at=datetime.fromtimestamp(score, UTC))
                for (name, score), count, last in zip(named, answers[::2], answers[1::2], strict=True)]

    @staticmethod
    def forget_in_run(pipe: Pipeline, redis: Redis, spec: JobCreate | None, job_id: str) -> None:
        """Queue on ``pipe`` the removal of a deleted job from its run: its step goes when no other job of the
        run has it, the run when it has no job left (gc removes expired jobs; the run must not count them)."""
        if spec is None or spec.run is None or spec.step is None:
            return
        key = RUN_JOBS_KEY.format(spec.run)
        others = [_text(i) for i in redis.zrangebyscore(key, spec.step, spec.step)]
        pipe.zrem(key, job_id)
        if not set(others) - {job_id}:
            pipe.zrem(RUN_STEPS_KEY.format(spec.run), str(spec.step))
        if redis.zcard(key) - (redis.zscore(key, job_id) is not None) == 0:  # it was the run's last job
            pipe.delete(key, RUN_STEPS_KEY.format(spec.run))
            pipe.zrem(RUN_INDEX, spec.run)

    def run_first_spec(self, name: str) -> JobCreate | None:
        """The request of the run's earliest job still stored (what a new job of the run must agree with)."""
        for job_id in self.redis.zrange(RUN_JOBS_KEY.format(name), 0, 9):
            view = self.get(_text(job_id), with_result=False)
            if view is not None and view.spec is not None:
                return view.spec
        return None

    def run(self, name: str) -> RunView | None:
        """Every job of a run with its result summarised (None: no such run); jobs removed by gc are left out.
        Three round trips; the results are read whole, so a run of very many steps costs their size."""
        score = self.redis.zscore(RUN_INDEX, name)
        if score is None:
            return None
        members = [(_text(i), int(step)) for i, step in self.redis.zrange(RUN_JOBS_KEY.format(name), 0, -1,
                                                                        withscores=True)]
        keys = [k for job_id, _ in members for k in (JOB_KEY.format(job_id), RESULT_KEY.format(job_id))]
        raws = self.redis.mget(keys) if keys else []
        views: list[tuple[JobView, int]] = []
        for (job_id, step), raw, result in zip(members, raws[::2], raws[1::2], strict=True):
            if raw is None:
                continue
            view = read_record(job_id, raw)
            if view.status == "finished":
                try:
                    view.result = json.loads(result) if result else None
                except (ValueError, UnicodeDecodeError):
                    view = view.model_copy(update={"status": "failed", "error": "the stored result cannot be read"})
            views.append((view, step))
        steps = sorted({step for _, step in members})
        summary = RunSummary(name=name, steps=len(steps), last_step=steps[-1] if steps else None,
                             updated_at=datetime.fromtimestamp(score, UTC))
        return build_run(summary, views)
