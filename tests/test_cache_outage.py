"""A cache outage on ``cached_db``: requests go on from the database, errors are logged once per outage, and what
changed meanwhile is not served stale once the cache is back."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.cache import caches
from django.test import Client

from qsessions.backends import cache_guard
from qsessions.backends.cached_db import KEY_PREFIX, SessionStore
from qsessions.backends.tombstones import PREFIX as TOMBSTONE_PREFIX
from qsessions.models import OwedTombstone, Session, make_public_id
from qsessions.revoke import revoke_all_sessions, revoke_session
from tests.conftest import CHROME_ANDROID, saved
from tests.test_requests import AsyncClientAt
from tests.testapp.caches import FlakyCache

# Outside a transaction: a revocation writes (or owes) its tombstones at once, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

LOGGER = "django.contrib.sessions"


@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The breaker tries the cache again after 50 ms rather than seconds."""
    monkeypatch.setattr(cache_guard, "RETRY_AFTER", 0.05)


def _back(flaky: type[FlakyCache]) -> None:
    """The cache answers again, and the breaker is ready to try it."""
    flaky.failing = False
    time.sleep(0.06)


def _client(key: str | None = None) -> Client:
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    if key is not None:
        client.cookies[django_settings.SESSION_COOKIE_NAME] = key
    return client


def _sign_in(client: Client) -> str:
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER and record.levelno == level]


def test_every_request_works_while_the_cache_is_down_and_one_error_is_logged(flaky, user, caplog):
    flaky.failing = True
    client = _client()
    key = _sign_in(client)
    assert client.get("/read/").json()["user"] == "alice"
    for counter in (1, 2, 3):
        assert client.get("/write/").json() == {"counter": counter}
    assert client.get("/read/").json()["data"]["counter"] == 3
    other = _client()
    _sign_in(other)
    assert revoke_session(user, make_public_id(key)) is True
    assert client.get("/read/").json()["user"] == ""
    assert other.get("/logout/").status_code == 200
    assert other.get("/read/").json()["user"] == ""

    # The first operation is the sign-in's write: a new key is not looked up, its INSERT is the check.
    assert _logged(caplog, logging.ERROR) == [f"Error saving to cache ({caches['flaky']})"]
    # The breaker left the cache alone after its first failure.
    assert flaky.failed_calls == 1


def test_a_session_revoked_during_an_outage_is_not_served_once_the_cache_is_back(flaky, user, quick_retry, caplog):
    client = _client()
    key = _sign_in(client)
    assert client.get("/read/").json()["user"] == "alice"
    assert caches["flaky"].get(KEY_PREFIX + key) is not None

    flaky.failing = True
    assert revoke_all_sessions(user) == 1
    assert client.get("/read/").json()["user"] == ""
    _back(flaky)

    # Both owed went first: the tombstone, and the deletion of the stale entry.
    assert _client(key).get("/read/").json()["user"] == ""
    assert caches["flaky"].get(KEY_PREFIX + key) is None
    assert caches["flaky"].get(TOMBSTONE_PREFIX + key) == 1
    assert not Session.objects.filter(pk=key).exists()
    assert len(_logged(caplog, logging.ERROR)) == 1
    assert _logged(caplog, logging.INFO) == [f"The session cache ({caches['flaky']}) works again."]


def test_a_logout_during_an_outage_is_final_once_the_cache_is_back(flaky, user, quick_retry):
    client = _client()
    key = _sign_in(client)
    assert client.get("/read/").json()["user"] == "alice"
    flaky.failing = True
    assert client.get("/logout/").status_code == 200
    _back(flaky)
    assert _client(key).get("/read/").json()["user"] == ""


def test_a_session_written_during_an_outage_is_not_served_stale(flaky, user, quick_retry):
    client = _client()
    _sign_in(client)
    assert client.get("/write/").json() == {"counter": 1}

    flaky.failing = True
    assert client.get("/write/").json() == {"counter": 2}
    _back(flaky)

    assert client.get("/read/").json()["data"]["counter"] == 2
    assert client.get("/write/").json() == {"counter": 3}


