"""Test support: headless Debian Chromium driven by Playwright for Python (no browser download: the system one)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is not installed: `make test` installs it (apt-get install -y chromium, as root)"
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium, headless, launched through Playwright."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
