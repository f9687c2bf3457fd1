"""Activity tracking: ``last_activity`` and a new client are written at most once per interval and never extend
the session, whatever the client does."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from qsessions.backends.cached_db import KEY_PREFIX
from qsessions.backends.payload import ROW_TIMES_KEY
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, saved
from tests.test_requests import AsyncClientAt

pytestmark = pytest.mark.django_db


def _signed_in_client(**defaults: Any) -> tuple[Client, Session]:
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3", **defaults)
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    return client, Session.objects.get(pk=client.cookies[django_settings.SESSION_COOKIE_NAME].value)


def _age_activity(key: str, seconds: float) -> None:
    """Make the session's last activity ``seconds`` older, in its row and in its cache entry."""
    row = Session.objects.get(pk=key)
    Session.objects.filter(pk=key).update(last_activity=row.last_activity - timedelta(seconds=seconds))
    from django.core.cache import caches

    entry = caches["default"].get(KEY_PREFIX + key)
    if entry is not None:
        expires_at, last_activity = entry[ROW_TIMES_KEY]
        entry[ROW_TIMES_KEY] = (expires_at, last_activity - seconds)
        caches["default"].set(KEY_PREFIX + key, entry, 3600)


def _session_statements(run: Any) -> list[str]:
    return [sql.split(None, 1)[0].upper() for sql in run.sql if "qsessions_session" in sql]


def _read_costs(engine: Any) -> list[str]:
    """The session's statements on a plain signed-in read: one SELECT on db, none on cached_db."""
    return [] if hasattr(engine, "cache_key_prefix") else ["SELECT"]


def test_a_fresh_session_writes_nothing_on_read(engine, user, statements):
    client, _ = _signed_in_client()
    with statements() as run:
        assert client.get("/read/").json()["user"] == "alice"
    assert _session_statements(run) == _read_costs(engine)


def test_activity_is_written_once_per_interval_without_extending_the_session(engine, user, statements):
    client, row = _signed_in_client()
    _age_activity(row.pk, 61)
    aged = Session.objects.get(pk=row.pk)

    with statements() as run:
        response = client.get("/read/")
    assert response.json()["user"] == "alice"
    assert _session_statements(run) == [*_read_costs(engine), "UPDATE"]
    # Not a save: no new cookie, no later expiry, no rewritten data.
    assert django_settings.SESSION_COOKIE_NAME not in response.cookies
    now = Session.objects.get(pk=row.pk)
    assert (now.expire_date, now.session_data, now.updated_at) == (aged.expire_date, aged.session_data, aged.updated_at)
    assert now.last_activity > aged.last_activity + timedelta(seconds=60)

    with statements() as run:
        client.get("/read/")
    assert _session_statements(run) == _read_costs(engine)


def test_interval_of_zero_turns_activity_off(engine, user, settings, statements):
    settings.QSESSIONS_ACTIVITY_INTERVAL = 0
    client, row = _signed_in_client()
    _age_activity(row.pk, 3600)
    with statements() as run:
        client.get("/read/")
    assert _session_statements(run) == _read_costs(engine)


def test_a_new_client_on_every_request_costs_one_update_and_never_extends(engine, user, statements):
    client, row = _signed_in_client()
    for index in range(3):
        address = f"10.0.0.{index + 10}"
        with statements() as run:
            response = client.get("/read/", REMOTE_ADDR=address)
        assert response.json()["user"] == "alice"
        assert _session_statements(run) == [*_read_costs(engine), "UPDATE"]
        assert django_settings.SESSION_COOKIE_NAME not in response.cookies
        now = Session.objects.get(pk=row.pk)
        assert (now.ip, now.expire_date) == (address, row.expire_date)


def test_a_session_whose_client_keeps_changing_expires_on_time(engine, user):
    client, row = _signed_in_client()
    store = engine(row.pk)
    store.set_expiry(2)
    store.save()
    deadline = Session.objects.get(pk=row.pk).expire_date.timestamp()
    index = 0
    while time.time() < deadline - 0.5:
        index += 1
        assert client.get("/read/", REMOTE_ADDR=f"10.0.1.{index}").json()["user"] == "alice"
        time.sleep(0.1)
    time.sleep(max(0.0, deadline - time.time()) + 0.1)
    assert client.get("/read/", REMOTE_ADDR="10.0.2.1").json()["user"] == ""


