"""The run pages in a real Chromium against a real deployment: the runs list, one chart per metric over steps
with its interval band, hover values, and a click on a point that opens the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from soundcheck.client import Client
from soundcheck.serve import Service
from tests.browser.conftest import Console
from tests.browser.test_dashboard import shown_equals

pytestmark = pytest.mark.browser
SCREENSHOT = Path("/tmp/soundcheck-run.png")


def test_run_page_draws_each_metric_over_steps_and_a_point_opens_its_job(
        page: Page, console: Console, service: Service, example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as sc:  # as a training loop would: background submissions, results later
        ref = sc.upload(ref_dir).id
        handles = [sc.submit(ref, source, "mel", ["fad", "kad"], {"bootstrap": 10}, run="browser-run", step=step)
                   for step, source in ((0, cand_dir), (500, ref_dir), (1000, cand_dir))]
        jobs = [h.result(timeout=240) for h in handles]
        series = sc.run("browser-run")
    assert [j.status for j in jobs] == ["finished"] * 3, [j.error for j in jobs]

    page.goto(f"{service.url}/dashboard/#/runs")
    row = page.locator("[data-testid=run-row][data-run='browser-run']")
    expect(row).to_contain_text("1000")  # the last step
    row.get_by_role("link").click()
    page.wait_for_url("**/dashboard/#/runs/browser-run")
    view = page.locator("[data-testid=run-view][data-run='browser-run']")
    expect(view).to_be_visible()
    for metric in ("fad", "kad"):
        chart = page.locator(f"[data-testid=run-chart-{metric}]")
        expect(chart.locator("[data-testid=run-point]")).to_have_count(3)
        expect(chart.locator("[data-testid=interval-band]")).to_have_count(1)  # one band across the 3 steps
        expect(chart.locator("[data-testid=series-line]")).to_have_count(1)
    steps = page.locator("[data-testid=run-chart-fad] [data-testid=run-point]").evaluate_all(
        "els => els.map(e => Number(e.dataset.step))")
    assert steps == [0, 500, 1000]
    # the chart's points sit where the values are: lower y on screen = larger value (SVG y grows downward)
    cy = page.locator("[data-testid=run-chart-fad] [data-testid=run-point]").evaluate_all(
        "els => els.map(e => Number(e.getAttribute('cy')))")
    fads = [p.metrics["fad"].value for p in series.points]
    assert sorted(range(3), key=lambda i: cy[i]) == sorted(range(3), key=lambda i: -fads[i])  # type: ignore[operator]

    last = page.locator("[data-testid=run-chart-fad] [data-testid=run-point][data-step='1000']")
    last.hover()
    readout = page.locator("[data-testid=run-chart-fad] [data-testid=chart-readout]")
    expect(readout).to_contain_text("step 1000")
    shown = readout.text_content() or ""
    value, low, high = shown.split("fad ", 1)[1].replace("[", "").replace("]", "").replace(",", "").split()[:3]
    fad = series.points[2].metrics["fad"]
    assert shown_equals(value, fad.value) and shown_equals(low, fad.low) and shown_equals(high, fad.high), shown
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    middle = page.locator("[data-testid=run-chart-fad] [data-testid=run-point][data-step='500']")

    middle.click()
    page.wait_for_url(f"**/dashboard/#/jobs/{jobs[1].id}")
    expect(page.locator(f"[data-testid=job-view][data-job-id='{jobs[1].id}']")).to_be_visible()
    expect(page.locator("[data-testid=job-run]")).to_have_text("browser-run · step 500")
    page.locator("[data-testid=job-run]").click()  # and back to the run
    expect(page.locator("[data-testid=run-view][data-run='browser-run']")).to_be_visible()
    assert console.errors == []


def test_unknown_run_says_so(page: Page, console: Console, service: Service) -> None:
    page.goto(f"{service.url}/dashboard/#/runs/no-such-run")
    expect(page.locator("[data-testid=runs-error]")).to_contain_text("Run not found")
    assert console.unexpected("Failed to load resource") == []


def test_the_job_form_puts_a_job_in_a_run(page: Page, console: Console, service: Service,
                                          example_sets: tuple[Path, Path]) -> None:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as sc:
        ref, cand = sc.upload(ref_dir).id, sc.upload(cand_dir).id
    page.goto(f"{service.url}/dashboard/#/")
    expect(page.locator("#health-workers")).to_have_attribute("data-count", "1")
    page.select_option("#job-reference", ref)
    page.select_option("#job-candidate", cand)
    page.fill("#job-bootstrap", "5")
    page.fill("#job-run", "form-run")
    page.fill("#job-step", "7")
    page.click("#job-submit")
    page.wait_for_url("**/dashboard/#/jobs/*")
    expect(page.locator("[data-testid=job-run]")).to_have_text("form-run · step 7")
    page.locator("[data-testid=job-run]").click()
    expect(page.locator("[data-testid=run-view][data-run='form-run']")).to_be_visible()
    expect(page.locator("[data-testid=run-job-row]")).to_have_count(1)
    assert console.errors == []
