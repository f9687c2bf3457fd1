"""Channels consumers behind qsessions' middleware: the session knows the connection's client and its activity."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings as django_settings
from django.core.cache import caches
from django.test import Client

from qsessions import channels as qchannels
from qsessions.backends.cached_db import SEEN_PREFIX
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX


class _Consumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Answers each message with the user and the session's data.

    ``{"write": n}`` sets ``counter`` to ``n`` and saves the session; ``{"set": n}`` only sets it.
    """

    async def connect(self) -> None:
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        session = self.scope["session"]
        if "write" in content:
            await session.aset("counter", content["write"])
            await session.asave()
        elif "set" in content:
            await session.aset("counter", content["set"])
        await self.send_json({"user": self.scope["user"].get_username(), "data": dict(await session.aitems())})


class _HttpConsumer(AsyncHttpConsumer):  # type: ignore[misc]
    async def handle(self, body: bytes) -> None:
        await self.scope["session"].aset("counter", 1)
        await self.send_response(200, b"ok")


def _closing_caches(app: Any) -> Any:
    """``app``, closing the cache clients it opened when it ends: Django closes them when a request finishes, and a
    consumer is no request (memcached's sockets would otherwise be left to the garbage collector)."""

    async def run(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        finally:
            await sync_to_async(caches.close_all)()

    return run


_websocket_app = _closing_caches(qchannels.AuthMiddlewareStack(_Consumer.as_asgi()))
_http_app = _closing_caches(qchannels.SessionMiddlewareStack(_HttpConsumer.as_asgi()))


def _communicator(address: str, user_agent: str, key: str | None = None, **headers: str) -> WebsocketCommunicator:
    sent = [(b"user-agent", user_agent.encode())]
    if key is not None:
        sent.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()))
    sent += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    communicator = WebsocketCommunicator(_websocket_app, "/ws/", headers=sent)
    # What the server puts there; the application starts only once the test first awaits the communicator.
    communicator.scope["client"] = [address, 50000]
    return communicator


async def _login(address: str = "10.1.2.3", user_agent: str = CHROME_ANDROID) -> str:
    client = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=address)
    response = await sync_to_async(client.post)("/login/", {"username": "alice", "password": "secret"})
    assert response.status_code == 200
    return str(client.cookies[django_settings.SESSION_COOKIE_NAME].value)


async def _ask(communicator: WebsocketCommunicator, content: dict[str, Any] | None = None) -> dict[str, Any]:
    await communicator.send_json_to(content or {})
    answer: dict[str, Any] = await communicator.receive_json_from()
    return answer


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_connect_records_the_new_client(engine, user):
    key = await _login()
    communicator = _communicator("10.9.9.9", FIREFOX_LINUX, key)
    assert (await communicator.connect())[0]
    try:
        row = await Session.objects.select_related("user").aget(pk=key)
        assert (row.user, row.ip, row.user_agent) == (user, "10.9.9.9", FIREFOX_LINUX)
        answer = await _ask(communicator)
        assert answer["user"] == "alice"
        # The consumer sees only the application's keys.
        assert all(not name.startswith("_qsessions") for name in answer["data"])
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_save_records_the_connection_client(engine, user):
    key = await _login()
    communicator = _communicator("2001:db8::5", FIREFOX_LINUX, key)
    await communicator.connect()
    try:
        assert (await _ask(communicator, {"write": 7}))["data"]["counter"] == 7
    finally:
        await communicator.disconnect()
    row = await Session.objects.aget(pk=key)
    assert (row.ip, row.user_agent, row.get_decoded()["counter"]) == ("2001:db8::5", FIREFOX_LINUX, 7)


