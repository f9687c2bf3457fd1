"""A live server and real headless Chromium browsers, for the tests marked ``browser``.

Chromium and its driver are Debian's (``apt-get install chromium chromium-driver``), found at fixed paths so that
Selenium Manager never downloads a browser; ``QSESSIONS_CHROMIUM`` and ``QSESSIONS_CHROMEDRIVER`` point elsewhere.
When they are missing the tests fail: asking for browser tests and getting none must not look like a pass.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.sessions.backends.base import SessionBase
from pytest_django.live_server_helper import LiveServer


@pytest.fixture
def live_server(request: pytest.FixtureRequest, engine: type[SessionBase]) -> Iterator[LiveServer]:
    """pytest-django's live server (at its address), started for each test once ``engine`` has set ``SESSION_ENGINE``.

    pytest-django's own fixture serves the whole run from one handler, whose session middleware keeps the engine it
    was built with; each test here needs the engine it is parametrized with.
    """
    address = request.config.getvalue("liveserver") or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    server = LiveServer(address)
    yield server
    server.stop()


def _executable(variable: str, default: str) -> str:
    path = os.environ.get(variable, default)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"The browser tests need {path}, which is missing: apt-get install chromium chromium-driver, "
            f"or set {variable} to where it is.",
            pytrace=False,
        )
    return path


@pytest.fixture
def browser() -> Iterator[Callable[[], Any]]:
    """``browser()`` opens one more headless Chromium, with a profile of its own: cookies shared with no other."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("The browser tests need Selenium: run them with scripts/test -m browser.", pytrace=False)
    chromium = _executable("QSESSIONS_CHROMIUM", "/usr/bin/chromium")
    chromedriver = _executable("QSESSIONS_CHROMEDRIVER", "/usr/bin/chromedriver")
    opened: list[tuple[Any, str]] = []

    def open_browser() -> Any:
        profile = tempfile.mkdtemp(prefix="qsessions-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,900",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        try:
            driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        except Exception:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        opened.append((driver, profile))
        return driver

    yield open_browser
    for driver, profile in opened:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
