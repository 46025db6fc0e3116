"""`soundcheck eval --format/--plot` and `Accept: text/csv` against the real service (Redis, worker, uvicorn):
the CLI's CSV and the api's are the same bytes, their numbers are the job's JSON values, figures are written,
and the exit codes say what happened (0 ok, 2 usage, 3 job failed, 4 no api)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from soundcheck.client import Client
from soundcheck.serve import Service
from tests.conftest import free_port


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCHECK_")}
    return subprocess.run([sys.executable, "-m", "soundcheck.cli", *args], env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.fixture(scope="module")
def sets(service: Service, example_sets: tuple[Path, Path]) -> tuple[str, str]:
    with Client(service.url) as client:
        return client.upload(example_sets[0]).id, client.upload(example_sets[1]).id


def test_cli_csv_equals_the_api_csv_and_the_job_values(service: Service, sets: tuple[str, str],
                                                       tmp_path: Path) -> None:
    ref, cand = sets
    done = _cli("--url", service.url, "eval", ref, cand, "--metrics", "fad,ndb,fad_per_file,prdc", "--bootstrap",
                "20", "--options", '{"ndb": {"k": 4}}', "--format", "csv", "--no-start", "--plot", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr  # not a terminal: plain progress lines, no bar redraws
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["metric"] for r in rows] == ["fad", "ndb", "fad_per_file", "prdc.precision", "prdc.recall",
                                          "prdc.density", "prdc.coverage"]
    job_id = next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("job "))
    job = httpx.get(f"{service.url}/v1/jobs/{job_id}").json()
    metrics = job["result"]["metrics"]
    with Client(service.url) as client:  # the typed result the client gives is the same job's
        typed = client.result(job_id)
    assert typed.metrics["fad"].value == metrics["fad"]["value"] and typed.metrics["ndb"].k == 4
    assert [p.fad for p in typed.metrics["fad_per_file"].worst] == [w["fad"] for w in metrics["fad_per_file"]["worst"]]
    by_name = {r["metric"]: r for r in rows}
    assert float(by_name["fad"]["value"]) == metrics["fad"]["value"]
    assert float(by_name["fad"]["low"]) == metrics["fad"]["interval"]["low"]
    assert float(by_name["fad"]["high"]) == metrics["fad"]["interval"]["high"]
    assert float(by_name["prdc.recall"]["value"]) == metrics["prdc"]["recall"]["value"]
    assert int(by_name["ndb"]["value"]) == metrics["ndb"]["ndb"]
    assert int(by_name["fad"]["n_candidate"]) == 12
    api_csv = httpx.get(f"{service.url}/v1/jobs/{job_id}", headers={"Accept": "text/csv"})
    assert api_csv.status_code == 200 and api_csv.headers["content-type"].startswith("text/csv")
    assert api_csv.text == done.stdout
    assert httpx.get(f"{service.url}/v1/jobs/{job_id}").headers["content-type"] == "application/json"
    figures = sorted(p.name for p in tmp_path.iterdir())
    stem = f"job-{job_id[:12]}"
    assert figures == sorted(f"{stem}-{f}.{s}" for f in ("ndb", "fad-per-file") for s in ("png", "svg"))
    assert all((tmp_path / f).stat().st_size > 1000 for f in figures)
    # the NDB result names the files to listen to for each bin that differs
    for entry in metrics["ndb"].get("bin_files", []):
        assert entry["bin"] in metrics["ndb"]["different_bins"] and entry["candidate"] and entry["reference"]
    latex = _cli("--url", service.url, "jobs", "show", job_id, "--format", "latex")
    assert latex.returncode == 0 and latex.stdout.startswith(r"\begin{tabular}") and r"\bottomrule" in latex.stdout


def test_exit_codes(service: Service, sets: tuple[str, str]) -> None:
    ref, cand = sets
    # subsets larger than the candidate's frames: only the worker knows, so the job fails there
    failed = _cli("--url", service.url, "eval", ref, cand, "--metrics", "fad_inf", "--no-start", "--options",
                  '{"fad_inf": {"sizes": [2, 9000000]}}')
    assert failed.returncode == 3, failed.stderr
    assert "job failed" in failed.stderr and "fad_inf" in failed.stderr
    failed_id = next(line.split()[1] for line in failed.stderr.splitlines() if line.startswith("job "))
    assert httpx.get(f"{service.url}/v1/jobs/{failed_id}", headers={"Accept": "text/csv"}).status_code == 409
    rejected = _cli("--url", service.url, "eval", ref, cand, "--metrics", "kl", "--no-start")  # mel has no classes
    assert rejected.returncode == 2 and "class probabilities" in rejected.stderr
    assert _cli("--url", service.url, "eval", ref, cand, "--format", "xlsx").returncode == 2
    refused = _cli("--url", service.url, "eval", ref, cand, "--options", '{"ndb": {"k": 1}}', "--no-start")
    assert refused.returncode == 2 and "ndb" in refused.stderr
    gone = _cli("--url", f"http://127.0.0.1:{free_port()}", "eval", ref, cand, "--no-start")
    assert gone.returncode == 4 and "no soundcheck api answers" in gone.stderr
    gone = _cli("--url", f"http://127.0.0.1:{free_port()}", "jobs", "show", "abc")
    assert gone.returncode == 4, gone.stderr


def test_csv_of_an_unfinished_or_missing_job(service: Service) -> None:
    assert httpx.get(f"{service.url}/v1/jobs/nope", headers={"Accept": "text/csv"}).status_code == 404
