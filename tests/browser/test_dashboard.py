"""The dashboard in a real Chromium against a real deployment (own Redis, one worker, uvicorn)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from soundcheck.client import Client
from soundcheck.jobspec import METRIC_NAMES
from soundcheck.serve import Service
from tests.browser.conftest import FAILED_RESOURCE, Console

pytestmark = pytest.mark.browser
SCREENSHOT = Path("/tmp/soundcheck-dashboard.png")


def open_dashboard(page: Page, service: Service) -> None:
    page.goto(f"{service.url}/")  # the root redirects to /dashboard/
    expect(page).to_have_url(f"{service.url}/dashboard/")
    expect(page.locator("#health-workers")).to_have_attribute("data-count", "1")


def upload_folder(page: Page, folder: Path) -> str:
    """Upload a directory through the form's folder input; the new dataset's id."""
    page.set_input_files("#upload-folder", str(folder))
    page.click("#upload-submit")
    result = page.locator("#upload-result")
    expect(result).to_be_visible()
    expect(result).to_contain_text(folder.name)
    return result.get_attribute("data-dataset-id") or ""


def start_job(page: Page, reference: str, candidate: str, metrics: list[str], bootstrap: int = 10,
              ndb_k: int | None = None) -> str:
    """Fill the new-job form, submit it, and return the job id the page navigated to."""
    page.goto(page.url.split("#")[0] + "#/")
    page.select_option("#job-reference", reference)
    page.select_option("#job-candidate", candidate)
    for box in page.locator("#job-metrics input[type=checkbox]").all():
        box.set_checked(box.get_attribute("value") in metrics)
    page.fill("#job-bootstrap", str(bootstrap))
    if ndb_k is not None:
        page.fill("#job-ndb-k", str(ndb_k))
    page.click("#job-submit")
    page.wait_for_url("**/dashboard/#/jobs/*")
    return page.url.rsplit("/", 1)[-1]


def shown_equals(text: str, value: float, digits: int = 4) -> bool:
    """The displayed number is ``value`` rounded to ``digits`` significant digits."""
    shown = float(text.replace("−", "-"))
    if value == 0:
        return shown == 0
    half_ulp = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - digits + 1)
    return abs(shown - value) <= half_ulp * (1 + 1e-9)


def test_page_loads_with_health_and_no_console_errors(page: Page, console: Console, service: Service) -> None:
    open_dashboard(page, service)
    expect(page.locator("#health-redis")).to_have_text("Redis ok")
    expect(page.locator("#health-workers")).to_have_text("1 worker")
    assert "mel" in (page.locator("#health-models").get_attribute("data-models") or "").split(",")
    # the form is filled from the api: embeddings from /v1/models, metric names from the OpenAPI schema
    expect(page.locator("#job-embedding option[value=mel]")).to_be_enabled()
    expect(page.locator("#job-metrics input[value=fad]")).to_be_checked()
    expect(page.locator("#job-metrics input")).to_have_count(len(METRIC_NAMES))
    page.wait_for_timeout(300)  # let the first round of requests settle
    assert console.errors == []


def test_upload_run_job_and_read_results(page: Page, console: Console, service: Service,
                                         example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    open_dashboard(page, service)
    ref_id = upload_folder(page, ref_dir)
    cand_id = upload_folder(page, cand_dir)
    with Client(service.url) as client:  # subfolders kept: the same dataset as the Python client's upload
        assert client.upload(ref_dir).id == ref_id
        assert client.dataset(ref_id).labels == ["chords", "noise", "tones"]
    expect(page.locator(f"[data-testid=dataset-row][data-dataset-id='{cand_id}']")).to_be_visible()

    job_id = start_job(page, ref_id, cand_id, ["fad", "kad", "ndb", "prdc"], bootstrap=10, ndb_k=5)
    status = page.locator("#view-job [data-testid=job-status]")
    expect(status.get_by_role("progressbar")).to_be_visible()
    stages = set()
    deadline = time.monotonic() + 90
    while page.locator("#view-job").get_attribute("data-status") not in ("finished", "failed"):
        stages.add(page.locator("#job-stage").inner_text())
        assert time.monotonic() < deadline, f"job {job_id} did not finish; stages seen: {stages}"
        page.wait_for_timeout(100)
    job = httpx.get(f"{service.url}/v1/jobs/{job_id}").json()
    assert job["status"] == "finished", job["error"]
    expect(page.locator("#job-stage")).to_have_text("24 / 24 files · finished")
    expect(status.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "24")

    metrics = job["result"]["metrics"]
    fad_text = page.locator("[data-metric=fad] [data-testid=metric-value]").inner_text()
    assert shown_equals(fad_text, metrics["fad"]["value"]), (fad_text, metrics["fad"]["value"])
    interval = page.locator("[data-metric=fad] [data-testid=metric-interval]").inner_text()
    assert interval != "—"
    for name in ("kad", "ndb", "prdc.precision", "prdc.recall", "prdc.density", "prdc.coverage"):
        expect(page.locator(f"[data-testid=metric-row][data-metric='{name}']")).to_be_visible()

    bins = metrics["ndb"]["bins"]["reference_proportions"]
    assert len(bins) == 5
    groups = page.locator("[data-testid=ndb-chart] [data-testid=bar-group]")
    expect(groups).to_have_count(len(bins))
    expect(page.locator("[data-testid=ndb-chart] [data-testid=bar-group][data-highlight=true]")).to_have_count(
        len(metrics["ndb"]["different_bins"]))
    expect(page.locator("[data-testid=interval-chart] [data-testid=whisker]")).to_have_count(2)  # fad, kad
    expect(page.locator("[data-testid=prdc-chart] [data-testid=whisker]")).to_have_count(4)

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.click("#back-link")  # the jobs list shows the finished job with a full progress bar
    row = page.locator(f"[data-testid=job-row][data-job-id='{job_id}']")
    expect(row).to_have_attribute("data-status", "finished")
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "24")
    expect(page.locator("#jobs-list")).to_have_attribute("data-polling", "false")
    assert console.errors == []


def test_failed_job_shows_its_error(page: Page, console: Console, service: Service, example_sets: tuple[Path, Path],
                                    tmp_path: Path) -> None:
    """A job that passes the door and fails in the worker: a registered file changed after registration (files
    never embedded before, so no cached embedding of the registered content exists)."""
    import numpy as np
    import soundfile as sf

    ref_dir, _ = example_sets
    registered = service.settings.allowed_roots[0] / f"changed-{tmp_path.name}"
    registered.mkdir()
    t = np.arange(16000) / 16000
    for i in range(4):
        sf.write(registered / f"clip_{i}.wav", 0.3 * np.sin(2 * np.pi * (311 + 37 * i) * t), 16000)
    with Client(service.url) as client:
        ref_id = client.upload(ref_dir).id
    cand_id = httpx.post(f"{service.url}/v1/datasets/register", json={"path": str(registered)}).json()["id"]
    sf.write(registered / "clip_0.wav", 0.3 * np.sin(2 * np.pi * 997 * t), 16000)  # not what was registered
    open_dashboard(page, service)
    job_id = start_job(page, ref_id, cand_id, ["fad"])
    expect(page.locator("#view-job")).to_have_attribute("data-status", "failed", timeout=60_000)
    error = httpx.get(f"{service.url}/v1/jobs/{job_id}").json()["error"]
    assert "changed since the dataset was registered" in error
    expect(page.locator("[data-testid=job-error]")).to_be_visible()
    expect(page.locator("[data-testid=job-error]")).to_contain_text(error)
    expect(page.locator("[data-testid=job-status] [data-testid=status]")).to_have_text("failed")
    assert console.errors == []


def test_corrupt_upload_shows_problem_detail(page: Page, console: Console, service: Service, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio" * 8)
    with corrupt.open("rb") as fh:
        expected = httpx.post(f"{service.url}/v1/datasets", files=[("files", ("broken.wav", fh))]).json()["detail"]
    assert "broken.wav" in expected
    open_dashboard(page, service)
    page.set_input_files("#upload-files", str(corrupt))
    page.click("#upload-submit")
    error = page.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error.locator("[data-testid=problem-detail]")).to_have_text(expected)
    expect(page.locator("#upload-result")).to_be_hidden()
    # The 422 itself is logged by Chromium; nothing else may be.
    assert console.unexpected(FAILED_RESOURCE) == []


def test_hostile_file_name_is_shown_as_text(page: Page, console: Console, service: Service,
                                            example_sets: tuple[Path, Path]) -> None:
    wav = sorted(example_sets[0].rglob("*.wav"))[0].read_bytes()
    name = "<img src=x onerror=alert(1)>.wav"
    open_dashboard(page, service)
    page.set_input_files("#upload-files", files=[{"name": name, "mimeType": "audio/wav", "buffer": wav}])
    page.click("#upload-submit")
    expect(page.locator("#upload-result")).to_contain_text(name)
    expect(page.locator("[data-testid=datasets-list]")).to_contain_text(name)
    assert page.locator("img").count() == 0
    assert console.errors == []