async def _age(engine: Any, key: str, seconds: float) -> Any:
    """Make the session's recorded activity ``seconds`` old, in the row and (by forgetting it) in the cache."""
    from datetime import timedelta

    from django.utils import timezone

    aged = timezone.now() - timedelta(seconds=seconds)
    await Session.objects.filter(pk=key).aupdate(last_activity=aged)
    if hasattr(engine, "cache_key_prefix"):
        await caches["default"].adelete_many([engine.cache_key_prefix + key, SEEN_PREFIX + key])
    return aged


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_activity_is_recorded_once_per_interval(engine, user, settings, monkeypatch):
    settings.QSESSIONS_ACTIVITY_INTERVAL = 60
    key = await _login()
    communicator = _communicator("10.1.2.3", CHROME_ANDROID, key)
    await communicator.connect()
    try:
        aged = await _age(engine, key, 120)
        # Within the interval since the connect: the message is not looked at.
        await _ask(communicator)
        assert (await Session.objects.aget(pk=key)).last_activity == aged

        # An interval later, the next message records the activity.
        later = time.monotonic() + 61
        monkeypatch.setattr(qchannels, "time", SimpleNamespace(monotonic=lambda: later))
        await _ask(communicator)
        recorded = (await Session.objects.aget(pk=key)).last_activity
        assert recorded > aged

        # And not again before another interval has passed.
        await _age(engine, key, 120)
        await _ask(communicator)
        assert (await Session.objects.aget(pk=key)).last_activity < recorded
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_activity_keeps_the_consumers_unsaved_changes(engine, user, settings, monkeypatch):
    settings.QSESSIONS_ACTIVITY_INTERVAL = 60
    key = await _login()
    communicator = _communicator("10.1.2.3", CHROME_ANDROID, key)
    await communicator.connect()
    try:
        # The consumer changes its session without saving it, then an interval later the next message is activity.
        assert (await _ask(communicator, {"set": 3}))["data"]["counter"] == 3
        aged = await _age(engine, key, 120)
        later = time.monotonic() + 61
        monkeypatch.setattr(qchannels, "time", SimpleNamespace(monotonic=lambda: later))
        assert (await _ask(communicator))["data"]["counter"] == 3
        row = await Session.objects.aget(pk=key)
        # Recorded by a store of its own: the activity is written, the unsaved change neither saved nor lost.
        assert row.last_activity > aged
        assert "counter" not in row.get_decoded()
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_activity_does_not_bring_back_a_revoked_session(engine, user, settings, monkeypatch):
    settings.QSESSIONS_ACTIVITY_INTERVAL = 60
    key = await _login()
    communicator = _communicator("10.9.9.9", FIREFOX_LINUX, key)
    await communicator.connect()
    try:
        await Session.objects.filter(pk=key).adelete()
        later = time.monotonic() + 61
        monkeypatch.setattr(qchannels, "time", SimpleNamespace(monotonic=lambda: later))
        await _ask(communicator)
    finally:
        await communicator.disconnect()
    assert not await Session.objects.filter(pk=key).aexists()
    fresh = engine(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await fresh.aload() == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_activity_tracking_off_records_only_the_connect(engine, user, settings, monkeypatch):
    settings.QSESSIONS_ACTIVITY_INTERVAL = 0
    key = await _login()
    communicator = _communicator("10.9.9.9", CHROME_ANDROID, key)
    await communicator.connect()
    try:
        assert (await Session.objects.aget(pk=key)).ip == "10.9.9.9"
        aged = await _age(engine, key, 3600)
        monkeypatch.setattr(qchannels, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + 10**6))
        await _ask(communicator)
        assert (await Session.objects.aget(pk=key)).last_activity == aged
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_anonymous_websocket_writes_no_session(engine):
    communicator = _communicator("10.1.2.3", CHROME_ANDROID)
    assert (await communicator.connect())[0]
    try:
        assert (await _ask(communicator))["user"] == ""
    finally:
        await communicator.disconnect()
    assert not await Session.objects.aexists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_behind_a_trusted_proxy(engine, user, settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    key = await _login()
    communicator = _communicator("10.0.0.1", CHROME_ANDROID, key, x_forwarded_for="6.6.6.6, 81.2.69.160")
    await communicator.connect()
    await communicator.disconnect()
    assert (await Session.objects.aget(pk=key)).ip == "81.2.69.160"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_forwarding_headers_are_not_trusted_by_default(engine, user):
    key = await _login()
    communicator = _communicator("10.9.9.9", CHROME_ANDROID, key, x_forwarded_for="6.6.6.6")
    await communicator.connect()
    await communicator.disconnect()
    assert (await Session.objects.aget(pk=key)).ip == "10.9.9.9"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_client_ip_function(engine, user, settings):
    settings.QSESSIONS_CLIENT_IP = "tests.testapp.client_ip.cf_connecting_ip"
    key = await _login()
    communicator = _communicator("10.0.0.1", CHROME_ANDROID, key, cf_connecting_ip="2001:DB8::1")
    await communicator.connect()
    await communicator.disconnect()
    assert (await Session.objects.aget(pk=key)).ip == "2001:db8::1"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_http_consumer_saves_with_the_client(engine):
    communicator = HttpCommunicator(_http_app, "GET", "/", headers=[(b"user-agent", FIREFOX_LINUX.encode())])
    communicator.scope["client"] = ["10.4.4.4", 50000]
    response = await communicator.get_response()
    assert response["status"] == 200
    cookie = next(value for name, value in response["headers"] if name.lower() == b"set-cookie").decode()
    key = cookie.split(";", 1)[0].split("=", 1)[1]
    row = await Session.objects.aget(pk=key)
    assert (row.ip, row.user_agent, row.get_decoded()) == ("10.4.4.4", FIREFOX_LINUX, {"counter": 1})


def test_scope_client_reads_the_scope_as_djangos_handler_does():
    scope = {
        "type": "websocket",
        "client": ["::1", 1],
        "headers": [(b"user-agent", b"a"), (b"user-agent", "\xe9".encode("latin-1"))],
    }
    assert qchannels.scope_client(scope) == ("::1", "a,\xe9")
    assert qchannels.scope_client({"type": "websocket", "headers": []}) == (None, "")


def test_qsessions_does_not_need_channels():
    """Without Channels installed, everything but ``qsessions.channels`` imports and works."""
    code = """
import sys
sys.modules["channels"] = None
import django
django.setup()
import qsessions.middleware, qsessions.backends.db, qsessions.backends.cached_db, qsessions.admin, qsessions.views
import qsessions.api, qsessions.checks, qsessions.revoke, qsessions.urls
try:
    import qsessions.channels
except ImportError:
    print("no channels")
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "no channels"), result.stderr
