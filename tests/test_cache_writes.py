"""A cache that reads but refuses a write, on ``cached_db``: the request goes on from the row, and an entry that the
failed write should have replaced or removed is never served once the cache takes writes again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches

from qsessions import IP_SESSION_KEY
from qsessions.backends import cache_guard
from qsessions.backends.cached_db import KEY_PREFIX, SessionStore
from qsessions.backends.payload import ROW_TIMES_KEY
from qsessions.backends.tombstones import PREFIX as TOMBSTONE_PREFIX
from qsessions.models import Session
from qsessions.revoke import revoke_all_sessions
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, delete_behind_the_stores_back, saved
from tests.testapp.caches import KeyRefusingCache, WriteRefusingCache

pytestmark = pytest.mark.django_db
# The async tests run with transaction=True: the async ORM works in a thread of its own, outside a test transaction.

LOGGER = "django.contrib.sessions"


@pytest.fixture
def refusing(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[WriteRefusingCache]]:
    """The session cache is a ``WriteRefusingCache``; the breaker tries it again after 50 ms rather than seconds."""
    settings.CACHES = {**settings.CACHES, "refusing": {"BACKEND": "tests.testapp.caches.WriteRefusingCache"}}
    settings.SESSION_CACHE_ALIAS = "refusing"
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    monkeypatch.setattr(cache_guard, "RETRY_AFTER", 0.05)
    WriteRefusingCache.failing, WriteRefusingCache.failed_calls = False, 0
    caches["refusing"].clear()
    yield WriteRefusingCache
    WriteRefusingCache.failing = False


def _back(refusing: type[WriteRefusingCache]) -> None:
    """The cache takes writes again, and the breaker is ready to try it."""
    refusing.failing = False
    time.sleep(0.06)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER and record.levelno >= 40]


def _entry(key: str) -> Any:
    return caches["refusing"].get(KEY_PREFIX + key)


def _refused_write_message() -> str:
    return f"Error saving to cache ({caches['refusing']})"


def test_a_miss_whose_entry_is_refused_serves_the_row(refusing, caplog):
    key = saved(SessionStore, cart=[1]).session_key
    caches["refusing"].delete(KEY_PREFIX + key)
    refusing.failing = True

    store = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert store.load() == {"cart": [1]}
    assert store.session_key == key
    assert refusing.failed_calls == 1
    assert _errors(caplog) == [_refused_write_message()]
    assert cache_guard.retry_at > 0
    assert _entry(key) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_an_async_miss_whose_entry_is_refused_serves_the_row(refusing, caplog):
    store = SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("cart", [1])
    await store.asave()
    key = store.session_key
    await caches["refusing"].adelete(KEY_PREFIX + key)
    refusing.failing = True

    again = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await again.aload() == {"cart": [1]}
    assert refusing.failed_calls == 1
    assert _errors(caplog) == [_refused_write_message()]
    assert await caches["refusing"].aget(KEY_PREFIX + key) is None


def test_a_refused_save_never_lets_the_older_entry_be_served(refusing, caplog):
    key = saved(SessionStore, cart=[1]).session_key
    assert _entry(key)["cart"] == [1]
    refusing.failing = True

    store = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["cart"] = [1, 2]
    store.save()
    assert Session.objects.get(pk=key).get_decoded()["cart"] == [1, 2]
    assert _errors(caplog) == [_refused_write_message()]
    # The cache still holds the old entry: the store owes its removal.
    assert _entry(key)["cart"] == [1]
    assert cache_guard._owed == {KEY_PREFIX + key}

    _back(refusing)
    assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")["cart"] == [1, 2]
    assert cache_guard._owed == set()
    assert cache_guard.retry_at == 0.0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_a_refused_async_save_never_lets_the_older_entry_be_served(refusing, caplog):
    store = SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("cart", [1])
    await store.asave()
    key = store.session_key
    refusing.failing = True

    writer = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await writer.aset("cart", [1, 2])
    await writer.asave()
    assert _errors(caplog) == [_refused_write_message()]
    assert (await caches["refusing"].aget(KEY_PREFIX + key))["cart"] == [1]
    assert cache_guard._owed == {KEY_PREFIX + key}

    _back(refusing)
    assert await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aget("cart") == [1, 2]
    assert cache_guard._owed == set()


def test_a_refused_activity_record_never_lets_the_old_client_be_served(refusing, caplog):
    key = saved(SessionStore).session_key
    assert _entry(key)[IP_SESSION_KEY] == "10.1.2.3"
    refusing.failing = True

    elsewhere = SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    elsewhere.load()
    elsewhere.record_activity()
    assert Session.objects.get(pk=key).ip == "10.9.9.9"
    assert _errors(caplog) == [_refused_write_message()]
    assert cache_guard._owed == {KEY_PREFIX + key}

    _back(refusing)
    again = SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    again.load()
    # The stale entry went before the read: the row was read and cached, with the client it recorded.
    assert _entry(key)[IP_SESSION_KEY] == "10.9.9.9"
    assert again._stored_client == ("10.9.9.9", FIREFOX_LINUX)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_a_refused_async_activity_record_never_lets_the_old_client_be_served(refusing, caplog):
    store = SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("a", 1)
    await store.asave()
    key = store.session_key
    refusing.failing = True

    elsewhere = SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert await elsewhere.aget("a") == 1
    await elsewhere.arecord_activity()
    assert (await Session.objects.aget(pk=key)).ip == "10.9.9.9"
    assert _errors(caplog) == [_refused_write_message()]
    assert cache_guard._owed == {KEY_PREFIX + key}

    _back(refusing)
    again = SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert await again.aget("a") == 1
    assert (await caches["refusing"].aget(KEY_PREFIX + key))[IP_SESSION_KEY] == "10.9.9.9"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_activity_of_a_vanished_row_writes_its_tombstone(session_cache):
    store = SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("a", 1)
    await store.asave()
    key = store.session_key
    elsewhere = SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert await elsewhere.aget("a") == 1
    # Gone without a tombstone, as when the process that deleted it died before writing or owing one.
    await sync_to_async(delete_behind_the_stores_back)(key)
    assert await session_cache.aget(KEY_PREFIX + key) is not None

    await elsewhere.arecord_activity()
    assert await session_cache.aget(TOMBSTONE_PREFIX + key) == 1
    assert await session_cache.aget(KEY_PREFIX + key) is None
    assert await SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9").aload() == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_activity_on_an_entry_of_the_published_package_drops_the_entry(refusing, statements):
    store = SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("a", 1)
    await store.asave()
    key = store.session_key
    cache = caches["refusing"]
    entry = await cache.aget(KEY_PREFIX + key)
    del entry[ROW_TIMES_KEY]
    await cache.aset(KEY_PREFIX + key, entry, 3600)

    first = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await first.aget("a") == 1
    await first.arecord_activity()
    # Without the row's expiry no "seen" key can be timed: the entry goes, and the next load caches the row.
    assert await cache.aget(KEY_PREFIX + key) is None
    second = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await second.aget("a") == 1
    assert (await cache.aget(KEY_PREFIX + key))[ROW_TIMES_KEY][0] is not None


def test_a_revocation_in_a_transaction_whose_entry_deletes_are_refused_still_deletes_the_rows(
    refusing, user, caplog, monkeypatch
):
    # Three batches' worth of keys: after the first refused delete_many the rest are not tried.
    monkeypatch.setattr(cache_guard, "BATCH_SIZE", 2)
    keys = [saved(SessionStore, user=user).session_key for _ in range(5)]
    refusing.failing = True

    assert revoke_all_sessions(user) == 5
    assert not Session.objects.filter(pk__in=keys).exists()
    assert refusing.failed_calls == 1
    assert _errors(caplog) == [_refused_write_message()]


def test_a_store_without_a_key_loads_nothing_and_asks_no_cache(flaky):
    flaky.failing = True
    assert SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}
    assert flaky.failed_calls == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_an_async_store_without_a_key_loads_nothing_and_asks_no_cache(flaky):
    flaky.failing = True
    assert await SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3").aload() == {}
    assert flaky.failed_calls == 0


def test_exists_is_answered_by_a_cached_entry_without_sql(settings, django_assert_num_queries):
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    key = saved(SessionStore).session_key
    with django_assert_num_queries(0):
        assert SessionStore().exists(key)
    # A tombstone beside the entry: the row decides, and it is gone.
    Session.objects.filter(pk=key)._raw_delete(Session.objects.db)  # type: ignore[attr-defined]
    caches["default"].set(TOMBSTONE_PREFIX + key, 1, 60)
    with django_assert_num_queries(1):
        assert not SessionStore().exists(key)


@pytest.mark.django_db(transaction=True)
def test_a_tombstone_the_cache_says_it_did_not_store_is_owed_and_written_later(settings, monkeypatch, user, caplog):
    settings.CACHES = {**settings.CACHES, "naming": {"BACKEND": "tests.testapp.caches.KeyRefusingCache"}}
    settings.SESSION_CACHE_ALIAS = "naming"
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    monkeypatch.setattr(cache_guard, "RETRY_AFTER", 0.05)
    cache = caches["naming"]
    refused, stored = saved(SessionStore, user).session_key, saved(SessionStore, user).session_key
    monkeypatch.setattr(KeyRefusingCache, "refuse", frozenset({TOMBSTONE_PREFIX + refused}))
    # A request that loaded the session before it ended holds its entry.
    assert cache.get(KEY_PREFIX + refused) is not None

    assert revoke_all_sessions(user) == 2

    assert cache.get(TOMBSTONE_PREFIX + stored) == 1
    assert cache.get(TOMBSTONE_PREFIX + refused) is None
    # Until the tombstone is written, the cache is left alone: the entry it should outvote is never served.
    assert cache_guard.retry_at
    assert "did not store 1 tombstone" in str(caplog.records[-1].exc_info[1])
    assert SessionStore(refused, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}
    monkeypatch.setattr(KeyRefusingCache, "refuse", frozenset())
    time.sleep(0.06)
    assert SessionStore(refused, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}
    assert cache.get(TOMBSTONE_PREFIX + refused) == 1
    assert not cache_guard.retry_at
