"""A real Chromium (Debian's, never a Playwright download) driving the dashboard of the `service` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: What Chromium logs by itself when a request answers 4xx/5xx: expected where a test provokes an error.
FAILED_RESOURCE = "Failed to load resource"


@dataclass
class Console:
    """Console errors and uncaught page errors of one page."""

    errors: list[str] = field(default_factory=list)

    def unexpected(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped: the sync API runs an event loop in this thread until it stops, which would break tests
    after it that use asyncio.run."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) for browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture()
def console() -> Console:
    return Console()


@pytest.fixture()
def page(browser: object, console: Console) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("console", lambda msg: console.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    # A dialog would mean injected script ran (alert from a hostile file name): record it as an error.
    page.on("dialog", lambda dialog: (console.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    try:
        yield page
    finally:
        context.close()
