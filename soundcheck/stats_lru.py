"""A byte bound on cached statistics in Redis: sizes and last use of each key, least recently used evicted.

Reference statistics and NDB bins (``sc:stats:*``, written by worker/stats_cache.py) are only a cache: any
evicted entry is recomputed from the per-file embeddings. The bookkeeping sits outside that key pattern:
``sc:stats-lru`` (sorted set key → last use, seconds), ``sc:stats-sizes`` (hash key → bytes) and
``sc:stats-bytes`` (their sum). Writes and evictions run as one Lua script, so concurrent workers keep the
three consistent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

LRU_KEY = "sc:stats-lru"
SIZES_KEY = "sc:stats-sizes"
TOTAL_KEY = "sc:stats-bytes"
#: The cached values themselves (the format worker/stats_cache.py writes).
VALUE_PATTERN = "sc:stats:*"

_EVICT = """
local function evict(total, max, keep)
  local evicted, freed = 0, 0
  while total > max do
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
    if #oldest == 0 or oldest[1] == keep then break end
    local size = tonumber(redis.call('HGET', KEYS[2], oldest[1]) or '0')
    redis.call('DEL', oldest[1])
    redis.call('ZREM', KEYS[1], oldest[1])
    redis.call('HDEL', KEYS[2], oldest[1])
    total = redis.call('INCRBY', KEYS[3], -size)
    evicted = evicted + 1
    freed = freed + size
  end
  return {evicted, freed}
end
"""

#: KEYS: lru, sizes, total, value key; ARGV: value, now, max bytes → {evicted, bytes freed}
_PUT = _EVICT + """
local size = string.len(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[2], KEYS[4]) or '0')
redis.call('SET', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[2], KEYS[4], size)
redis.call('ZADD', KEYS[1], ARGV[2], KEYS[4])
local total = redis.call('INCRBY', KEYS[3], size - old)
return evict(total, tonumber(ARGV[3]), KEYS[4])
"""

#: KEYS: lru, sizes, total; ARGV: max bytes → {evicted, bytes freed}
_ENFORCE = _EVICT + """
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
return evict(total, tonumber(ARGV[1]), false)
"""


@dataclass
class Evicted:
    count: int = 0
    bytes: int = 0


def put(redis: Redis, key: str, value: bytes, max_bytes: int) -> Evicted:
    """Store ``value`` under ``key`` (a full Redis key), then evict the least recently used beyond the bound;
    the entry just written is never evicted (the bound is exceeded by at most that one entry)."""
    count, freed = redis.eval(_PUT, 4, LRU_KEY, SIZES_KEY, TOTAL_KEY, key, value, time.time(), max_bytes)
    return Evicted(int(count), int(freed))


def get(redis: Redis, key: str) -> bytes | None:
    """The value, marking it as used now."""
    pipe = redis.pipeline()
    pipe.get(key)
    pipe.zadd(LRU_KEY, {key: time.time()}, xx=True)
    return pipe.execute()[0]


def enforce(redis: Redis, max_bytes: int) -> Evicted:
    """Index keys written before the bound existed (as least recently used), drop bookkeeping of keys
    that are gone, recount, and evict down to ``max_bytes``."""
    tracked = {k.decode() if isinstance(k, bytes) else k for k in redis.hkeys(SIZES_KEY)}
    for raw in redis.scan_iter(match=VALUE_PATTERN, count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        if key not in tracked:
            size = redis.strlen(key)
            pipe = redis.pipeline()
            pipe.hset(SIZES_KEY, key, size)
            pipe.zadd(LRU_KEY, {key: 0}, nx=True)
            pipe.execute()
    for key in tracked:
        if not redis.exists(key):
            pipe = redis.pipeline()
            pipe.hdel(SIZES_KEY, key)
            pipe.zrem(LRU_KEY, key)
            pipe.execute()
    total = sum(int(v) for v in redis.hvals(SIZES_KEY))
    redis.set(TOTAL_KEY, total)
    count, freed = redis.eval(_ENFORCE, 3, LRU_KEY, SIZES_KEY, TOTAL_KEY, max_bytes)
    return Evicted(int(count), int(freed))


def total_bytes(redis: Redis) -> int:
    return int(redis.get(TOTAL_KEY) or 0)
