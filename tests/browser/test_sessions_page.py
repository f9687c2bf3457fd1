"""The sessions page in real browsers: two signed-in browsers, one signs the other out, or itself.

Each test runs once per engine (the ``engine`` fixture, through ``live_server``), on whichever database and cache
the suite runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qsessions.models import Session, make_public_id
from tests.conftest import saved

pytestmark = pytest.mark.browser

ROWS = "tr[data-session-id]"
# The values of Selenium's By.CSS_SELECTOR and By.NAME. Nothing here imports Selenium, so that the default run, which
# leaves these tests out, collects this module on a machine without it.
CSS, NAME = "css selector", "name"


def sign_in(driver: Any, server: str) -> None:
    """Sign in as alice through the login form, the way the sessions page sends a signed-out visitor there."""
    driver.get(f"{server}/sessions/")
    assert "/accounts/login/" in driver.current_url
    driver.find_element(NAME, "username").send_keys("alice")
    driver.find_element(NAME, "password").send_keys("secret")
    driver.find_element(CSS, "button[type=submit]").click()
    wait_for_path(driver, server, "/sessions/")


def wait_until(driver: Any, condition: Callable[[Any], bool]) -> None:
    """Wait for a page that a click started to load: WebDriver's click returns before it has."""
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, 10).until(condition)


def wait_for_path(driver: Any, server: str, path: str) -> None:
    wait_until(driver, lambda driver: driver.current_url.removeprefix(server).startswith(path))


def session_id(driver: Any) -> str:
    """The public id of the browser's session, from its (HttpOnly, so only WebDriver sees it) session cookie."""
    return make_public_id(driver.get_cookie("sessionid")["value"])


def test_a_browser_signs_another_out(live_server: Any, browser: Callable[[], Any], user: Any, tmp_path: Path) -> None:
    first, second = browser(), browser()
    sign_in(first, live_server.url)
    sign_in(second, live_server.url)
    assert session_id(first) != session_id(second)

    first.refresh()
    rows = first.find_elements(CSS, ROWS)
    assert {row.get_attribute("data-session-id") for row in rows} == {session_id(first), session_id(second)}
    (current,) = first.find_elements(CSS, f"{ROWS}[data-current]")
    assert current.get_attribute("data-session-id") == session_id(first)
    assert current.get_attribute("aria-current") == "true"
    assert first.find_elements(CSS, "form.qsessions-revoke-others")
    first.save_screenshot(str(tmp_path / "sessions-page.png"))

    other = first.find_element(CSS, f"{ROWS}[data-session-id='{session_id(second)}']")
    other.find_element(CSS, "form[method=post] button[type=submit]").click()
    wait_until(first, lambda driver: len(driver.find_elements(CSS, ROWS)) == 1)
    assert first.find_element(CSS, ROWS).get_attribute("data-session-id") == session_id(first)

    second.get(f"{live_server.url}/sessions/")
    assert second.current_url.startswith(f"{live_server.url}/accounts/login/")
    first.refresh()
    assert first.current_url == f"{live_server.url}/sessions/"


def test_signing_out_the_current_session_signs_the_browser_out(
    live_server: Any, browser: Callable[[], Any], engine: Any, user: Any
) -> None:
    elsewhere = saved(engine, user)
    driver = browser()
    sign_in(driver, live_server.url)

    current = driver.find_element(CSS, f"{ROWS}[data-current]")
    current.find_element(CSS, "form[method=post] button[type=submit]").click()
    wait_for_path(driver, live_server.url, "/accounts/login/")

    driver.get(f"{live_server.url}/sessions/")
    assert driver.current_url.startswith(f"{live_server.url}/accounts/login/")
    assert list(Session.objects.filter(user=user).values_list("pk", flat=True)) == [elsewhere.session_key]
