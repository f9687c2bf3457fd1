"""The test project served by uvicorn, over real HTTP on a loopback port: what a browser meets under ASGI.

One server per engine for the whole module; each test signs in through it and reads what the session row holds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """``uvicorn tests.asgi:application`` on a free loopback port, in a process group of its own."""

    def __init__(self, engine: str, database: str) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="qsessions-uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "QSESSIONS_TEST_SERVE_DB": database,
            "QSESSIONS_TEST_SERVE_ENGINE": f"qsessions.backends.{engine}",
        }
        prefix = django_settings.CACHES["default"].get("KEY_PREFIX")
        if prefix:
            env["QSESSIONS_TEST_SERVE_CACHE_PREFIX"] = prefix
        # Another process may take the port between our look and uvicorn's bind: then uvicorn exits, and we retry.
        for _attempt in range(3):
            self.port = _free_port()
            command = [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--lifespan", "off", "--log-level", "warning"]
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
            )
            if self._wait_listening(timeout=30):
                return
        raise RuntimeError(f"uvicorn did not start:\n{self._log_tail()}")

    def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def _log_tail(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-3000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@pytest.fixture(scope="module", params=["db", "cached_db"])
def server(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[_Server]:
    from django.db import connection

    running = _Server(request.param, connection.settings_dict["NAME"])
    yield running
    running.stop()


def _client(server: _Server, user_agent: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"User-Agent": user_agent}, timeout=30)


def _row(client: httpx.Client) -> Session:
    return Session.objects.select_related("user").get(pk=client.cookies[django_settings.SESSION_COOKIE_NAME])


@pytest.mark.django_db(transaction=True)
def test_login_over_asgi_records_user_ip_and_user_agent(server: _Server, user: Any) -> None:
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
def test_new_user_agent_over_asgi_is_recorded(server: _Server, user: Any) -> None:
    with _client(server, CHROME_ANDROID) as client:
        assert client.post("/async/login/", data={"username": "alice", "password": "secret"}).status_code == 200
        client.headers["User-Agent"] = FIREFOX_LINUX
        # A request that only reads its session: the new client is recorded by the activity update.
        assert client.get("/async/read/").json()["user"] == "alice"
        row = _row(client)
        assert (row.ip, row.user_agent) == ("127.0.0.1", FIREFOX_LINUX)