def test_a_cache_that_fails_now_and_then_never_fails_a_request(flaky, user, quick_retry, caplog):
    client = _client()
    _sign_in(client)
    for counter in range(1, 13):
        # Down for every other request, with the breaker ready to try it again each time.
        flaky.failing = counter % 2 == 0
        time.sleep(0.06)
        assert client.get("/write/").json() == {"counter": counter}
        assert client.get("/read/").json()["data"]["counter"] == counter
    # One error per outage (six), one line per recovery (five: the last outage lasts).
    assert len(_logged(caplog, logging.ERROR)) == 6
    assert len(_logged(caplog, logging.INFO)) == 5


def test_a_failed_try_after_the_pause_logs_nothing_more(flaky, user, quick_retry, caplog):
    key = saved(SessionStore, user).session_key
    flaky.failing = True
    for _ in range(3):
        time.sleep(0.06)
        assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["a"] == 1
    assert len(_logged(caplog, logging.ERROR)) == 1
    assert _logged(caplog, logging.INFO) == []
    # The owed invalidations were the probe each time, and are still owed.
    assert flaky.failed_calls == 3


def test_owed_entry_removals_are_bounded(flaky, caplog, monkeypatch):
    monkeypatch.setattr(cache_guard, "MAX_OWED", 2)
    cache_guard.owe([KEY_PREFIX + name for name in "abcd"])
    cache_guard.owe([KEY_PREFIX + "e"])
    assert cache_guard._owed == {KEY_PREFIX + "a", KEY_PREFIX + "b"}
    # One error per outage.
    assert _logged(caplog, logging.ERROR) == [
        "Too many session cache invalidations are waiting for the cache; 2 were dropped."
    ]


def test_owed_tombstones_are_not_bounded_by_the_process(flaky, user, monkeypatch, caplog):
    monkeypatch.setattr(cache_guard, "MAX_OWED", 2)
    keys = [saved(SessionStore, user).session_key for _ in range(4)]
    flaky.failing = True
    assert revoke_all_sessions(user) == 4
    # Owed in the database, every one: nothing dropped, nothing kept in the process.
    assert sorted(OwedTombstone.objects.values_list("session_key", flat=True)) == sorted(keys)
    assert cache_guard._owed == set()
    assert len(_logged(caplog, logging.ERROR)) == 1


@pytest.mark.usefixtures("close_thread_connections")
async def test_async_requests_work_while_the_cache_is_down(flaky, user, quick_retry, caplog):
    client = AsyncClientAt("10.1.2.3", CHROME_ANDROID)
    flaky.failing = True
    assert (await client.post("/async/login/", {"username": "alice", "password": "secret"})).status_code == 200
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert (await client.get("/async/read/")).json()["user"] == "alice"
    assert (await client.get("/async/write/")).json() == {"counter": 1}
    flaky.failing = False
    time.sleep(0.06)
    assert (await client.get("/async/read/")).json()["data"]["counter"] == 1
    assert (await client.get("/async/write/")).json() == {"counter": 2}
    assert await caches["flaky"].aget(KEY_PREFIX + key) is not None
    assert len(_logged(caplog, logging.ERROR)) == 1


