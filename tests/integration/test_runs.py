"""Runs end to end: a training loop's background submissions, a server that is down at first, real jobs of a
real worker read back as a series (over real HTTP: uvicorn, Redis, worker processes)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from redis import Redis

from soundcheck.background import Submission
from soundcheck.client import AsyncClient, Client, ServiceUnreachable
from soundcheck.retry import RetryPolicy
from soundcheck.serve import Service
from tests.api.live import live_api
from tests.conftest import free_port, run

QUICK = RetryPolicy(attempts=10_000, max_elapsed_s=120, backoff_s=0.2, max_backoff_s=1.0)


def _tones(folder: Path, freqs: list[float], rate: int = 16000) -> Path:
    folder.mkdir(parents=True)
    t = np.arange(rate) / rate
    for i, f in enumerate(freqs):
        sf.write(folder / f"t{i}.wav", 0.3 * np.sin(2 * np.pi * f * t), rate)
    return folder


def test_submission_returns_at_once_and_reaches_a_server_that_comes_up_later(
        tmp_path: Path, redis_server: str, redis_db: Redis, caplog: pytest.LogCaptureFixture) -> None:
    ref = _tones(tmp_path / "ref", [220, 330, 440])
    cands = [_tones(tmp_path / f"cand{step}", [225 + step, 335, 445]) for step in range(3)]
    port = free_port()  # nobody listens there yet
    caplog.set_level(logging.WARNING, logger="soundcheck.client")
    with Client(f"http://127.0.0.1:{port}", background_retry=QUICK) as sc:
        started = time.monotonic()
        handles = [sc.submit(ref, cand, "mel", ["fad"], {"bootstrap": 5}, run="down-then-up", step=1000 * step,
                             tags=["smoke"]) for step, cand in enumerate(cands)]
        assert time.monotonic() - started < 0.5  # the training loop did not wait
        assert all(isinstance(h, Submission) for h in handles)
        time.sleep(1.5)
        assert not any(h.submitted() for h in handles)
        assert "not submitted yet" in caplog.text and "ConnectError" in caplog.text
        with live_api(tmp_path / "api", redis_server, port=port):
            assert sc.flush(timeout=60)
            assert [h.error for h in handles] == [None, None, None]
            series = sc.run("down-then-up")
            summaries = sc.runs()
    assert [(p.step, p.job_id, p.status, p.tags) for p in series.points] == [
        (1000 * i, h.job_id, "queued", ["smoke"]) for i, h in enumerate(handles)]  # no worker: they wait
    assert [(s.name, s.steps, s.last_step) for s in summaries] == [("down-then-up", 3, 2000)]
    assert all(h.job is not None and h.job.spec.run == "down-then-up" for h in handles)  # type: ignore[union-attr]


def test_a_submission_that_never_gets_through_is_logged_not_raised_unless_asked(
        caplog: pytest.LogCaptureFixture) -> None:
    never = RetryPolicy(attempts=3, max_elapsed_s=5, backoff_s=0.05)
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, background_retry=never) as sc:
        handle = sc.submit("a" * 64, "b" * 64, run="r", step=1)
        assert sc.flush(timeout=30)  # the loop goes on: nothing raised
        assert isinstance(handle.error, ServiceUnreachable)
        with pytest.raises(ServiceUnreachable):
            handle.result(timeout=1)  # asking for the result is asking for the error
    assert "could not be submitted" in caplog.text
    strict = Client(url, background_retry=never, raise_errors=True)
    strict.submit("a" * 64, "b" * 64, run="r", step=1)
    with pytest.raises(ServiceUnreachable):
        strict.flush(timeout=30)
    strict.close()
    with pytest.raises(ValueError, match="run"):  # a mistake in the call itself raises at once
        Client(url).submit("a" * 64, "b" * 64, run="no spaces", step=1)


def test_real_jobs_of_a_run_read_back_as_the_series_of_their_results(service: Service,
                                                                     example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as sc:
        ref = sc.upload(ref_dir).id
        handles = [sc.submit(ref, source, "mel", ["fad", "kad"], {"bootstrap": 10}, run="real-run", step=step)
                   for step, source in ((10, cand_dir), (0, ref_dir))]
        jobs = [h.result(timeout=240) for h in handles]
        series = sc.run("real-run")
    assert [j.status for j in jobs] == ["finished", "finished"], [j.error for j in jobs]
    assert [p.step for p in series.points] == [0, 10]  # sorted by step, not by submission
    assert series.metrics == ["fad", "kad"]
    for point, job in zip(series.points, reversed(jobs), strict=True):
        assert point.job_id == job.id and point.status == "finished"
        for name in ("fad", "kad"):
            entry = job.result["metrics"][name]  # type: ignore[index]
            shown = point.metrics[name]
            assert (shown.value, shown.low, shown.high) == (entry["value"], entry["interval"]["low"],
                                                            entry["interval"]["high"])
    # a candidate equal to the reference sits at the bottom of the curve
    assert series.points[0].metrics["fad"].value < series.points[1].metrics["fad"].value  # type: ignore[operator]

    shown = run([sys.executable, "-m", "soundcheck.cli", "--url", service.url, "runs", "show", "real-run"])
    assert shown.returncode == 0, shown.stderr
    fad10 = series.points[1].metrics["fad"]
    rows = [line for line in shown.stdout.splitlines() if jobs[0].id[:12] in line]
    assert len(rows) == 1 and " 10 " in rows[0] and "finished" in rows[0]
    assert f"{fad10.value:.4g} [{fad10.low:.4g}, {fad10.high:.4g}]" in rows[0]
    listed = run([sys.executable, "-m", "soundcheck.cli", "--url", service.url, "runs", "list"])
    assert listed.returncode == 0 and any("real-run" in line and " 2 " in line and " 10 " in line
                                          for line in listed.stdout.splitlines()), listed.stdout


def test_async_client_submits_in_the_background_too(service: Service, example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets

    async def main() -> tuple[float, str, list[int]]:
        async with AsyncClient(service.url) as sc:
            ref = (await sc.upload(ref_dir)).id
            started = time.monotonic()
            handle = await sc.submit(ref, cand_dir, "mel", ["fad"], {"bootstrap": 5}, run="async-run", step=3)
            quick = time.monotonic() - started
            job = await handle.result(timeout=240)  # type: ignore[union-attr]
            series = await sc.run("async-run")
            return quick, job.status, [p.step for p in series.points]

    quick, status, steps = asyncio.run(main())
    assert quick < 0.2 and status == "finished" and steps == [3]


def test_the_readme_training_loop_snippet_logs_a_run(service: Service, example_sets: tuple[Path, Path],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's snippet as written, with its two placeholders filled in: the loop stops after two
    checkpoints, and "training" copies the example candidate set."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Training runs"):]
    code = section[section.index("```python\n") + 10:section.index("\n```", section.index("```python"))]
    code = code.replace("http://127.0.0.1:8000", service.url)
    ref_dir, cand_dir = example_sets
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ref_dir, tmp_path / "real")

    def train_and_write_samples(step: int, folder: str) -> None:
        shutil.copytree(cand_dir if step else ref_dir, folder)

    started = time.monotonic()
    exec(compile(code, "README.md", "exec"), {"train_and_write_samples": train_and_write_samples,  # noqa: S102
                                              "range": lambda *_: [0, 5000]})
    with Client(service.url) as sc:
        series = sc.run("exp-1")
        done = [sc.wait(p.job_id, timeout_s=240) for p in series.points]
        series = sc.run("exp-1")
    assert time.monotonic() - started < 300
    assert [p.step for p in series.points] == [0, 5000] and [d.status for d in done] == ["finished"] * 2
    assert series.metrics == ["fad", "kad"] and all(p.metrics["fad"].low is not None for p in series.points)


def test_async_background_failures_are_logged_kept_and_raised_only_when_asked(
        caplog: pytest.LogCaptureFixture) -> None:
    never = RetryPolicy(attempts=3, max_elapsed_s=5, backoff_s=0.05)
    url = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        async with AsyncClient(url, background_retry=never) as sc:
            handle = await sc.submit("a" * 64, "b" * 64, run="r", step=1)
            assert await sc.flush(timeout=30)
            assert isinstance(handle.error, ServiceUnreachable)
            with pytest.raises(ServiceUnreachable):
                await handle.result(timeout=1)  # type: ignore[union-attr]
        strict = AsyncClient(url, background_retry=never, raise_errors=True)
        await strict.submit("a" * 64, "b" * 64, run="r", step=2)
        with pytest.raises(ServiceUnreachable):
            await strict.flush(timeout=30)
        await strict.close()

    asyncio.run(main())
    assert "run 'r' step 1 could not be submitted" in caplog.text
