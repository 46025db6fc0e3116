"""The client over real sockets: a scripted HTTP server in a thread (503/429 with Retry-After, 502, a large
streamed upload), a port nobody listens on, and the real service (uvicorn + Redis + worker) for AsyncClient."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from soundcheck.client import AsyncClient, Client, ServiceUnreachable, SoundcheckError
from soundcheck.jobspec import DatasetView, JobView
from soundcheck.retry import RetryPolicy
from soundcheck.serve import Service
from tests.conftest import free_port, make_settings

NOW = "2026-12-01T08:00:00Z"
JOB = {"id": "j1", "status": "queued", "progress": {"done": 0, "total": 0, "stage": "queued"},
       "spec": {"reference": "a", "candidate": "b", "embedding": "mel", "metrics": ["fad"], "options": {}}}
DATASET = {"id": "d1", "source": "upload", "n_files": 1, "total_duration_s": 1.0, "sample_rates": [16000],
           "channels": [1], "created_at": NOW}
FAST = RetryPolicy(attempts=4, backoff_s=0.05, max_elapsed_s=30)


class Scripted:
    """Answers each (method, path) from a list, the last answer repeating; records what arrived and when."""

    def __init__(self) -> None:
        self.plan: dict[tuple[str, str], list[tuple[int, dict[str, str], Any]]] = {}
        self.seen: list[dict[str, Any]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length, received = int(self.headers.get("Content-Length", 0)), 0
                while received < length:  # read (and drop) the body in chunks, as a streaming server does
                    received += len(self.rfile.read(min(1 << 20, length - received)))
                path = self.path.split("?")[0]
                script.seen.append({"method": self.command, "path": path, "length": length, "received": received,
                                    "at": time.monotonic()})
                answers = script.plan[(self.command, path)]
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                if status == 0:  # hang up without an answer, after the request was read
                    self.close_connection = True
                    return
                payload = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names

        return Handler

    def times(self, method: str, path: str) -> list[float]:
        return [s["at"] for s in self.seen if (s["method"], s["path"]) == (method, path)]


@pytest.fixture()
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(5)


def _unavailable(retry_after: str) -> tuple[int, dict[str, str], dict[str, str]]:
    return 503, {"Retry-After": retry_after}, {"title": "Service Unavailable", "detail": "Redis is restarting"}


def test_503_with_retry_after_seconds_is_retried_after_the_wait(scripted: Scripted) -> None:
    scripted.plan[("GET", "/v1/health")] = [_unavailable("1"), _unavailable("1"), (200, {}, {"status": "ok"})]
    with Client(scripted.url, retry=RetryPolicy(attempts=5, backoff_s=0.0)) as sc:
        assert sc.health() == {"status": "ok"}
    times = scripted.times("GET", "/v1/health")
    assert len(times) == 3
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[1:], strict=False))


def test_retry_after_as_an_http_date_is_honoured(scripted: Scripted) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)  # whole seconds: waits 1-2 s
    scripted.plan[("GET", "/v1/jobs/j1")] = [_unavailable(when), (200, {}, JOB)]
    with Client(scripted.url, retry=RetryPolicy(attempts=5, backoff_s=0.0)) as sc:
        view = sc.job("j1")
    assert isinstance(view, JobView) and view.id == "j1"
    first, second = scripted.times("GET", "/v1/jobs/j1")
    assert second - first >= 0.9


def test_a_job_post_is_repeated_after_429_but_not_after_502(scripted: Scripted) -> None:
    scripted.plan[("POST", "/v1/jobs")] = [
        (429, {"Retry-After": "1"}, {"title": "Too Many Requests", "detail": "3 unfinished jobs"}), (202, {}, JOB)]
    with Client(scripted.url, retry=FAST) as sc:
        assert sc.submit("a", "b").status == "queued"
        assert len(scripted.times("POST", "/v1/jobs")) == 2
        scripted.plan[("POST", "/v1/jobs")] = [(502, {}, {"title": "Bad Gateway", "detail": "upstream reset"})]
        with pytest.raises(SoundcheckError) as caught:
            sc.submit("a", "b")
    assert caught.value.status == 502
    assert len(scripted.times("POST", "/v1/jobs")) == 3  # one more: the job may exist, so it was not re-posted


def test_a_retry_after_beyond_the_budget_fails_at_once(scripted: Scripted) -> None:
    scripted.plan[("GET", "/v1/health")] = [_unavailable("3600")]
    started = time.monotonic()
    with Client(scripted.url, retry=RetryPolicy(max_elapsed_s=60)) as sc, pytest.raises(SoundcheckError) as caught:
        sc.health()
    assert caught.value.status == 503 and "Redis is restarting" in str(caught.value)
    assert len(scripted.seen) == 1 and time.monotonic() - started < 30


def test_connection_refused_is_retried_then_reported_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, retry=RetryPolicy(attempts=3, backoff_s=0.05)) as sc, pytest.raises(ServiceUnreachable) as caught:
        sc.submit("a", "b")  # a POST too: a refused connection sent nothing
    message = str(caught.value)
    assert f"POST {url}/v1/jobs" in message and "3 attempt(s)" in message and "soundcheck serve" in message
    assert isinstance(caught.value, SoundcheckError)  # the CLI's handler prints it without a traceback


def test_async_client_retries_like_the_sync_one(scripted: Scripted, tmp_path: Path) -> None:
    scripted.plan[("GET", "/v1/health")] = [_unavailable("1"), (200, {}, {"status": "ok"})]
    scripted.plan[("POST", "/v1/jobs")] = [(429, {"Retry-After": "0"}, {"title": "Too Many Requests"}),
                                           (202, {}, JOB)]
    scripted.plan[("POST", "/v1/datasets")] = [(201, {}, DATASET)]
    refused = f"http://127.0.0.1:{free_port()}"

    async def go() -> tuple[dict[str, Any], JobView, DatasetView]:
        async with AsyncClient(scripted.url, retry=FAST) as sc:
            health, job = await sc.health(), await sc.submit("a", "b")
            zipped = tmp_path / "one.zip"
            zipped.write_bytes(b"PK" + bytes(1000))
            dataset = await sc.upload(zipped)
        async with AsyncClient(refused, retry=RetryPolicy(attempts=2, backoff_s=0.01)) as down:
            with pytest.raises(ServiceUnreachable, match="2 attempt"):
                await down.job("j1")
        return health, job, dataset

    health, job, dataset = asyncio.run(go())
    assert health == {"status": "ok"} and job.id == "j1" and dataset.id == "d1"
    assert len(scripted.times("GET", "/v1/health")) == 2 and len(scripted.times("POST", "/v1/jobs")) == 2


def test_a_large_upload_streams_from_disk_with_progress_and_restarts_on_retry(scripted: Scripted,
                                                                               tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    size = 48 * 2**20
    with big.open("wb") as fh:
        for _ in range(size // 2**20):
            fh.write(os.urandom(2**20))
    scripted.plan[("POST", "/v1/datasets")] = [_unavailable("0"), (201, {}, DATASET)]
    calls: list[tuple[int, int]] = []
    tracemalloc.start()
    try:
        with Client(scripted.url, retry=FAST) as sc:
            view = sc.upload(big, on_upload_progress=lambda sent, total: calls.append((sent, total)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert view.id == "d1"
    posts = [s for s in scripted.seen if s["path"] == "/v1/datasets"]
    assert len(posts) == 2 and all(p["received"] == p["length"] > size for p in posts)  # sent twice, whole
    assert {total for _, total in calls} == {size}
    restarts = [i for i in range(1, len(calls)) if calls[i][0] < calls[i - 1][0]]
    assert len(restarts) == 1  # the retry rewound the file; within each attempt the count only grows
    assert calls[restarts[0] - 1][0] == calls[-1][0] == size
    assert len(calls) >= 2 * size // (64 * 2**10)  # httpx reads 64 KiB chunks: one report per chunk
    print(f"upload of {size} bytes: tracemalloc peak {peak} bytes, {len(calls)} progress calls")
    assert peak < size / 4, f"upload held {peak} bytes in Python memory for a {size}-byte file"


def test_async_and_sync_clients_agree_on_the_real_service(service: Service, example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    progress: list[tuple[int, int]] = []
    with Client(service.url) as sc:
        ref = sc.upload(ref_dir, on_upload_progress=lambda sent, total: progress.append((sent, total)))
        cand = sc.upload(cand_dir)
        done = sc.evaluate(ref.id, cand.id, "mel", ["fad"], {"bootstrap": 0}, poll_s=0.1, timeout_s=180)
    assert progress and progress[-1][0] == progress[-1][1] > 0
    assert done.status == "finished", done.error

    async def go() -> tuple[DatasetView, JobView, list[DatasetView], list[JobView]]:
        stages: list[str] = []

        async def show(view: JobView) -> None:
            stages.append(view.progress.stage)

        async with AsyncClient(service.url) as sc:
            aref = await sc.upload(ref_dir)
            adone = await sc.evaluate(aref.id, cand.id, "mel", ["fad"], {"bootstrap": 0}, poll_s=0.1,
                                      timeout_s=180, on_progress=show)
            assert stages
            return aref, adone, await sc.datasets(), await sc.jobs()

    aref, adone, datasets, jobs = asyncio.run(go())
    assert aref.id == ref.id  # content-addressed: the same set gives the same id
    assert adone.status == "finished", adone.error
    assert adone.result["metrics"]["fad"]["value"] == done.result["metrics"]["fad"]["value"]
    assert {ref.id, cand.id} <= {d.id for d in datasets} and all(isinstance(d, DatasetView) for d in datasets)
    assert {done.id, adone.id} <= {j.id for j in jobs}


def test_an_upload_the_api_refuses_early_gets_its_413_not_retries(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The api answers 413 from the Content-Length without reading the body: the client must report that answer,
    not treat the unread rest of the upload as a broken connection and send the file again."""
    monkeypatch.setenv("SOUNDCHECK_MAX_UPLOAD_BYTES", str(2**20))  # the api process reads it from the environment
    svc = Service(make_settings(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "svc", max_upload_bytes=2**20))
    big = tmp_path / "big.zip"
    big.write_bytes(os.urandom(16 * 2**20))
    calls: list[int] = []
    try:
        svc.start(n_workers=0, quiet=True)
        with Client(svc.url) as sc, pytest.raises(SoundcheckError) as caught:
            sc.upload(big, on_upload_progress=lambda sent, total: calls.append(sent))
    finally:
        svc.stop()
    assert caught.value.status == 413 and "SOUNDCHECK_MAX_UPLOAD_BYTES" in caught.value.detail
    assert all(later >= earlier for earlier, later in zip(calls, calls[1:], strict=False))  # never rewound: sent once


