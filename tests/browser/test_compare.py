"""The compare view in a real Chromium against a real deployment: pick candidates (as datasets, then as finished
jobs), read the pair table, keep a screenshot of it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from soundcheck.client import Client
from soundcheck.serve import Service
from tests.browser.conftest import Console
from tests.browser.test_dashboard import open_dashboard, shown_equals

pytestmark = pytest.mark.browser
SCREENSHOT = Path("/tmp/soundcheck-comparison.png")


def wait_finished(page: Page, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while page.locator("#view-compare").get_attribute("data-status") not in ("finished", "failed"):
        assert time.monotonic() < deadline, "the comparison did not finish"
        page.wait_for_timeout(100)


def test_compare_view_from_datasets_and_from_jobs(page: Page, console: Console, service: Service,
                                                   example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as client:
        ref, cand, tones = (client.upload(d).id for d in (ref_dir, cand_dir, cand_dir / "tones"))
        jobs = [client.evaluate(ref, c, metrics=["fad"], options={"bootstrap": 0}, poll_s=0.1, timeout_s=120)
                for c in (cand, tones)]
    assert all(j.status == "finished" for j in jobs)
    open_dashboard(page, service)
    page.click("#nav-compare")
    page.wait_for_url("**/dashboard/#/compare")
    page.select_option("#compare-reference", ref)
    page.check(f"#compare-candidates input[value='{cand}']")
    page.check(f"#compare-candidates input[value='{tones}']")
    page.check("#compare-metrics input[value=kad]")
    page.fill("#compare-resamples", "100")
    page.click("#compare-submit")
    page.wait_for_url("**/dashboard/#/comparisons/*")
    comparison_id = page.url.rsplit("/", 1)[-1]
    wait_finished(page)
    view = httpx.get(f"{service.url}/v1/comparisons/{comparison_id}").json()
    assert view["status"] == "finished", view["error"]
    rows = page.locator("[data-testid=pair-row]")
    expect(rows).to_have_count(2)  # one pair, two metrics
    for metric in ("fad", "kad"):
        want = view["result"]["pairs"][0]["metrics"][metric]
        row = page.locator(f"[data-testid=pair-row][data-metric={metric}]")
        expect(row.locator("[data-testid=sentence]")).to_have_text(want["sentence"])
        assert shown_equals(row.locator("td.num").first.inner_text(), want["difference"])
        assert shown_equals(row.locator("[data-testid=p-value]").inner_text(), want["p_value"], digits=2)
        assert row.get_attribute("data-significant") == str(want["p_value"] < 0.05).lower()
    expect(page.locator("#comparison-scores tbody tr")).to_have_count(2)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # the same comparison asked through the finished jobs: they give reference, candidates and embedding
    page.goto(page.url.split("#")[0] + "#/compare")
    for job in jobs:
        page.check(f"#compare-jobs input[value='{job.id}']")
    page.fill("#compare-resamples", "100")
    page.click("#compare-submit")
    page.wait_for_url("**/dashboard/#/comparisons/*")
    second = page.url.rsplit("/", 1)[-1]
    assert second != comparison_id
    wait_finished(page)
    spec = httpx.get(f"{service.url}/v1/comparisons/{second}").json()["spec"]
    assert spec["reference"] == ref and sorted(spec["candidates"]) == sorted([cand, tones])
    expect(page.locator("[data-testid=pair-row]")).to_have_count(1)  # FAD only (the default)
    assert console.errors == []