def test_a_changed_but_unsaved_session_records_nothing(engine, statements):
    # Django skips the save of a session changed by a request that failed with a server error.
    store = saved(engine)
    seen = engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    seen["a"] = 2
    with statements() as run:
        seen.record_activity()
    assert run.kinds == []
    assert Session.objects.get(pk=store.session_key).ip == "10.1.2.3"


def test_a_store_without_client_records_no_activity(engine, statements):
    store = saved(engine)
    _age_activity(store.session_key, 3600)
    elsewhere = engine(store.session_key)
    elsewhere.load()
    with statements() as run:
        elsewhere.record_activity()
    assert run.kinds == []


def test_a_concurrent_save_is_not_overwritten_in_the_cache(settings, session_cache):
    from qsessions.backends.cached_db import SessionStore

    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    store = saved(SessionStore, cart=[1])
    reader = SessionStore(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert reader["cart"] == [1]
    writer = SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    writer["cart"] = [1, 2]
    writer.save()

    reader.record_activity()
    assert Session.objects.get(pk=store.session_key).ip == "10.9.9.9"
    assert session_cache.get(KEY_PREFIX + store.session_key)["cart"] == [1, 2]
    assert SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")["cart"] == [1, 2]


def test_a_revoked_session_is_not_brought_back(engine, session_cache):
    store = saved(engine)
    seen = engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    seen.load()
    Session.objects.filter(pk=store.session_key).delete()
    seen.record_activity()
    assert not Session.objects.filter(pk=store.session_key).exists()
    assert session_cache.get(KEY_PREFIX + store.session_key) is None
    assert engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9").load() == {}


def test_a_cache_entry_of_the_published_package_is_replaced_from_the_row(settings, session_cache, statements):
    from qsessions.backends.cached_db import SessionStore

    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    store = saved(SessionStore)
    entry = session_cache.get(KEY_PREFIX + store.session_key)
    del entry[ROW_TIMES_KEY]
    session_cache.set(KEY_PREFIX + store.session_key, entry, 3600)

    first = SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    first.load()
    first.record_activity()
    second = SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    with statements() as run:
        second.load()
        second.record_activity()
    assert run.kinds == ["SELECT"]
    with statements() as run:
        SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3").record_activity()
    assert run.kinds == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_requests_record_activity_and_a_new_client(engine, user):
    from asgiref.sync import sync_to_async

    client = AsyncClientAt("10.7.7.7", CHROME_ANDROID)
    await client.post("/async/login/", {"username": "alice", "password": "secret"})
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    row = await Session.objects.aget(pk=key)
    await sync_to_async(_age_activity)(key, 61)

    elsewhere = AsyncClientAt("10.8.8.8", FIREFOX_LINUX)
    elsewhere.cookies = client.cookies
    assert (await elsewhere.get("/async/read/")).json()["user"] == "alice"
    now = await Session.objects.aget(pk=key)
    assert (now.ip, now.user_agent, now.expire_date) == ("10.8.8.8", FIREFOX_LINUX, row.expire_date)
    assert now.last_activity >= row.last_activity


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_arecord_activity_keeps_a_concurrent_save(engine, session_cache):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("cart", [1])
    await store.asave()
    reader = engine(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert await reader.aget("cart") == [1]
    writer = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await writer.aset("cart", [1, 2])
    await writer.asave()

    await reader.arecord_activity()
    assert (await Session.objects.aget(pk=store.session_key)).ip == "10.9.9.9"
    fresh = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await fresh.aget("cart") == [1, 2]


def test_recording_activity_never_rewrites_the_entry(settings, session_cache, statements, monkeypatch):
    """A request's activity goes to a key of its own: rewriting the entry could put back data that a concurrent
    request saved over since this one read it."""
    from qsessions.backends.cached_db import SEEN_PREFIX, SessionStore

    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    store = saved(SessionStore, cart=[1])
    reader = SessionStore(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert reader["cart"] == [1]
    written: list[str] = []
    for name in ("set", "add", "set_many", "delete"):
        method = getattr(session_cache, name)
        monkeypatch.setattr(
            session_cache,
            name,
            lambda key, *args, _method=method, **kwargs: (
                written.append(key if isinstance(key, str) else "many"),
                _method(key, *args, **kwargs),
            )[1],
        )

    with statements() as run:
        reader.record_activity()
    assert run.kinds == ["UPDATE"]
    assert written == [SEEN_PREFIX + store.session_key]

    # The next request from that client finds its activity and client recorded: nothing to write, no SQL.
    again = SessionStore(store.session_key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    with statements() as run:
        assert again["cart"] == [1]
        again.record_activity()
    assert run.kinds == []