def test_deletes_are_idempotent_and_retried_after_a_gateway_error(scripted: Scripted) -> None:
    bad_gateway = (502, {}, {"title": "Bad Gateway", "detail": "upstream reset"})
    scripted.plan[("DELETE", "/v1/jobs/j1")] = [bad_gateway, (202, {}, {**JOB, "status": "failed"})]
    scripted.plan[("DELETE", "/v1/datasets/d1")] = [bad_gateway, (204, {}, None)]
    scripted.plan[("POST", "/v1/datasets/register")] = [bad_gateway, (201, {}, {**DATASET, "source": "path"})]
    with Client(scripted.url, retry=FAST) as sc:
        assert sc.cancel("j1").status == "failed"
        assert sc.delete_dataset("d1") is None
        assert sc.register("/datasets/x").source == "path"  # content-addressed: repeating it is harmless
    assert [s["method"] for s in scripted.seen] == ["DELETE"] * 4 + ["POST"] * 2


def test_a_job_post_whose_connection_breaks_after_sending_is_not_repeated(scripted: Scripted) -> None:
    scripted.plan[("POST", "/v1/jobs")] = [(0, {}, None)]
    with Client(scripted.url, retry=FAST) as sc, pytest.raises(ServiceUnreachable) as caught:
        sc.submit("a", "b")
    assert len(scripted.times("POST", "/v1/jobs")) == 1  # the api read it: a second POST could make a second job
    assert "may already have been processed" in str(caught.value) and "look (GET)" in str(caught.value)
    scripted.plan[("GET", "/v1/jobs/j1")] = [(0, {}, None), (200, {}, JOB)]
    with Client(scripted.url, retry=FAST) as sc:
        assert sc.job("j1").id == "j1"  # a GET is repeated after the same hang-up
