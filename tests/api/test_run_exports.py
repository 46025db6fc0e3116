"""GET /v1/runs/{name} and GET /v1/comparisons/{id} answer CSV to a client that asks for it first, with the same
bytes as ``soundcheck runs show NAME --format csv`` (checked through a real uvicorn and the CLI in a subprocess),
and the CLI's ``--plot`` writes one PNG and SVG per metric. No worker: the records are written with the stores
exactly as the worker writes them, and the expected rows come from the numbers put in."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from soundcheck.comparespec import ComparisonCreate
from soundcheck.comparestore import ComparisonStore
from soundcheck.jobspec import JobCreate
from soundcheck.jobstore import JobStore
from tests.api.conftest import tone, wav_bytes
from tests.api.live import Live, live_api
from tests.api.test_runs import _result
from tests.unit.test_export import _check_figures
from tests.unit.test_export_runs import FAD_SENTENCE, KAD_SENTENCE, _difference

CSV = {"Accept": "text/csv"}
VALUES = {0: (9.0, 8.0, 10.5, 0.125), 1000: (5.0, 4.5, 6.0, 0.375)}


def _write_run(redis: Redis, name: str) -> dict[int, str]:
    """Steps 0 and 1000 finished with VALUES, step 2000 queued; job ids by step."""
    store = JobStore(redis)
    ids = {}
    for step in (0, 1000, 2000):
        ids[step] = f"{name.replace('.', '')}{step:0>8}".ljust(32, "0")[:32]
        store.create(ids[step], JobCreate(reference="r", candidate="c", metrics=["fad", "prdc"], run=name,
                                          step=step))
    for step, numbers in VALUES.items():
        assert store.start(ids[step], "w") is not None and store.finish(ids[step], _result(*numbers))
    return ids


def _expected_rows(name: str, ids: dict[int, str]) -> list[list[str]]:
    rows = [["run", "step", "job_id", "status", "metric", "value", "low", "high", "confidence", "error"]]
    for step, (fad, low, high, precision) in VALUES.items():
        rows += [[name, str(step), ids[step], "finished", "fad", repr(fad), repr(low), repr(high), "0.95", ""],
                 [name, str(step), ids[step], "finished", "prdc.precision", repr(precision), "", "", "", ""],
                 [name, str(step), ids[step], "finished", "prdc.recall", "0.5", "0.4", "0.6", "0.95", ""]]
    return rows + [[name, "2000", ids[2000], "queued", "", "", "", "", "", ""]]


def test_run_csv_is_served_to_who_asks_for_it(api: TestClient, redis_db: Redis) -> None:
    ids = _write_run(redis_db, "exp.csv")
    answer = api.get("/v1/runs/exp.csv", headers=CSV)
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["vary"] == "Accept"
    assert list(csv.reader(io.StringIO(answer.text))) == _expected_rows("exp.csv", ids)
    for accept in ("application/json", "*/*", "application/json, text/csv", ""):
        plain = api.get("/v1/runs/exp.csv", headers={"Accept": accept} if accept else {})
        assert plain.headers["content-type"] == "application/json" and plain.json()["name"] == "exp.csv", accept
    assert api.get("/v1/runs/nope", headers=CSV).status_code == 404


def test_comparison_csv_is_409_until_there_is_a_result(api: TestClient, redis_db: Redis) -> None:
    store = ComparisonStore(redis_db)
    cid = "e" * 32
    store.create(cid, ComparisonCreate(reference="r", candidates=["x", "y"], labels=["A", "noisy"],
                                       metrics=["fad", "kad"]))
    answer = api.get(f"/v1/comparisons/{cid}", headers=CSV)
    assert answer.status_code == 409 and "queued" in answer.json()["detail"]
    assert api.get(f"/v1/comparisons/{cid}").json()["status"] == "queued"
    store.start(cid, "w")
    assert store.finish(cid, {"reference": {"id": "r"}, "embedding": "mel", "resamples": 1000, "confidence": 0.95,
                              "seed": 0, "candidates": [], "pairs": [{"a": "A", "b": "noisy",
                                                                      "paired_by_name": True, "metrics": {
                                  "fad": _difference(2.5, 4.25, 0.5, 3.0, 0.004, 998, FAD_SENTENCE),
                                  "kad": _difference(0.125, 0.1, -0.0625, 0.015625, 0.5, 1000, KAD_SENTENCE)}}]})
    answer = api.get(f"/v1/comparisons/{cid}", headers=CSV)
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert list(csv.reader(io.StringIO(answer.text))) == [
        ["a", "b", "paired_by_name", "metric", "a_value", "b_value", "difference", "low", "high", "level",
         "p_value", "resamples", "valid", "interval_method", "p_value_method"],
        ["A", "noisy", "true", "fad", "2.5", "4.25", "1.75", "0.5", "3.0", "0.95", "0.004", "1000", "998",
         "percentile", "bootstrap"],
        ["A", "noisy", "true", "kad", "0.125", "0.1", repr(0.1 - 0.125), "-0.0625", "0.015625", "0.95", "0.5",
         "1000", "1000", "percentile", "bootstrap"]]
    assert api.get(f"/v1/comparisons/{cid}").json()["result"]["pairs"][0]["b"] == "noisy"
    assert api.get(f"/v1/comparisons/{'0' * 32}", headers=CSV).status_code == 404


@pytest.fixture(scope="module")
def live(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, Redis]]:
    url = redis_server.rsplit("/", 1)[0] + "/13"
    redis = Redis.from_url(url)
    redis.flushdb()
    with live_api(tmp_path_factory.mktemp("run-exports"), url) as api:
        yield api, redis
    redis.close()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCHECK_")}
    return subprocess.run([sys.executable, "-m", "soundcheck.cli", "--url", url, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_runs_show_prints_the_api_csv_and_plots_each_metric(live: tuple[Live, Redis], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    api, redis = live
    ids = _write_run(redis, "cli.run")
    shown = _cli(api.url, "runs", "show", "cli.run", "--format", "csv", "--plot", str(tmp_path / "fig"))
    assert shown.returncode == 0, shown.stderr
    served = httpx.get(f"{api.url}/v1/runs/cli.run", headers=CSV)
    assert shown.stdout == served.text  # the same bytes
    assert list(csv.reader(io.StringIO(shown.stdout))) == _expected_rows("cli.run", ids)
    written = sorted((tmp_path / "fig").iterdir())
    assert [p.name for p in written] == [f"run-cli_run-{m}.{s}" for m in ("fad", "prdc_precision", "prdc_recall")
                                         for s in ("png", "svg")]
    _check_figures(written)
    assert all(f"wrote {p}" in shown.stderr for p in written)


def test_cli_runs_exit_codes_and_list_formats(live: tuple[Live, Redis]) -> None:
    api, redis = live
    _write_run(redis, "listed")
    listed = _cli(api.url, "runs", "list", "--format", "csv")
    assert listed.returncode == 0, listed.stderr
    rows = {r[0]: r for r in csv.reader(io.StringIO(listed.stdout))}
    assert rows["run"] == ["run", "steps", "last_step", "updated_at"] and rows["listed"][1:3] == ["3", "2000"]
    latex = _cli(api.url, "runs", "show", "listed", "--format", "latex")
    assert latex.returncode == 0 and latex.stdout.splitlines()[2] == (
        r"Step & FAD & PRDC precision & PRDC recall \\")
    assert _cli(api.url, "runs", "show", "nope").returncode == 2  # 404: a usage error, the message printed
    assert _cli(api.url, "runs", "show").returncode == 2
    assert _cli(api.url, "runs", "list", "--plot", "x").returncode == 2
    assert _cli(api.url, "runs", "list", "--format", "xlsx").returncode == 2  # argparse


def _two_file_dataset(url: str, freq: float) -> str:
    files = [("files", (f"{i}.wav", wav_bytes(tone(0.5, freq=freq + i)))) for i in range(2)]
    answer = httpx.post(f"{url}/v1/datasets", files=files, timeout=60)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def _compare_while_a_worker_would(api: Live, redis: Redis, refs: list[str], fmt: str,
                                  finish: dict | None, error: str | None = None) -> subprocess.CompletedProcess:
    """``soundcheck compare`` in a subprocess; once its comparison is queued, write its end as the worker does
    (no worker runs here), then let the CLI's polling pick it up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCHECK_")}
    before = set(redis.zrange("sc:comparisons", 0, -1))
    proc = subprocess.Popen([sys.executable, "-m", "soundcheck.cli", "--url", api.url, "compare", *refs,
                             "--metrics", "fad,kad", "--format", fmt, "--no-start"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (new := set(redis.zrange("sc:comparisons", 0, -1)) - before):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the CLI queued no comparison"
            time.sleep(0.05)
        (cid,) = (i.decode() for i in new)
        store = ComparisonStore(redis)
        store.start(cid, "w")
        if finish is not None:
            assert store.finish(cid, finish)
        else:
            assert store.fail(cid, error or "failed")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_cli_compare_prints_the_api_csv_and_exits_3_when_the_comparison_failed(live: tuple[Live, Redis]) -> None:
    api, redis = live
    refs = [_two_file_dataset(api.url, f) for f in (440.0, 550.0, 660.0)]
    result = {"reference": {"id": refs[0]}, "embedding": "mel", "resamples": 1000, "confidence": 0.95, "seed": 0,
              "candidates": [], "pairs": [{"a": "A", "b": "B", "paired_by_name": False, "metrics": {
                  "fad": _difference(2.5, 4.25, 0.5, 3.0, 0.004, 998, FAD_SENTENCE)}}]}
    done = _compare_while_a_worker_would(api, redis, refs, "csv", result)
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(io.StringIO(done.stdout)))[1] == [
        "A", "B", "false", "fad", "2.5", "4.25", "1.75", "0.5", "3.0", "0.95", "0.004", "1000", "998",
        "percentile", "bootstrap"]
    (cid,) = [i.decode() for i in redis.zrange("sc:comparisons", -1, -1)]
    assert done.stdout == httpx.get(f"{api.url}/v1/comparisons/{cid}", headers=CSV).text  # the same bytes
    failed = _compare_while_a_worker_would(api, redis, refs, "table", None, "the worker ran out of memory")
    assert failed.returncode == 3 and "the worker ran out of memory" in failed.stderr, failed
    assert _cli(api.url, "compare", refs[0], refs[1], "nope", "--no-start").returncode == 2  # 404 dataset
