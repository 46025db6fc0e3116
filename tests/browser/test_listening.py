"""Listening in a real Chromium: the worst-files table of a finished job pages through its rows, and its player
streams the file through a signed URL from an api that demands a token (a second uvicorn on the service's
Redis and data: the page holds the token, the <audio> element cannot send it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from playwright.sync_api import Page, expect

from soundcheck.client import Client
from soundcheck.serve import Service
from tests.api.live import Live, live_api
from tests.browser.conftest import Console

pytestmark = pytest.mark.browser
SCREENSHOT = Path("/tmp/soundcheck-listening.png")
TOKEN = "listen-token-5a9c"


@pytest.fixture(scope="module")
def secured(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    s = service.settings
    with live_api(tmp_path_factory.mktemp("listen"), s.redis_url, data_dir=s.data_dir, model_dir=s.model_dir,
                  queue_name=s.queue_name, api_token=TOKEN) as live:
        yield live


@pytest.fixture(scope="module")
def finished_job(service: Service, example_sets: tuple[Path, Path]) -> tuple[str, str, dict]:
    ref_dir, cand_dir = example_sets
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir), client.upload(cand_dir)
        job = client.submit(ref.id, cand.id, "mel", ["fad", "fad_per_file", "ndb", "snr"],
                            {"bootstrap": 0, "ndb": {"k": 4}})
        done = client.wait(job.id, poll_s=0.2, timeout_s=180)
    assert done.status == "finished", done.error
    assert len(done.result["metrics"]["fad_per_file"]["worst"]) == 12  # > one page of 10
    return done.id, cand.id, done.result


def test_worst_files_page_and_play_with_a_token(page: Page, console: Console, secured: Live,
                                                finished_job: tuple[str, str, dict],
                                                example_sets: tuple[Path, Path]) -> None:
    job_id, cand_id, result = finished_job
    page.add_init_script(f"sessionStorage.setItem('soundcheck.token', {TOKEN!r})")
    audio_requests: list[tuple[str, int, str | None]] = []
    page.on("response", lambda r: audio_requests.append((r.url, r.status, r.request.headers.get("authorization")))
            if r.url.split("?")[0].endswith("/audio") else None)
    page.goto(f"{secured.url}/dashboard/#/jobs/{job_id}")
    expect(page.locator("[data-testid=job-view]")).to_be_visible()
    expect(page.locator("#view-job")).to_have_attribute("data-status", "finished")
    # the metric labels come from GET /v1/metrics
    expect(page.locator("[data-testid=metric-row][data-metric=fad_per_file] th")).to_contain_text("per-file FAD")
    expect(page.locator("[data-testid=metric-row][data-metric=fad] th")).to_contain_text("lower is better")

    table = page.locator("[data-testid=worst-files]")
    rows = table.locator("[data-testid=worst-files-row]")
    expect(rows).to_have_count(10)
    expect(table.locator("[data-testid=worst-files-page]")).to_have_text("1–10 of 12")
    first_page = rows.locator("td:nth-child(2)").all_text_contents()
    table.locator("[data-testid=worst-files-next]").click()
    expect(rows).to_have_count(2)
    expect(table.locator("[data-testid=worst-files-page]")).to_have_text("11–12 of 12")
    expect(table.locator("[data-testid=worst-files-next]")).to_be_disabled()
    second_page = rows.locator("td:nth-child(2)").all_text_contents()
    assert not set(first_page) & set(second_page)
    table.locator("[data-testid=worst-files-prev]").click()
    expect(rows).to_have_count(10)

    name = first_page[0]
    rows.first.locator("[data-testid=listen]").click()
    audio = rows.first.locator("audio[data-testid=audio]")
    expect(audio).to_have_count(1)
    page.wait_for_function("el => el.readyState >= 1 && isFinite(el.duration)", arg=audio.element_handle())
    duration = audio.evaluate("el => el.duration")
    expected = sf.info(str(next(example_sets[1].rglob(Path(name).name)))).duration
    assert duration == pytest.approx(expected, abs=0.05)
    assert audio_requests and all(status in (200, 206) and auth is None for _, status, auth in audio_requests)
    # the URL the page played carries no token: what it opens without one is this file only, for a while
    src = audio.get_attribute("src") or ""
    assert "sig=" in src and TOKEN not in src
    assert httpx.get(f"{secured.url}/v1/datasets/{cand_id}/files/{name}/audio").status_code == 401

    # a paired signal metric lists its pairs, lowest SNR first (paged), with both files of each pair
    pairs = page.locator("[data-testid=pairs-snr-row]")
    snr = sorted(result["metrics"]["snr"]["per_file"], key=lambda p: p["value"])
    expect(pairs).to_have_count(min(10, len(snr)))
    expect(pairs.first.locator("td").first).to_have_text(snr[0]["name"])
    expect(pairs.first.locator("[data-testid=player]")).to_have_count(2)
    ndb = page.locator("[data-testid=listen-ndb]")
    if ndb.count():  # the example sets differ in some bins with K = 4: each has files to listen to
        expect(ndb.locator("[data-testid=player]").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert console.unexpected() == []


def test_ndb_bins_that_differ_play_their_nearest_files(page: Page, console: Console, secured: Live,
                                                       service: Service, example_sets: tuple[Path, Path]) -> None:
    """A candidate of noise only against the three-class reference: the bins of the other classes differ, and
    each lists the files nearest its centre, playable from either set."""
    ref_dir, cand_dir = example_sets
    with Client(service.url) as client:
        ref, cand = client.upload(ref_dir), client.upload(cand_dir / "noise")
        done = client.wait(client.submit(ref.id, cand.id, "mel", ["ndb"], {"ndb": {"k": 3, "alpha": 0.5}}).id,
                           poll_s=0.2, timeout_s=180)
    assert done.status == "finished", done.error
    ndb = done.result["metrics"]["ndb"]
    assert ndb["different_bins"] and len(ndb["bin_files"]) == len(ndb["different_bins"])
    page.add_init_script(f"sessionStorage.setItem('soundcheck.token', {TOKEN!r})")
    page.goto(f"{secured.url}/dashboard/#/jobs/{done.id}")
    expect(page.locator("#view-job")).to_have_attribute("data-status", "finished")
    rows = page.locator("[data-testid=ndb-bins-row]")
    expect(rows).to_have_count(len(ndb["different_bins"]))
    first = ndb["bin_files"][0]
    row = rows.first
    expect(row.locator("td").first).to_have_text(str(first["bin"]))
    for role in ("candidate", "reference"):
        expect(row.locator(f"[data-testid=player][data-role={role}]")).to_have_count(len(first[role]))
    player = row.locator(f"[data-testid=player][data-role=reference][data-file='{first['reference'][0]}']")
    player.locator("[data-testid=listen]").click()
    audio = player.locator("audio")
    page.wait_for_function("el => el.readyState >= 1 && isFinite(el.duration)", arg=audio.element_handle())
    expected = sf.info(str(ref_dir / first["reference"][0])).duration
    assert audio.evaluate("el => el.duration") == pytest.approx(expected, abs=0.05)
    assert console.unexpected() == []
