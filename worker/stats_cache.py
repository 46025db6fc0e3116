"""Reference statistics in Redis (Gaussian stats, NDB bins): get / lock / put, keyed by provenance only.

Keys come from soundcheck.provenance; values are numpy bytes (no pickle). A lock keeps two workers
from embedding the same reference at once; a waiter then reuses what the holder cached. The lock lives
only as long as its holder: a short TTL that a thread of the holder keeps refreshing, so a killed worker's
lock lapses within ``LOCK_TTL_S`` instead of blocking the reference for an hour.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from soundcheck import stats_lru
from soundcheck.settings import get_settings

STATS_KEY = "sc:stats:{}"
LOCK_KEY = "sc:lock:{}"
#: Seconds a lock outlives its holder's last refresh (the holder refreshes every third of it).
LOCK_TTL_S = 30.0
log = logging.getLogger("soundcheck.worker")


class StatsCache:
    def __init__(self, redis: Redis, lock_timeout_s: float = LOCK_TTL_S) -> None:
        self.redis = redis
        self.lock_timeout_s = lock_timeout_s

    #: Byte bound of all cached statistics (None: SOUNDCHECK_STATS_CACHE_MAX_BYTES).
    max_bytes: int | None = None

    def get(self, key: str) -> bytes | None:
        """The cached value, marked as used now (least recently used ones are evicted first)."""
        return stats_lru.get(self.redis, STATS_KEY.format(key))

    def put(self, key: str, value: bytes) -> None:
        """Store, then evict the least recently used statistics beyond the byte bound."""
        bound = self.max_bytes if self.max_bytes is not None else get_settings().stats_cache_max_bytes
        stats_lru.put(self.redis, STATS_KEY.format(key), value, bound)

    @contextmanager
    def lock(self, key: str, wait_s: float = 600.0, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
        """Hold the compute lock of ``key``; yields False if another worker held it past ``wait_s``.

        ``on_wait`` runs about once a second while waiting (progress, cancellation checks)."""
        # thread_local=False: the refresher thread must see the token the holding thread took
        lock = self.redis.lock(LOCK_KEY.format(key), timeout=self.lock_timeout_s, blocking_timeout=1.0,
                               thread_local=False)
        deadline = time.monotonic() + wait_s
        acquired = bool(lock.acquire())
        while not acquired and time.monotonic() < deadline:
            if on_wait is not None:
                on_wait()
            acquired = bool(lock.acquire())
        stop = threading.Event()
        refresher = None
        if acquired:
            refresher = threading.Thread(target=_keep_lock, args=(lock, self.lock_timeout_s / 3, stop),
                                         name="soundcheck-lock", daemon=True)
            refresher.start()
        try:
            yield acquired
        finally:
            if refresher is not None:
                stop.set()
                refresher.join(timeout=5)
            if acquired:
                with contextlib.suppress(LockError):  # an expired lock needs no release
                    lock.release()


def _keep_lock(lock: Lock, every_s: float, stop: threading.Event) -> None:
    """Reset the lock's TTL while its holder lives (the thread dies with the process, and so does the lock)."""
    while not stop.wait(every_s):
        try:
            lock.reacquire()
        except LockError:
            log.warning("lock %s lapsed while held (Redis unreachable for %.0f s?)", lock.name, every_s * 3)
            return
        except RedisError as exc:  # a blip: the next refresh may get through before the TTL runs out
            log.warning("could not refresh lock %s: %s", lock.name, exc)
