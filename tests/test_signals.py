"""``session_created`` and ``session_client_changed``: sent when, and only when, what they say happened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.dispatch import Signal
from django.test import Client

from qsessions.models import Session, make_public_id
from qsessions.signals import session_client_changed, session_created
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, saved
from tests.test_requests import AsyncClientAt

pytestmark = pytest.mark.django_db


def _receive(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, signal: Any, **kwargs: Any) -> None:
        sent.append({"sender": sender, **kwargs})

    signal.connect(receiver)
    yield sent
    signal.disconnect(receiver)


@pytest.fixture
def created() -> Iterator[list[dict[str, Any]]]:
    yield from _receive(session_created)


@pytest.fixture
def client_changed() -> Iterator[list[dict[str, Any]]]:
    yield from _receive(session_client_changed)


def _key(client: Any) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def _login(address: str = "10.1.2.3", user_agent: str = CHROME_ANDROID) -> Client:
    client = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=address)
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    return client


def test_session_created_on_login(engine, user, created):
    client = _login()
    [signal] = created
    assert signal["sender"] is Session
    assert signal["user"] == user
    assert signal["request"].path == "/login/"
    session = signal["session"]
    assert session.public_id == make_public_id(_key(client))
    assert (session.user, session.ip, session.user_agent) == (user, "10.1.2.3", CHROME_ANDROID)
    assert session.device == "K / Android 10 / Chrome Mobile 118.0.0.0"
    assert session.created_at is not None
    assert session.expire_date > session.created_at
    # Nothing else signs anybody in.
    client.get("/read/")
    client.get("/write/")
    assert len(created) == 1


def test_client_changed_once_per_change(engine, user, client_changed):
    client = _login()
    client.get("/read/")
    assert client_changed == []

    elsewhere = Client(HTTP_USER_AGENT=FIREFOX_LINUX, REMOTE_ADDR="10.9.9.9")
    elsewhere.cookies = client.cookies
    assert elsewhere.get("/read/").json()["user"] == "alice"
    assert client_changed == [
        {
            "sender": Session,
            "session_id": make_public_id(_key(client)),
            "user_id": user.pk,
            "old_ip": "10.1.2.3",
            "old_user_agent": CHROME_ANDROID,
            "ip": "10.9.9.9",
            "user_agent": FIREFOX_LINUX,
        }
    ]
    elsewhere.get("/read/")
    assert len(client_changed) == 1


def test_client_changed_on_a_request_that_saves(engine, user, client_changed):
    client = _login()
    elsewhere = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.9.9.9")
    elsewhere.cookies = client.cookies
    assert elsewhere.get("/write/").json() == {"counter": 1}
    assert [(signal["old_ip"], signal["ip"]) for signal in client_changed] == [("10.1.2.3", "10.9.9.9")]
    assert Session.objects.get(pk=_key(client)).ip == "10.9.9.9"


def test_no_signal_for_a_session_revoked_while_the_request_ran(engine, user, client_changed):
    store = saved(engine, user)
    elsewhere = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.9.9.9")
    assert elsewhere["a"] == 1
    Session.objects.filter(pk=store.session_key).delete()
    elsewhere.record_activity()
    assert client_changed == []
    assert not Session.objects.filter(pk=store.session_key).exists()


def test_no_signal_outside_a_request(engine, user, client_changed):
    store = saved(engine, user)
    # A store opened without a client never changes the recorded one.
    reopened = engine(store.session_key)
    assert reopened["a"] == 1
    reopened.record_activity()
    assert client_changed == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_twin_sends_the_signal(engine, user, client_changed):
    store = await _asaved(engine, user)
    elsewhere = engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert await elsewhere.aget("a") == 1
    await elsewhere.arecord_activity()
    assert [(signal["old_ip"], signal["ip"], signal["user_agent"]) for signal in client_changed] == [
        ("10.1.2.3", "10.9.9.9", FIREFOX_LINUX)
    ]
    row = await Session.objects.aget(pk=store.session_key)
    assert (row.ip, row.user_agent) == ("10.9.9.9", FIREFOX_LINUX)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_twin_after_a_direct_aload_sends_the_signal_with_the_user(engine, user, client_changed):
    store = await _asaved(engine, user)
    elsewhere = engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    # aload() returns the data without keeping it: the signal must not load it again, synchronously.
    assert (await elsewhere.aload())["a"] == 1
    await elsewhere.arecord_activity()
    assert [(signal["user_id"], signal["ip"]) for signal in client_changed] == [(user.pk, "10.9.9.9")]


async def _asaved(engine: Any, user: Any) -> Any:
    from asgiref.sync import sync_to_async

    return await sync_to_async(saved)(engine, user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_login_sends_session_created(engine, user, created):
    client = AsyncClientAt("10.7.7.7", CHROME_ANDROID)
    assert (await client.post("/async/login/", {"username": "alice", "password": "secret"})).status_code == 200
    [signal] = created
    assert (signal["session"].ip, signal["session"].public_id) == ("10.7.7.7", make_public_id(_key(client)))


def test_session_created_carries_the_kept_creation_time(engine, user, created):
    from datetime import timedelta

    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    assert client.get("/write/").status_code == 200
    key = _key(client)
    day_ago = Session.objects.get(pk=key).created_at - timedelta(days=1)
    Session.objects.filter(pk=key).update(created_at=day_ago)
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    assert created[0]["session"].created_at == day_ago
    assert Session.objects.get(pk=_key(client)).created_at == day_ago
