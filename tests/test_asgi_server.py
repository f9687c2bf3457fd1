"""The test project served by uvicorn, over real HTTP on a loopback port: what a browser meets under ASGI.

One server per engine for the whole module; each test signs in through it and reads what the session row holds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from bench._servers import Server
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX

ROOT = Path(__file__).resolve().parent.parent


def _uvicorn(engine: str, database: str, log: Path) -> Server:
    """``uvicorn tests.asgi:application`` on a free loopback port, in a process group of its own."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "QSESSIONS_TEST_SERVE_DB": database,
        "QSESSIONS_TEST_SERVE_ENGINE": f"qsessions.backends.{engine}",
    }
    prefix = django_settings.CACHES["default"].get("KEY_PREFIX")
    if prefix:
        env["QSESSIONS_TEST_SERVE_CACHE_PREFIX"] = prefix

    def command(port: int) -> list[str]:
        options = ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning"]
        return [sys.executable, "-m", "uvicorn", "tests.asgi:application", *options]

    return Server.listening("uvicorn", command, env, log, cwd=ROOT)


@pytest.fixture(scope="module", params=["db", "cached_db"])
def server(
    request: pytest.FixtureRequest, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    from django.db import connection

    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    running = _uvicorn(request.param, connection.settings_dict["NAME"], log)
    yield running
    running.stop()


def _client(server: Server, user_agent: str) -> httpx.Client:
    return httpx.Client(base_url=server.url(""), headers={"User-Agent": user_agent}, timeout=30)


def _row(client: httpx.Client) -> Session:
    return Session.objects.select_related("user").get(pk=client.cookies[django_settings.SESSION_COOKIE_NAME])


@pytest.mark.django_db(transaction=True)
def test_login_over_asgi_records_user_ip_and_user_agent(server: Server, user: Any) -> None:
    with _client(server, CHROME_ANDROID) as client:
        response = client.post("/async/login/", data={"username": "alice", "password": "secret"})
        assert response.status_code == 200, server._log_tail()
        row = _row(client)
        assert (row.user, row.ip, row.user_agent) == (user, "127.0.0.1", CHROME_ANDROID)
        assert row.created_at is not None
        assert row.last_activity is not None

        assert client.get("/async/read/").json()["user"] == "alice"
        assert client.get("/async/write/").json() == {"counter": 1}
        assert _row(client).get_decoded()["counter"] == 1


@pytest.mark.django_db(transaction=True)
def test_new_user_agent_over_asgi_is_recorded(server: Server, user: Any) -> None:
    with _client(server, CHROME_ANDROID) as client:
        assert client.post("/async/login/", data={"username": "alice", "password": "secret"}).status_code == 200
        client.headers["User-Agent"] = FIREFOX_LINUX
        # A request that only reads its session: the new client is recorded by the activity update.
        assert client.get("/async/read/").json()["user"] == "alice"
        row = _row(client)
        assert (row.ip, row.user_agent) == ("127.0.0.1", FIREFOX_LINUX)
