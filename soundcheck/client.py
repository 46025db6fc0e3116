"""Python client for the soundcheck api (httpx; sync :class:`Client` and async :class:`AsyncClient`).

    from soundcheck.client import Client
    with Client("http://127.0.0.1:8000") as sc:
        ref = sc.upload("real/")           # a directory, a zip, or audio files
        cand = sc.upload("generated/")
        job = sc.evaluate(ref.id, cand.id, embedding="mel", metrics=["fad", "kad"])
        print(job.result["metrics"]["fad"]["value"])

This module is the light install (``pip install soundcheck``: httpx, pydantic, rich): it imports nothing of the
service (no numpy, redis, torch). Requests are retried by :class:`~soundcheck.retry.RetryPolicy` (see there
for what is safe to repeat); uploads stream from disk with an optional ``on_upload_progress(sent, total)``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from soundcheck._client_support import (  # re-exported names users import from here
    AUDIO_SUFFIXES as AUDIO_SUFFIXES,
)
from soundcheck._client_support import CAPTIONS_CSV as CAPTIONS_CSV
from soundcheck._client_support import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from soundcheck._client_support import (
    DEFAULT_URL,
    DatasetRef,
    UploadProgress,
    _apoll,
    _comparison_body,
    _job_body,
    _local,
    _Paths,
    _poll,
    _provenance,
    _raise_for_problem,
    _runs_path,
    _timeout,
    _unreachable,
    _upload_data,
)
from soundcheck._client_support import LABELS_CSV as LABELS_CSV
from soundcheck._client_support import TERMINAL as TERMINAL
from soundcheck._client_support import ServiceUnreachable as ServiceUnreachable
from soundcheck._client_support import SoundcheckError as SoundcheckError
from soundcheck._client_support import pack_directory as pack_directory
from soundcheck.background import BACKGROUND_RETRY, AsyncSubmission, Submission, Submitter, describe, log, log_retry
from soundcheck.comparespec import ComparisonView
from soundcheck.jobspec import DatasetView, JobView, ReferenceView, RunSummary, RunView
from soundcheck.results import EvaluationResult, job_result
from soundcheck.retry import Attempts, RetryPolicy


class Client:
    """Synchronous client. ``token`` is sent as a bearer token when the server requires one.

    ``timeout`` is a float (seconds to wait for the api; connecting gets at most 10 s) or an ``httpx.Timeout``;
    ``retry`` bounds the retries (attempts and total time), ``RetryPolicy(attempts=1)`` turns them off.
    Background submissions (``submit(..., run=...)``) retry by ``background_retry`` (default: ten minutes per
    job) and, with ``raise_errors``, re-raise a failure at the next ``submit``, ``flush`` or ``close``."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float | httpx.Timeout = 600.0,
                 retry: RetryPolicy | None = None, background_retry: RetryPolicy | None = None,
                 raise_errors: bool = False) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry = retry or RetryPolicy()
        self.background_retry, self.raise_errors = background_retry or BACKGROUND_RETRY, raise_errors
        self._submitter = Submitter()
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=_timeout(timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits for background submissions (at most ``background_retry.max_elapsed_s``), then closes."""
        if not self._submitter.flush(self.background_retry.max_elapsed_s):
            log.error("soundcheck: closing with %d background submission(s) not sent", self._submitter.pending())
        self._http.close()
        self._raise_background()

    def _raise_background(self) -> None:
        if self.raise_errors and (failure := self._submitter.pop_failure()) is not None:
            raise failure

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the background submissions made so far; False if some are still pending after ``timeout``."""
        done = self._submitter.flush(timeout)
        self._raise_background()
        return done

    def _request(self, method: str, path: str, *, idempotent: bool | None = None, retry: bool = True,
                 policy: RetryPolicy | None = None, on_retry: Callable[[str, float], None] | None = None,
                 **kwargs: Any) -> httpx.Response:
        policy = policy or (self.retry if retry else RetryPolicy(attempts=1))
        attempts = Attempts(policy, method in ("GET", "HEAD", "DELETE") if idempotent is None else idempotent)
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if (delay := attempts.after_error(exc)) is None:
                    raise _unreachable(str(self._http.base_url).rstrip("/"), method, path, attempts, exc) from exc
                if on_retry is not None:
                    on_retry(f"{type(exc).__name__}: {exc}", delay)
            else:
                if (delay := attempts.after_response(response)) is None:
                    return response
                if on_retry is not None:
                    on_retry(f"HTTP {response.status_code}", delay)
                response.close()
            time.sleep(delay)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        _raise_for_problem(response)
        return None if response.status_code == 204 else response.json()

    def health(self, retry: bool = True) -> dict[str, Any]:
        """The api's health; ``retry=False`` asks once (a quick "is anything running?")."""
        return self._json("GET", "/v1/health", retry=retry)

    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/models")

    def upload(self, *sources: str | os.PathLike[str], on_invalid: str = "reject", name: str | None = None,
               on_upload_progress: UploadProgress | None = None) -> DatasetView:
        """Upload directories (zipped on the fly to a temp file), zip files or audio files as one dataset.

        ``name`` (default: the first source's name) is a label for people; the id depends on content only, so a
        repeated upload is harmless and is retried like a GET. ``on_upload_progress(sent, total)`` gets bytes."""
        with _Paths(sources, on_upload_progress) as parts:
            body = self._json("POST", "/v1/datasets", files=parts, data=_upload_data(sources, on_invalid, name),
                              idempotent=True)
        return DatasetView.model_validate(body)

    def register(self, server_path: str) -> DatasetView:
        body = self._json("POST", "/v1/datasets/register", json={"path": server_path}, idempotent=True)
        return DatasetView.model_validate(body)

    def dataset(self, dataset_id: str, include_files: bool = False) -> DatasetView:
        params = {"include_files": str(include_files).lower()}
        return DatasetView.model_validate(self._json("GET", f"/v1/datasets/{dataset_id}", params=params))

    def datasets(self, limit: int = 100) -> list[DatasetView]:
        return [DatasetView.model_validate(d) for d in self._json("GET", "/v1/datasets", params={"limit": limit})]

    def delete_dataset(self, dataset_id: str) -> None:
        self._json("DELETE", f"/v1/datasets/{dataset_id}")

    def set_captions(self, dataset_id: str, captions: dict[str, str]) -> DatasetView:
        """Replace the captions of a dataset's files (name -> caption); the dataset id does not change."""
        body = self._json("PUT", f"/v1/datasets/{dataset_id}/captions", json={"captions": captions}, idempotent=True)
        return DatasetView.model_validate(body)

    def submit(self, reference: DatasetRef, candidate: DatasetRef, embedding: str = "mel",
               metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None, run: str | None = None,
               step: int | None = None, tags: Sequence[str] | None = None,
               background: bool | None = None) -> JobView | Submission:
        """Queue a job. A dataset may be an id or a local path (uploaded first). With ``run`` (or
        ``background=True``) it returns a :class:`~soundcheck.background.Submission` at once and a thread sends
        it: a training loop never waits on the api nor sees its failures (logged; ``handle.result()`` raises
        them). Keep the files of a path until ``handle.submitted()``. An invalid request raises here at once."""
        _job_body("0", "0", embedding, metrics, options, run, step, tags)  # a mistake raises now, not later
        if not (run is not None if background is None else background):
            ref, cand = (self._dataset_ref(d) for d in (reference, candidate))
            body = _job_body(ref, cand, embedding, metrics, options, run, step, tags)
            return JobView.model_validate(self._json("POST", "/v1/jobs", json=body))
        self._raise_background()
        handle = Submission(run, step, lambda job_id, left: self.wait(job_id, timeout_s=left))
        hook = log_retry(describe(run, step))

        def send() -> JobView:
            ref, cand = (self._dataset_ref(d, hook) for d in (reference, candidate))
            body = _job_body(ref, cand, embedding, metrics, options, run, step, tags)
            return JobView.model_validate(self._json("POST", "/v1/jobs", json=body, policy=self.background_retry,
                                                     on_retry=hook))

        self._submitter.put(send, handle)
        return handle

    def _dataset_ref(self, source: DatasetRef | dict[str, str],
                     on_retry: Callable[[str, float], None] | None = None) -> Any:
        path = _local(source)
        if path is None:
            return source if isinstance(source, dict) else str(source)  # an id, or {"imported": id}
        with _Paths([path]) as parts:
            body = self._json("POST", "/v1/datasets", files=parts, data=_upload_data([path], "reject", None),
                              idempotent=True, policy=self.background_retry if on_retry else None, on_retry=on_retry)
        return DatasetView.model_validate(body).id

    def runs(self, limit: int = 100) -> list[RunSummary]:
        return [RunSummary.model_validate(r) for r in self._json("GET", "/v1/runs", params={"limit": limit})]

    def run(self, name: str) -> RunView:
        """A run's series: every job sorted by step with each metric's value and interval."""
        return RunView.model_validate(self._json("GET", _runs_path(name)))

    def job(self, job_id: str) -> JobView:
        return JobView.model_validate(self._json("GET", f"/v1/jobs/{job_id}"))

    def result(self, job_id: str) -> EvaluationResult:
        """The job's result, typed (one model per metric: ``.metrics["ndb"].bin_files``); empty while it runs."""
        return job_result(self.job(job_id))

    def jobs(self, limit: int = 50) -> list[JobView]:
        return [JobView.model_validate(j) for j in self._json("GET", "/v1/jobs", params={"limit": limit})]

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(self._json("DELETE", f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, poll_s: float = 0.5, timeout_s: float | None = None,
             on_progress: Callable[[JobView], None] | None = None) -> JobView:
        return _poll(lambda: self.job(job_id), f"job {job_id}", poll_s, timeout_s, on_progress)

    def evaluate(self, reference: str | dict[str, str], candidate: str, embedding: str = "mel",
                 metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                 **wait_kwargs: Any) -> JobView:
        """Submit and wait; the finished (or failed) job view. ``reference``: a dataset id, or
        ``{"imported": "<id>"}`` for imported statistics (FAD family only)."""
        return self.wait(self.submit(reference, candidate, embedding, metrics, options).id, **wait_kwargs)

    # --- comparisons (POST/GET /v1/comparisons) ---
    def submit_comparison(self, reference: str, candidates: Sequence[str], embedding: str = "mel",
                          metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                          labels: Sequence[str] | None = None) -> ComparisonView:
        body = _comparison_body(reference, candidates, embedding, metrics, options, labels)
        return ComparisonView.model_validate(self._json("POST", "/v1/comparisons", json=body))

    def comparison(self, comparison_id: str) -> ComparisonView:
        return ComparisonView.model_validate(self._json("GET", f"/v1/comparisons/{comparison_id}"))

    def comparisons(self, limit: int = 50) -> list[ComparisonView]:
        return [ComparisonView.model_validate(c) for c in self._json("GET", "/v1/comparisons", params={"limit": limit})]

    def wait_comparison(self, comparison_id: str, poll_s: float = 0.5, timeout_s: float | None = None,
                        on_progress: Callable[[ComparisonView], None] | None = None) -> ComparisonView:
        return _poll(lambda: self.comparison(comparison_id), f"comparison {comparison_id}", poll_s, timeout_s,
                     on_progress)

    def compare(self, reference: str, candidates: Sequence[str], embedding: str = "mel",
                metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                labels: Sequence[str] | None = None, **wait_kwargs: Any) -> ComparisonView:
        """Submit a comparison and wait; the finished (or failed) view."""
        view = self.submit_comparison(reference, candidates, embedding, metrics, options, labels)
        return self.wait_comparison(view.id, **wait_kwargs)

    # --- references brought from elsewhere (issue 10.5) -------------------------------------------------------
    def references(self) -> list[ReferenceView]:
        return [ReferenceView.model_validate(r) for r in self._json("GET", "/v1/references")]

    def import_reference(self, npz: str | os.PathLike[str], embedding: str, **declared: Any) -> ReferenceView:
        """Import fadtk (``mu``, ``cov``) or stable-audio-metrics (``mu_ref``, ``sigma_ref``) statistics.
        ``declared``: model, sample_rate, source, declared_by, n_frames, n_files, note (as the importer says)."""
        path, data = Path(npz), {"provenance": _provenance(embedding, declared)}
        with path.open("rb") as handle:
            body = self._json("POST", "/v1/references/import", files={"file": (path.name, handle)}, data=data,
                              idempotent=True)
        return ReferenceView.model_validate(body)

    def export_reference(self, ref_id: str, target: str | os.PathLike[str] | None = None,
                         layout: str = "fadtk") -> bytes:
        """The reference's mean and covariance as an npz in ``layout`` (fadtk or stable-audio-metrics); written
        to ``target`` too when given."""
        response = self._request("GET", f"/v1/references/{ref_id}/export", params={"layout": layout})
        _raise_for_problem(response)
        if target is not None:
            Path(target).write_bytes(response.content)
        return response.content


class AsyncClient:
    """Asynchronous twin of :class:`Client` for event-loop code (training loops, notebooks): the same methods,
    arguments and results (tests/unit/test_light_client.py checks it), awaited."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float | httpx.Timeout = 600.0,
                 retry: RetryPolicy | None = None, background_retry: RetryPolicy | None = None,
                 raise_errors: bool = False) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry = retry or RetryPolicy()
        self.background_retry, self.raise_errors = background_retry or BACKGROUND_RETRY, raise_errors
        self._pending: set[asyncio.Task[Any]] = set()
        self._failures: list[BaseException] = []
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=_timeout(timeout))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Waits for background submissions (at most ``background_retry.max_elapsed_s``), then closes."""
        if not await self._drain(self.background_retry.max_elapsed_s):
            log.error("soundcheck: closing with %d background submission(s) not sent", len(self._pending))
            for task in self._pending:
                task.cancel()
        await self._http.aclose()
        self._raise_background()

    def _raise_background(self) -> None:
        if self.raise_errors and self._failures:
            raise self._failures.pop(0)

    async def _drain(self, timeout: float | None) -> bool:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
        return not self._pending

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for the background submissions made so far; False if some are still pending after ``timeout``."""
        done = await self._drain(timeout)
        self._raise_background()
        return done

    async def _request(self, method: str, path: str, *, idempotent: bool | None = None, retry: bool = True,
                       policy: RetryPolicy | None = None, on_retry: Callable[[str, float], None] | None = None,
                       **kwargs: Any) -> httpx.Response:
        policy = policy or (self.retry if retry else RetryPolicy(attempts=1))
        attempts = Attempts(policy, method in ("GET", "HEAD", "DELETE") if idempotent is None else idempotent)
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if (delay := attempts.after_error(exc)) is None:
                    raise _unreachable(str(self._http.base_url).rstrip("/"), method, path, attempts, exc) from exc
                if on_retry is not None:
                    on_retry(f"{type(exc).__name__}: {exc}", delay)
            else:
                if (delay := attempts.after_response(response)) is None:
                    return response
                if on_retry is not None:
                    on_retry(f"HTTP {response.status_code}", delay)
                await response.aclose()
            await asyncio.sleep(delay)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        _raise_for_problem(response)
        return None if response.status_code == 204 else response.json()

    async def health(self, retry: bool = True) -> dict[str, Any]:
        return await self._json("GET", "/v1/health", retry=retry)

    async def models(self) -> list[dict[str, Any]]:
        return await self._json("GET", "/v1/models")

    async def upload(self, *sources: str | os.PathLike[str], on_invalid: str = "reject", name: str | None = None,
                     on_upload_progress: UploadProgress | None = None) -> DatasetView:
        paths = _Paths(sources, on_upload_progress)
        parts = await asyncio.to_thread(paths.__enter__)  # zipping a directory takes a while: off the event loop
        try:  # the 64 KiB chunk reads stay on the loop (a page-cache read each; a thread hop would cost more)
            body = await self._json("POST", "/v1/datasets", files=parts,
                                    data=_upload_data(sources, on_invalid, name), idempotent=True)
        finally:
            paths.__exit__(None, None, None)
        return DatasetView.model_validate(body)

    async def register(self, server_path: str) -> DatasetView:
        body = await self._json("POST", "/v1/datasets/register", json={"path": server_path}, idempotent=True)
        return DatasetView.model_validate(body)

    async def set_captions(self, dataset_id: str, captions: dict[str, str]) -> DatasetView:
        body = await self._json("PUT", f"/v1/datasets/{dataset_id}/captions", json={"captions": captions},
                                idempotent=True)
        return DatasetView.model_validate(body)

    async def dataset(self, dataset_id: str, include_files: bool = False) -> DatasetView:
        params = {"include_files": str(include_files).lower()}
        return DatasetView.model_validate(await self._json("GET", f"/v1/datasets/{dataset_id}", params=params))

    async def datasets(self, limit: int = 100) -> list[DatasetView]:
        body = await self._json("GET", "/v1/datasets", params={"limit": limit})
        return [DatasetView.model_validate(d) for d in body]

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._json("DELETE", f"/v1/datasets/{dataset_id}")

    async def submit(self, reference: DatasetRef, candidate: DatasetRef, embedding: str = "mel",
                     metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                     run: str | None = None, step: int | None = None, tags: Sequence[str] | None = None,
                     background: bool | None = None) -> JobView | AsyncSubmission:
        """As :meth:`Client.submit`; a background submission is a task of the running loop (``await
        handle.result()``), sent concurrently with the caller."""
        _job_body("0", "0", embedding, metrics, options, run, step, tags)
        if not (run is not None if background is None else background):
            ref, cand = [await self._dataset_ref(d) for d in (reference, candidate)]
            body = _job_body(ref, cand, embedding, metrics, options, run, step, tags)
            return JobView.model_validate(await self._json("POST", "/v1/jobs", json=body))
        self._raise_background()
        handle = AsyncSubmission(run, step, lambda job_id, left: self.wait(job_id, timeout_s=left))
        hook = log_retry(describe(run, step))

        async def send() -> None:
            try:
                ref, cand = [await self._dataset_ref(d, hook) for d in (reference, candidate)]
                body = _job_body(ref, cand, embedding, metrics, options, run, step, tags)
                view = JobView.model_validate(await self._json("POST", "/v1/jobs", json=body,
                                                               policy=self.background_retry, on_retry=hook))
            except Exception as exc:  # never into the caller's loop: logged, kept on the handle
                log.error("soundcheck: %s could not be submitted: %s", describe(run, step), exc)
                self._failures.append(exc)
                handle._settle(None, exc)
            else:
                handle._settle(view, None)

        handle._task = task = asyncio.get_running_loop().create_task(send())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return handle

    async def _dataset_ref(self, source: DatasetRef | dict[str, str],
                     on_retry: Callable[[str, float], None] | None = None) -> Any:
        path = _local(source)
        if path is None:
            return source if isinstance(source, dict) else str(source)  # an id, or {"imported": id}
        paths = _Paths([path])
        parts = await asyncio.to_thread(paths.__enter__)
        try:
            body = await self._json("POST", "/v1/datasets", files=parts, data=_upload_data([path], "reject", None),
                                    idempotent=True, policy=self.background_retry if on_retry else None,
                                    on_retry=on_retry)
        finally:
            paths.__exit__(None, None, None)
        return DatasetView.model_validate(body).id

    async def runs(self, limit: int = 100) -> list[RunSummary]:
        return [RunSummary.model_validate(r) for r in await self._json("GET", "/v1/runs", params={"limit": limit})]

    async def run(self, name: str) -> RunView:
        """A run's series: every job sorted by step with each metric's value and interval."""
        return RunView.model_validate(await self._json("GET", _runs_path(name)))

    async def job(self, job_id: str) -> JobView:
        return JobView.model_validate(await self._json("GET", f"/v1/jobs/{job_id}"))

    async def result(self, job_id: str) -> EvaluationResult:
        """The job's result, typed (as :meth:`Client.result`)."""
        return job_result(await self.job(job_id))

    async def jobs(self, limit: int = 50) -> list[JobView]:
        return [JobView.model_validate(j) for j in await self._json("GET", "/v1/jobs", params={"limit": limit})]

    async def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(await self._json("DELETE", f"/v1/jobs/{job_id}"))

    async def wait(self, job_id: str, poll_s: float = 0.5, timeout_s: float | None = None,
                   on_progress: Callable[[JobView], Any] | None = None) -> JobView:
        """``on_progress`` may be a plain function or a coroutine function."""
        return await _apoll(lambda: self.job(job_id), f"job {job_id}", poll_s, timeout_s, on_progress)

    async def evaluate(self, reference: str | dict[str, str], candidate: str, embedding: str = "mel",
                       metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                       **wait_kwargs: Any) -> JobView:
        """Submit and wait; the finished (or failed) job view."""
        return await self.wait((await self.submit(reference, candidate, embedding, metrics, options)).id,
                               **wait_kwargs)


    # --- comparisons (POST/GET /v1/comparisons) ---
    async def submit_comparison(self, reference: str, candidates: Sequence[str], embedding: str = "mel",
                                metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                                labels: Sequence[str] | None = None) -> ComparisonView:
        body = _comparison_body(reference, candidates, embedding, metrics, options, labels)
        return ComparisonView.model_validate(await self._json("POST", "/v1/comparisons", json=body))

    async def comparison(self, comparison_id: str) -> ComparisonView:
        return ComparisonView.model_validate(await self._json("GET", f"/v1/comparisons/{comparison_id}"))

    async def comparisons(self, limit: int = 50) -> list[ComparisonView]:
        return [ComparisonView.model_validate(c)
                for c in await self._json("GET", "/v1/comparisons", params={"limit": limit})]

    async def wait_comparison(self, comparison_id: str, poll_s: float = 0.5, timeout_s: float | None = None,
                              on_progress: Callable[[ComparisonView], Any] | None = None) -> ComparisonView:
        return await _apoll(lambda: self.comparison(comparison_id), f"comparison {comparison_id}", poll_s,
                            timeout_s, on_progress)

    async def compare(self, reference: str, candidates: Sequence[str], embedding: str = "mel",
                      metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                      labels: Sequence[str] | None = None, **wait_kwargs: Any) -> ComparisonView:
        """Submit a comparison and wait; the finished (or failed) view."""
        view = await self.submit_comparison(reference, candidates, embedding, metrics, options, labels)
        return await self.wait_comparison(view.id, **wait_kwargs)

    # --- references brought from elsewhere (issue 10.5): as Client's ------------------------------------------
    async def references(self) -> list[ReferenceView]:
        return [ReferenceView.model_validate(r) for r in await self._json("GET", "/v1/references")]

    async def import_reference(self, npz: str | os.PathLike[str], embedding: str, **declared: Any) -> ReferenceView:
        path, data = Path(npz), {"provenance": _provenance(embedding, declared)}
        content = await asyncio.to_thread(path.read_bytes)
        body = await self._json("POST", "/v1/references/import", files={"file": (path.name, content)}, data=data,
                                idempotent=True)
        return ReferenceView.model_validate(body)

    async def export_reference(self, ref_id: str, target: str | os.PathLike[str] | None = None,
                               layout: str = "fadtk") -> bytes:
        response = await self._request("GET", f"/v1/references/{ref_id}/export", params={"layout": layout})
        _raise_for_problem(response)
        if target is not None:
            await asyncio.to_thread(Path(target).write_bytes, response.content)
        return response.content
