"""Python client for the soundcheck api (httpx; sync :class:`Client` and async :class:`AsyncClient`).

    from soundcheck.client import Client
    with Client("http://127.0.0.1:8000") as sc:
        ref = sc.upload("real/")           # a directory, a zip, or audio files
        cand = sc.upload("generated/")
        job = sc.evaluate(ref.id, cand.id, embedding="mel", metrics=["fad", "kad"])
        print(job.result["metrics"]["fad"]["value"])
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from soundcheck.datastore import AUDIO_SUFFIXES, LABELS_CSV
from soundcheck.jobspec import DatasetView, JobCreate, JobView
from soundcheck.jobstore import TERMINAL

DEFAULT_URL = "http://127.0.0.1:8000"


class SoundcheckError(RuntimeError):
    """An error answer of the api (RFC 9457 problem details)."""

    def __init__(self, status: int, title: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.body = status, title, detail, body or {}


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"title": response.reason_phrase, "detail": response.text[:500]}
    raise SoundcheckError(response.status_code, body.get("title", ""), body.get("detail", ""), body)


def _audio_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(directory).parts)
        and (p.suffix.lower() in AUDIO_SUFFIXES or p.name == LABELS_CSV))


def pack_directory(directory: Path, target: Path) -> Path:
    """Zip a directory (stored, not compressed: audio does not shrink) keeping relative names as labels."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in _audio_files(directory):
            archive.write(path, path.relative_to(directory).as_posix())
    return target


def _job_body(reference: str, candidate: str, embedding: str, metrics: Sequence[str] | None,
              options: dict[str, Any] | None) -> dict[str, Any]:
    spec = JobCreate.model_validate({"reference": reference, "candidate": candidate, "embedding": embedding,
                                     "metrics": list(metrics or ["fad"]), "options": options or {}})
    return spec.model_dump(mode="json", by_alias=True, exclude_defaults=False)


class _Paths:
    """Turns what a user points at (directory, zip, files) into multipart parts."""

    def __init__(self, sources: Iterable[str | os.PathLike[str]]) -> None:
        self.sources = [Path(s) for s in sources]
        self._stack = ExitStack()

    def __enter__(self) -> list[tuple[str, tuple[str, Any, str]]]:
        parts = []
        for src in self.sources:
            if src.is_dir():
                tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory())) / f"{src.name or 'data'}.zip"
                src = pack_directory(src, tmp)
            elif not src.is_file():
                raise FileNotFoundError(f"{src} is neither a file nor a directory")
            handle = self._stack.enter_context(open(src, "rb"))
            parts.append(("files", (src.name, handle, "application/octet-stream")))
        return parts

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


class Client:
    """Synchronous client. ``token`` is sent as a bearer token when the server requires one."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for_problem(response)
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/v1/health")

    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/models")

    def upload(self, *sources: str | os.PathLike[str], on_invalid: str = "reject", name: str | None = None
               ) -> DatasetView:
        """Upload directories (zipped on the fly), zip files or audio files as one dataset.

        ``name`` (default: the first source's name) is a label for people; the id depends on content only."""
        with _Paths(sources) as parts:
            data = {"on_invalid": on_invalid, "name": name or Path(sources[0]).resolve().name}
            body = self._json("POST", "/v1/datasets", files=parts, data=data)
        return DatasetView.model_validate(body)

    def register(self, server_path: str) -> DatasetView:
        return DatasetView.model_validate(self._json("POST", "/v1/datasets/register", json={"path": server_path}))

    def dataset(self, dataset_id: str, include_files: bool = False) -> DatasetView:
        params = {"include_files": str(include_files).lower()}
        return DatasetView.model_validate(self._json("GET", f"/v1/datasets/{dataset_id}", params=params))

    def submit(self, reference: str, candidate: str, embedding: str = "mel", metrics: Sequence[str] | None = None,
               options: dict[str, Any] | None = None) -> JobView:
        body = _job_body(reference, candidate, embedding, metrics, options)
        return JobView.model_validate(self._json("POST", "/v1/jobs", json=body))

    def job(self, job_id: str) -> JobView:
        return JobView.model_validate(self._json("GET", f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, poll_s: float = 0.5, timeout_s: float | None = None,
             on_progress: Callable[[JobView], None] | None = None) -> JobView:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            view = self.job(job_id)
            if on_progress is not None:
                on_progress(view)
            if view.status in TERMINAL:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {view.status} after {timeout_s} s")
            time.sleep(poll_s)

    def evaluate(self, reference: str, candidate: str, embedding: str = "mel", metrics: Sequence[str] | None = None,
                 options: dict[str, Any] | None = None, **wait_kwargs: Any) -> JobView:
        """Submit and wait; the finished (or failed) job view."""
        return self.wait(self.submit(reference, candidate, embedding, metrics, options).id, **wait_kwargs)


class AsyncClient:
    """Asynchronous twin of :class:`Client` for event-loop code (training loops, notebooks)."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        _raise_for_problem(response)
        return response.json()

    async def health(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/health")

    async def upload(self, *sources: str | os.PathLike[str], on_invalid: str = "reject", name: str | None = None
                     ) -> DatasetView:
        with _Paths(sources) as parts:
            data = {"on_invalid": on_invalid, "name": name or Path(sources[0]).resolve().name}
            body = await self._json("POST", "/v1/datasets", files=parts, data=data)
        return DatasetView.model_validate(body)

    async def submit(self, reference: str, candidate: str, embedding: str = "mel",
                     metrics: Sequence[str] | None = None, options: dict[str, Any] | None = None) -> JobView:
        body = _job_body(reference, candidate, embedding, metrics, options)
        return JobView.model_validate(await self._json("POST", "/v1/jobs", json=body))

    async def job(self, job_id: str) -> JobView:
        return JobView.model_validate(await self._json("GET", f"/v1/jobs/{job_id}"))

    async def wait(self, job_id: str, poll_s: float = 0.5) -> JobView:
        while (view := await self.job(job_id)).status not in TERMINAL:
            await asyncio.sleep(poll_s)
        return view