@pytest.mark.usefixtures("close_thread_connections")
async def test_async_stores_owe_what_the_cache_missed(flaky, user, quick_retry):
    store = await sync_to_async(saved)(SessionStore, user)
    key = store.session_key
    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["a"] == 1

    flaky.failing = True
    writer = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await writer.aset("a", 2)
    await writer.asave()
    assert not await SessionStore(key).aexists("0" * 32)
    _back(flaky)
    # aload() wrote what was owed (the stale entry's removal) before it read the cache.
    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["a"] == 2

    flaky.failing = True
    await writer.aflush()
    _back(flaky)
    fresh = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await fresh.aload() == {}
    assert await caches["flaky"].aget(TOMBSTONE_PREFIX + key) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("backend", "location"),
    [
        ("django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:{port}/0"),
        ("django_redis.cache.RedisCache", "redis://127.0.0.1:{port}/0"),
        ("django.core.cache.backends.memcached.PyMemcacheCache", "127.0.0.1:{port}"),
    ],
    ids=["redis", "django-redis", "memcached"],
)
def test_an_unreachable_cache_server_takes_nothing_down(settings, user, caplog, backend, location):
    settings.CACHES = {
        **settings.CACHES,
        "unreachable": {"BACKEND": backend, "LOCATION": location.format(port=_closed_port())},
    }
    settings.SESSION_CACHE_ALIAS = "unreachable"
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    client = _client()
    key = _sign_in(client)
    assert client.get("/read/").json()["user"] == "alice"
    assert client.get("/write/").json() == {"counter": 1}
    assert client.get("/read/").json()["data"]["counter"] == 1
    assert revoke_session(user, make_public_id(key)) is True
    assert client.get("/read/").json()["user"] == ""
    _sign_in(client)
    assert client.get("/logout/").status_code == 200
    assert client.get("/read/").json()["user"] == ""
    # Logging in first asked the cache whether a new key was taken.
    assert _logged(caplog, logging.ERROR) == [f"Error saving to cache ({caches['unreachable']})"]


def test_a_failed_try_keeps_what_is_owed_until_the_cache_takes_it(flaky, user, quick_retry):
    key = saved(SessionStore, user).session_key
    flaky.failing = True
    writer = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    writer["a"] = 2
    writer.save()
    assert cache_guard._owed == {KEY_PREFIX + key}

    time.sleep(0.06)
    # The try writes what is owed first; it fails, so the removal of the stale entry is still owed.
    assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["a"] == 2
    assert cache_guard._owed == {KEY_PREFIX + key}
    assert cache_guard.retry_at > 0

    _back(flaky)
    assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["a"] == 2
    assert cache_guard._owed == set()
    assert cache_guard.retry_at == 0.0


def test_what_is_owed_meanwhile_keeps_the_breaker_open(flaky, user, quick_retry, monkeypatch, caplog):
    key = saved(SessionStore, user).session_key
    flaky.failing = True
    SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()
    _back(flaky)
    # While the cache is probed, another thread's save fails and owes the removal of its entry.
    probe = FlakyCache.has_key

    def probed_while_another_save_failed(self: FlakyCache, *args: Any, **kwargs: Any) -> Any:
        cache_guard.owe([KEY_PREFIX + "elsewhere"])
        return probe(self, *args, **kwargs)

    monkeypatch.setattr(FlakyCache, "has_key", probed_while_another_save_failed)
    assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["a"] == 1
    assert cache_guard.retry_at > 0
    assert cache_guard._owed == {KEY_PREFIX + "elsewhere"}
    assert _logged(caplog, logging.INFO) == []

    time.sleep(0.06)
    assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["a"] == 1
    assert cache_guard._owed == set()
    assert cache_guard.retry_at == 0.0
    assert _logged(caplog, logging.INFO) == [f"The session cache ({caches['flaky']}) works again."]


@pytest.mark.usefixtures("close_thread_connections")
async def test_async_tries_probe_the_cache_and_a_failed_one_logs_nothing_more(flaky, user, caplog):
    store = await sync_to_async(saved)(SessionStore, user)
    key = store.session_key
    flaky.failing = True
    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["a"] == 1
    # Before the pause is over the cache is left alone.
    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["a"] == 1
    assert flaky.failed_calls == 1

    _pause_over()
    # Nothing is owed: the try is a probe, and it fails.
    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["a"] == 1
    assert flaky.failed_calls == 2
    assert len(_logged(caplog, logging.ERROR)) == 1

    flaky.failing = False
    _pause_over()
    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["a"] == 1
    assert cache_guard.retry_at == 0.0
    assert _logged(caplog, logging.INFO) == [f"The session cache ({caches['flaky']}) works again."]
    assert await caches["flaky"].aget(KEY_PREFIX + key) is not None


def _pause_over() -> None:
    """The breaker's pause ends now, however long it was: a slow machine cannot make it end early."""
    cache_guard.retry_at = time.monotonic()
