"""Tombstones owed in the database (``OwedTombstone``): when they are owed, how loads read them, what they cost.

The same in separate processes, on a cache server: ``test_owed_endings.py``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from qsessions.backends import cache_guard, tombstones
from qsessions.backends.cached_db import KEY_PREFIX, SessionStore
from qsessions.models import OwedTombstone, Session
from qsessions.revoke import revoke_all_sessions
from tests.conftest import CHROME_ANDROID, delete_behind_the_stores_back, ended_in_the_cache, saved

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _cached_db(settings: Any) -> None:
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"


def _load(key: str) -> dict[str, Any]:
    return SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()


def _cached(user: Any = None) -> str:
    key = saved(SessionStore, user, a=1).session_key
    assert _load(key)["a"] == 1
    assert caches["default"].get(KEY_PREFIX + key) is not None
    return key


def _owed(key: str, seconds: int = 600) -> None:
    OwedTombstone.objects.create(session_key=key, keep_until=timezone.now() + timedelta(seconds=seconds))


def test_a_load_reads_what_is_owed_once_a_second(monkeypatch, statements):
    monkeypatch.setattr(tombstones, "CHECK_EVERY", 60.0)
    key = _cached()
    cache_guard.owed_check_at = 0.0
    with statements() as first:
        assert _load(key)["a"] == 1
    with statements() as second:
        assert _load(key)["a"] == 1
    # The first reads what is owed (nothing), then the entry; the second only the entry.
    assert first.kinds == ["SELECT"]
    assert "qsessions_owedtombstone" in first.sql[0]
    assert second.kinds == []


def test_a_check_writes_the_owed_tombstones_and_forgets_them(user):
    key, elsewhere = _cached(user), _cached()
    # Ended by a process that could not reach the cache: the row is gone, its entry is not.
    delete_behind_the_stores_back(key)
    _owed(key)
    _owed("0" * 32, seconds=-1)
    cache_guard.owed_check_at = 0.0

    # Whatever session the next load reads.
    assert _load(elsewhere)["a"] == 1
    assert ended_in_the_cache(key)
    assert _load(key) == {}
    assert not OwedTombstone.objects.exists()
    # Past its time, a tombstone outvotes nothing: it is forgotten, not written.
    assert caches["default"].get(tombstones.PREFIX + "0" * 32) is None


async def test_an_async_load_reads_what_is_owed(user, close_thread_connections):
    key, elsewhere = await sync_to_async(_cached)(user), await sync_to_async(_cached)()
    await sync_to_async(delete_behind_the_stores_back)(key)
    await sync_to_async(_owed)(key)
    cache_guard.owed_check_at = 0.0

    assert (await SessionStore(elsewhere).aload())["a"] == 1
    assert await SessionStore(key).aload() == {}
    assert not await OwedTombstone.objects.aexists()


def test_an_ending_while_the_cache_is_known_to_fail_is_owed_in_its_transaction(user, flaky):
    keys = [saved(SessionStore, user).session_key for _ in range(2)]
    flaky.failing = True
    cache_guard.failed(caches["flaky"], ConnectionError("down"))

    with transaction.atomic():
        assert revoke_all_sessions(user) == 2
        assert OwedTombstone.objects.count() == 2
        transaction.set_rollback(True)
    # Rolled back with the DELETE: nothing ended, nothing owed.
    assert Session.objects.count() == 2
    assert not OwedTombstone.objects.exists()
    # Not even tried: the breaker is open.
    assert flaky.failed_calls == 0

    with transaction.atomic():
        assert revoke_all_sessions(user) == 2
    assert sorted(OwedTombstone.objects.values_list("session_key", flat=True)) == sorted(keys)


def test_an_ending_that_owes_returns_once_every_process_reads_it(user, flaky, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(tombstones.time, "sleep", waits.append)
    saved(SessionStore, user)
    flaky.failing = True

    assert revoke_all_sessions(user) == 1
    assert waits == [tombstones.CHECK_EVERY]
    with transaction.atomic():
        saved(SessionStore, user)
        assert revoke_all_sessions(user) == 1
        # Not before the rows are gone for every other connection.
        assert waits == [tombstones.CHECK_EVERY]
    assert waits == [tombstones.CHECK_EVERY] * 2


def test_endings_committed_together_wait_once(user, other_user, flaky, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(tombstones.time, "sleep", waits.append)
    saved(SessionStore, user)
    saved(SessionStore, other_user)
    flaky.failing = True
    cache_guard.failed(caches["flaky"], ConnectionError("down"))

    with transaction.atomic():
        assert revoke_all_sessions(user) == 1
        assert revoke_all_sessions(other_user) == 1
    assert waits == [tombstones.CHECK_EVERY]
    # A later ending waits again.
    saved(SessionStore, user)
    assert revoke_all_sessions(user) == 1
    assert waits == [tombstones.CHECK_EVERY] * 2


def test_an_ending_in_batches_waits_once(user, flaky, monkeypatch):
    from django.db import connection

    from qsessions import models

    waits: list[float] = []
    monkeypatch.setattr(tombstones.time, "sleep", waits.append)
    # Where the database has no DELETE … RETURNING: a SELECT and a DELETE per batch of keys.
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    monkeypatch.setattr(models, "DELETE_BATCH_SIZE", 2)
    keys = [saved(SessionStore, user).session_key for _ in range(5)]
    flaky.failing = True

    assert revoke_all_sessions(user) == 5
    assert waits == [tombstones.CHECK_EVERY]
    assert sorted(OwedTombstone.objects.values_list("session_key", flat=True)) == sorted(keys)


def test_a_failed_read_of_what_is_owed_is_logged_and_the_session_served(monkeypatch, caplog):
    key = _cached()
    monkeypatch.setattr(OwedTombstone._meta, "db_table", "qsessions_no_such_table")
    monkeypatch.setattr(tombstones, "_check_failing", False)
    cache_guard.owed_check_at = 0.0
    with caplog.at_level(logging.ERROR, logger="django.contrib.sessions"), transaction.atomic():
        assert _load(key)["a"] == 1
        # The caller's transaction survives the failed read.
        assert Session.objects.filter(pk=key).exists()
    # Logged once, not once a second.
    cache_guard.owed_check_at = 0.0
    assert _load(key)["a"] == 1
    assert [record.getMessage()[:55] for record in caplog.records] == [
        "Could not read the session tombstones owed to the cache"
    ]


def test_clearsessions_writes_what_is_owed(user):
    key = _cached(user)
    delete_behind_the_stores_back(key)
    _owed(key)
    call_command("clearsessions")
    assert ended_in_the_cache(key)
    assert not OwedTombstone.objects.exists()


def test_activity_on_a_row_gone_without_a_tombstone_writes_it(user):
    """What is left when the process that ended a session died between deleting its row and writing or owing its
    tombstone: the next activity update that finds no row writes it. (Async: ``test_cache_writes.py``.)"""
    key = _cached(user)
    store = SessionStore(key, user_agent="another browser", ip="10.9.9.9")
    assert store.load()["a"] == 1
    delete_behind_the_stores_back(key)

    store.record_activity()
    assert ended_in_the_cache(key)
    assert _load(key) == {}
