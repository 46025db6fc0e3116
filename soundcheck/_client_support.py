"""What the public clients share: constants, errors, request bodies, polling, and streamed uploads (private:
``soundcheck.client`` is the public API and re-exports what users need)."""

from __future__ import annotations

import asyncio
import inspect
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from soundcheck.comparespec import ComparisonCreate
from soundcheck.jobspec import DeclaredProvenance, JobCreate
from soundcheck.retry import NOT_SENT, Attempts

DEFAULT_URL = "http://127.0.0.1:8000"
#: Copies of soundcheck.datastore's and soundcheck.jobstore's constants (those modules need redis and numpy);
#: tests/unit/test_light_client.py checks that they stay equal.
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".w64", ".caf"}
LABELS_CSV = "labels.csv"
CAPTIONS_CSV = "captions.csv"  # name,caption per file (the CLAP score's prompts)
TERMINAL = ("finished", "failed")
#: Connecting is quick or not happening; reading may wait while the api hashes and decodes a large upload.
CONNECT_TIMEOUT_S = 10.0

UploadProgress = Callable[[int, int], None]


class SoundcheckError(RuntimeError):
    """An error answer of the api (RFC 9457 problem details)."""

    def __init__(self, status: int, title: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.body = status, title, detail, body or {}


class ServiceUnreachable(SoundcheckError):
    """No answer came back (connection refused, broken or timed out), after the retries the policy allows."""

    def __init__(self, message: str) -> None:
        RuntimeError.__init__(self, message)
        self.status, self.title, self.detail, self.body = 0, "Service unreachable", message, {}


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"title": response.reason_phrase, "detail": response.text[:500]}
    if not isinstance(body, dict):
        body = {"title": response.reason_phrase, "detail": str(body)[:500]}
    raise SoundcheckError(response.status_code, body.get("title", ""), body.get("detail", ""), body)


def _unreachable(base_url: str, method: str, path: str, attempts: Attempts, exc: Exception) -> ServiceUnreachable:
    what = type(exc).__name__
    hint = (" It may have been done: look (GET) before sending it again." if not attempts.idempotent and
            not isinstance(exc, NOT_SENT) else " Is the soundcheck api running there (`soundcheck serve`)?")
    return ServiceUnreachable(f"{method} {base_url}{path} got no answer ({what}: {exc}) after {attempts.tries} "
                              f"attempt(s) in {attempts.elapsed_s:.1f} s; stopped because {attempts.gave_up_because}."
                              + hint)


def _audio_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(directory).parts)
        and (p.suffix.lower() in AUDIO_SUFFIXES or p.name in (LABELS_CSV, CAPTIONS_CSV)))


def pack_directory(directory: Path, target: Path) -> Path:
    """Zip a directory (stored, not compressed: audio does not shrink) keeping relative names as labels."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in _audio_files(directory):
            archive.write(path, path.relative_to(directory).as_posix())
    return target


def _job_body(reference: str | dict[str, str], candidate: str, embedding: str, metrics: Sequence[str] | None,
              options: dict[str, Any] | None, run: str | None = None, step: int | None = None,
              tags: Sequence[str] | None = None) -> dict[str, Any]:
    # embedding "preset:<name>" runs a preset (GET /v1/presets), which fixes the models and the metrics
    chosen = {"embedding": embedding} if embedding.startswith("preset:") and metrics is None else {
        "embedding": embedding, "metrics": list(metrics or ["fad"])}
    spec = JobCreate.model_validate({"reference": reference, "candidate": candidate, **chosen,
                                     "options": options or {}, "run": run, "step": step, "tags": list(tags or [])})
    return spec.model_dump(mode="json", by_alias=True, exclude_defaults=False)


#: A dataset given to ``submit`` as a path (not an id) is uploaded first: content-addressed, so repeatable.
DatasetRef = str | os.PathLike[str]


def _local(source: DatasetRef | dict[str, str]) -> Path | None:
    if isinstance(source, dict):  # {"imported": id}: statistics, not a dataset
        return None
    if isinstance(source, os.PathLike) or Path(source).exists():
        return Path(source)
    return None


def _runs_path(name: str) -> str:
    return f"/v1/runs/{name}"  # JobCreate's RUN_NAME pattern keeps names URL-safe


def _comparison_body(reference: str, candidates: Sequence[str], embedding: str, metrics: Sequence[str] | None,
                     options: dict[str, Any] | None, labels: Sequence[str] | None) -> dict[str, Any]:
    """POST /v1/comparisons body, validated here so a bad request fails before it is sent."""
    spec = ComparisonCreate(reference=reference, candidates=list(candidates), embedding=embedding,
                            metrics=list(metrics or ["fad"]), options=options or {},
                            labels=list(labels) if labels else None)
    return spec.model_dump(mode="json", exclude_none=True)


def _poll(fetch: Callable[[], Any], what: str, poll_s: float, timeout_s: float | None,
          on_progress: Callable[[Any], None] | None) -> Any:
    """Fetch a job or comparison view until it is finished or failed (``TimeoutError`` after ``timeout_s``)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        view = fetch()
        if on_progress is not None:
            on_progress(view)
        if view.status in TERMINAL:
            return view
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {view.status} after {timeout_s} s")
        time.sleep(poll_s)


