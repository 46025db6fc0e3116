"""At most N unfinished jobs per client (token fingerprint, or IP without tokens).

One Redis sorted set per client holds the ids of the jobs it posted (score: time). A POST counts the members whose
job record is still queued or running, in one MGET, and drops the rest; the check and the reservation are one
WATCH/MULTI transaction, so parallel POSTs cannot overshoot. Nothing has to remember to decrement a counter when a
job ends: a finished, failed, canceled or vanished job simply stops counting. A job whose worker died is retried
or failed by the live workers' maintenance (soundcheck.queueing), so a dead worker cannot lock a client out for
longer than its attempts take.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from soundcheck.jobspec import JobView
from soundcheck.jobstore import JOB_KEY, TERMINAL
from soundcheck.settings import Settings

QUOTA_KEY = "sc:quota:{}"
#: A slot is reserved before the job record exists; a reservation older than this (a crashed api) is dropped.
RESERVATION_TTL_S = 60.0
PENDING = "pending:"
#: What a 429 tells the client to wait: jobs take seconds to hours, polling every half minute is plenty.
RETRY_AFTER_S = 30


class QuotaExceeded(Exception):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"this client already has {active} unfinished jobs (queued or running), the limit of "
                         f"SOUNDCHECK_MAX_ACTIVE_JOBS_PER_CLIENT={limit}; wait for some to finish or cancel some "
                         "(DELETE /v1/jobs/{id}), then retry")
        self.retry_after = RETRY_AFTER_S


def _split(pipe: Pipeline | Redis, members: list[tuple[bytes, float]], now: float) -> tuple[list[str], list[bytes]]:
    """(active job ids and reservations, members to drop) from the job records."""
    ids = [m.decode() for m, _ in members]
    jobs = [i for i in ids if not i.startswith(PENDING)]
    records = dict(zip(jobs, pipe.mget([JOB_KEY.format(j) for j in jobs]), strict=True)) if jobs else {}
    active: list[str] = []
    stale: list[bytes] = []
    for (member, score), job_id in zip(members, ids, strict=True):
        if job_id.startswith(PENDING):
            alive = now - score < RESERVATION_TTL_S
        else:
            raw = records.get(job_id)
            alive = raw is not None and json.loads(raw).get("status") not in TERMINAL
        if alive:
            active.append(job_id)
        else:
            stale.append(member)
    return active, stale


def reserve(redis: Redis, client: str, limit: int) -> str:
    """A reservation id in the client's set, or :class:`QuotaExceeded` with the set pruned of ended jobs."""
    key = QUOTA_KEY.format(client)
    reservation = f"{PENDING}{uuid.uuid4().hex}"
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                now = time.time()
                active, stale = _split(pipe, pipe.zrange(key, 0, -1, withscores=True), now)
                pipe.multi()
                if stale:
                    pipe.zrem(key, *stale)
                if len(active) < limit:
                    pipe.zadd(key, {reservation: now})
                pipe.execute()
                if len(active) >= limit:
                    raise QuotaExceeded(len(active), limit)
                return reservation
            except WatchError:
                continue


def admit(redis: Redis, settings: Settings, client: str, create: Callable[[], JobView]) -> JobView:
    """Run ``create`` (which enqueues the job) inside the client's quota."""
    limit = settings.max_active_jobs_per_client
    if limit <= 0:
        return create()
    key = QUOTA_KEY.format(client)
    reservation = reserve(redis, client, limit)
    try:
        view = create()
    except BaseException:
        redis.zrem(key, reservation)
        raise
    pipe = redis.pipeline()
    pipe.zrem(key, reservation)
    pipe.zadd(key, {view.id: time.time()})
    pipe.execute()
    return view
