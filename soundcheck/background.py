"""Background submission for training loops: ``Client.submit(..., run=..., step=...)`` returns a handle at once
and a thread (``AsyncClient``: a task) uploads and posts the job, retrying while the api cannot be reached.

Why a queue and not a plain call: a training step must never wait on, or fail because of, the evaluation
service. A failure to reach it is logged and retried (``soundcheck.retry`` decides what is safe to repeat: a
POST that may have been processed is never sent twice); a submission that finally fails is logged and kept on
its handle, and raised into the caller only when asked (``handle.result()``, or ``Client(raise_errors=True)``,
which re-raises it at the next ``submit``/``flush``/``close``). Light: stdlib only, no service imports.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from soundcheck.jobspec import JobView
from soundcheck.retry import RetryPolicy

log = logging.getLogger("soundcheck.client")
#: Keep trying through an api restart or a short outage: ten minutes per submission, waits up to 30 s.
BACKGROUND_RETRY = RetryPolicy(attempts=100_000, max_elapsed_s=600.0, backoff_s=1.0, max_backoff_s=30.0)


def describe(run: str | None, step: int | None) -> str:
    return f"run {run!r} step {step}" if run is not None else "background job"


def log_retry(what: str) -> Callable[[str, float], None]:
    """The ``on_retry`` hook of a background request: one warning per failed try, with the wait."""
    def hook(reason: str, delay: float) -> None:
        log.warning("soundcheck: %s not submitted yet (%s); retrying in %.1f s", what, reason, delay)
    return hook


class Submission:
    """Handle of a job submitted in the background by :meth:`soundcheck.client.Client.submit`.

    ``job`` is the queued job's view once the api accepted it, ``error`` the exception that ended a failed
    submission; :meth:`result` waits for the finished job (and raises that error)."""

    def __init__(self, run: str | None, step: int | None, wait: Callable[[str, float | None], JobView]) -> None:
        self.run, self.step = run, step
        self.job: JobView | None = None
        self.error: BaseException | None = None
        self._wait = wait
        self._settled = threading.Event()

    @property
    def job_id(self) -> str | None:
        return self.job.id if self.job is not None else None

    def submitted(self, timeout: float | None = 0) -> bool:
        """Whether the submission ended (accepted or failed), waiting up to ``timeout`` seconds for it."""
        return self._settled.wait(timeout)

    def result(self, timeout: float | None = None) -> JobView:
        """The finished (or failed) job, waiting at most ``timeout`` seconds in all; raises the submission's
        error if it could not be submitted, TimeoutError if it is not done in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._settled.wait(timeout):
            raise TimeoutError(f"{describe(self.run, self.step)} not submitted after {timeout} s (is the api "
                               "reachable? failures are logged by the 'soundcheck.client' logger)")
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return self._wait(self.job.id, None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _settle(self, job: JobView | None, error: BaseException | None) -> None:
        self.job, self.error = job, error
        self._settled.set()

    def __repr__(self) -> str:
        state = f"job {self.job_id}" if self.job else f"failed: {self.error}" if self.error else "pending"
        return f"<Submission {describe(self.run, self.step)}: {state}>"


class Submitter:
    """One daemon thread sending submissions in order (a training loop's checkpoints stay in step order)."""

    def __init__(self) -> None:
        self._items: list[tuple[Callable[[], JobView], Submission]] = []
        self._cond = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self.failures: list[BaseException] = []

    def put(self, send: Callable[[], JobView], handle: Submission) -> None:
        with self._cond:
            self._items.append((send, handle))
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="soundcheck-submit", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items:
                    if not self._cond.wait(timeout=30) and not self._items:
                        self._thread = None  # idle: the thread ends, the next put starts another
                        return
                send, handle = self._items.pop(0)
            try:
                handle._settle(send(), None)
            except Exception as exc:  # never into the training loop: logged, kept on the handle
                log.error("soundcheck: %s could not be submitted: %s", describe(handle.run, handle.step), exc)
                handle._settle(None, exc)
                with self._cond:
                    self.failures.append(exc)
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return self._busy

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submission so far ended; False if some are still pending after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def pop_failure(self) -> BaseException | None:
        with self._cond:
            return self.failures.pop(0) if self.failures else None


class AsyncSubmission(Submission):
    """:class:`Submission` of :class:`soundcheck.client.AsyncClient`: :meth:`result` is awaited."""

    def __init__(self, run: str | None, step: int | None,
                 wait: Callable[[str, float | None], Awaitable[JobView]]) -> None:
        super().__init__(run, step, wait)  # type: ignore[arg-type]
        self._async_wait = wait
        self._task: asyncio.Task[Any] | None = None

    async def result(self, timeout: float | None = None) -> JobView:  # type: ignore[override]
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._task is not None and not self._task.done():
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                raise TimeoutError(f"{describe(self.run, self.step)} not submitted after {timeout} s (is the api "
                                   "reachable? failures are logged by the 'soundcheck.client' logger)")
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return await self._async_wait(self.job.id, None if deadline is None else max(0.0, deadline - time.monotonic()))
