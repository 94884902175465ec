"""Headless Chromium for the tests that look at a page as a person does (the system's browser and
driver, as .ci/run installs them), and where their screenshots are kept."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Screenshots of the page as the browser tests saw it, kept for a person to look at.
ARTEFACTS = Path(os.environ.get("BONEAGE_TEST_ARTEFACTS", Path(__file__).parents[1] / "test-artefacts"))

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no system Chromium: apt-get install -y chromium chromium-driver (as .ci/run does)",
)


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A headless Chromium window of a desktop browser's width, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def screenshot(page: Any, artefact: str) -> None:
    """Keeps the page as test-artefacts/<artefact>.png."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(ARTEFACTS / f"{artefact}.png"))
