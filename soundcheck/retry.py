"""When the client retries a request, and how long it waits: pure decisions, no IO (shared by sync and async).

Retrying is safe only where a second try cannot do the work twice. A request that never left (connect error,
no free connection) and the answers 429 and 503 (the api did not process it) are retried for every method;
a broken connection after sending, a read timeout, 502 and 504 only for idempotent requests (GET, DELETE,
and the content-addressed uploads, whose repeat yields the same dataset id), never for ``POST /v1/jobs``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

#: Answers that say "not processed, try again later" (RFC 9110 15.6.4, RFC 6585 4): safe for any method.
NOT_PROCESSED = frozenset({429, 503})
#: Gateway answers: the request may or may not have reached the api, so only idempotent requests repeat.
GATEWAY = frozenset({502, 504})
#: Transport errors raised before any byte of the request was sent.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. ``attempts=1`` turns retrying off."""

    attempts: int = 6  #: tries in all, the first included
    max_elapsed_s: float = 120.0  #: no new try starts (and no wait is begun) past this time since the first
    backoff_s: float = 0.5  #: first wait after an error without Retry-After; doubles with each try
    max_backoff_s: float = 30.0  #: cap of one such wait
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.max_elapsed_s < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("max_elapsed_s, backoff_s and max_backoff_s must not be negative")

    def backoff(self, retry: int) -> float:
        """Exponential backoff with "equal jitter": half the step fixed, half random, so clients spread out."""
        step = min(self.max_backoff_s, self.backoff_s * 2.0**retry)
        return step / 2 + self.rng.uniform(0, step / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retryable_error(exc: Exception, idempotent: bool) -> bool:
    return isinstance(exc, NOT_SENT) or (idempotent and isinstance(exc, httpx.TransportError))


def retryable_status(status: int, idempotent: bool) -> bool:
    return status in NOT_PROCESSED or (idempotent and status in GATEWAY)


class Attempts:
    """The retry state of one logical request: call :meth:`after_error` / :meth:`after_response` after each try;
    a float is the seconds to sleep before the next one, None means stop (raise the error / return the answer)."""

    def __init__(self, policy: RetryPolicy, idempotent: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.idempotent, self._clock = policy, idempotent, clock
        self.started = clock()
        self.tries = 0
        self.gave_up_because = ""

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started

    def _wait(self, delay: float) -> float | None:
        if self.tries >= self.policy.attempts:
            self.gave_up_because = f"{self.tries} attempts made"
            return None
        if self.elapsed_s + delay > self.policy.max_elapsed_s:
            self.gave_up_because = (f"waiting {delay:.1f} s more would pass the {self.policy.max_elapsed_s:g} s "
                                    "retry budget")
            return None
        return delay

    def after_error(self, exc: Exception) -> float | None:
        self.tries += 1
        if not retryable_error(exc, self.idempotent):
            self.gave_up_because = "the request may already have been processed, so it is not repeated"
            return None
        return self._wait(self.policy.backoff(self.tries - 1))

    def after_response(self, response: httpx.Response) -> float | None:
        self.tries += 1
        if not retryable_status(response.status_code, self.idempotent):
            return None
        hinted = parse_retry_after(response.headers.get("Retry-After"))
        return self._wait(self.policy.backoff(self.tries - 1) if hinted is None else hinted)
