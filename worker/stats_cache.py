"""Reference statistics in Redis (Gaussian stats, NDB bins): get / lock / put, keyed by provenance only.

Keys come from soundcheck.provenance; values are numpy bytes (no pickle). A lock keeps two workers
from embedding the same reference at once; a waiter then reuses what the holder cached.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError

from soundcheck import stats_lru
from soundcheck.settings import get_settings

STATS_KEY = "sc:stats:{}"
LOCK_KEY = "sc:lock:{}"


class StatsCache:
    def __init__(self, redis: Redis, lock_timeout_s: int = 3600) -> None:
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
        lock = self.redis.lock(LOCK_KEY.format(key), timeout=self.lock_timeout_s, blocking_timeout=1.0)
        deadline = time.monotonic() + wait_s
        acquired = bool(lock.acquire())
        while not acquired and time.monotonic() < deadline:
            if on_wait is not None:
                on_wait()
            acquired = bool(lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(LockError):  # an expired lock needs no release
                    lock.release()