async def _apoll(fetch: Callable[[], Any], what: str, poll_s: float, timeout_s: float | None,
                 on_progress: Callable[[Any], Any] | None) -> Any:
    """:func:`_poll` for the event loop; ``on_progress`` may be a plain function or a coroutine function."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        view = await fetch()
        if on_progress is not None and inspect.isawaitable(shown := on_progress(view)):
            await shown
        if view.status in TERMINAL:
            return view
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {view.status} after {timeout_s} s")
        await asyncio.sleep(poll_s)


def _provenance(embedding: str, declared: dict[str, Any]) -> str:
    """The declared-provenance form field of POST /v1/references/import (checked here first, as jobs are)."""
    return DeclaredProvenance(embedding=embedding, **declared).model_dump_json(exclude_none=True)


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_S, timeout))


class _Counted:
    """A file read in chunks by httpx's multipart stream, reporting bytes read; a rewind (a retry) restarts."""

    def __init__(self, handle: BinaryIO, report: Callable[[], None]) -> None:
        self._handle, self._report, self.sent = handle, report, 0

    def fileno(self) -> int:
        return self._handle.fileno()

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._handle.seek(offset, whence)
        self.sent = position
        return position

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self.sent += len(chunk)
        if chunk:
            self._report()
        return chunk


class _Paths:
    """Turns what a user points at (directory, zip, files) into multipart parts that stream from disk."""

    def __init__(self, sources: Iterable[str | os.PathLike[str]], on_progress: UploadProgress | None = None) -> None:
        self.sources = [Path(s) for s in sources]
        self.on_progress = on_progress
        self._stack = ExitStack()
        self._counted: list[_Counted] = []
        self.total = 0

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(sum(c.sent for c in self._counted), self.total)

    def __enter__(self) -> list[tuple[str, tuple[str, Any, str]]]:
        if not self.sources:
            raise ValueError("upload needs at least one directory, zip or audio file")
        parts = []
        try:
            for src in self.sources:
                if src.is_dir():
                    tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory())) / f"{src.name or 'data'}.zip"
                    src = pack_directory(src, tmp)
                elif not src.is_file():
                    raise FileNotFoundError(f"{src} is neither a file nor a directory")
                handle = self._stack.enter_context(open(src, "rb"))
                self.total += os.fstat(handle.fileno()).st_size
                counted = _Counted(handle, self._report)
                self._counted.append(counted)
                parts.append(("files", (src.name, counted, "application/octet-stream")))
        except BaseException:
            self._stack.close()
            raise
        return parts

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _upload_data(sources: Sequence[str | os.PathLike[str]], on_invalid: str, name: str | None) -> dict[str, str]:
    return {"on_invalid": on_invalid, "name": name or (Path(sources[0]).resolve().name if sources else "data")}
