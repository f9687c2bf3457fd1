"""Revocation is final on ``cached_db``: a request that loaded a session before it was revoked, logged out or moved
to a new key cannot bring it back by writing the cache afterwards.

The races are replayed step by step: the revocation runs inside the racing request, right after it read the row
(a cache miss) or wrote it (a save). Then a threaded run mixes loads, saves and revocations against the real
database and cache. These tests run outside a transaction (``transaction=True``): a revocation's tombstones are
written when it commits, which a test transaction never does.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.core.cache import caches
from django.db import OperationalError, connection, connections, transaction
from django.test import Client

from qsessions.backends import base, tombstones
from qsessions.backends.cached_db import KEY_PREFIX, SessionStore
from qsessions.backends.tombstones import PREFIX as TOMBSTONE_PREFIX
from qsessions.models import Session, make_public_id
from qsessions.revoke import revoke_all_sessions, revoke_session
from tests.conftest import CHROME_ANDROID, saved

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _cached_db(settings: Any) -> None:
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"


def _logout(key: str, user: Any) -> None:
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    client.cookies[django_settings.SESSION_COOKIE_NAME] = key
    assert client.get("/logout/").status_code == 200


def _select_then_delete(key: str, user: Any) -> None:
    features = connection.features
    returning = features.can_return_columns_from_insert
    features.can_return_columns_from_insert = False
    try:
        assert Session.objects.filter(user=user).delete()[0] == 1
    finally:
        features.can_return_columns_from_insert = returning


#: Every way a session ends on purpose, given its key and its user.
ENDINGS: dict[str, Callable[[str, Any], Any]] = {
    "revoke_session": lambda key, user: revoke_session(user, make_public_id(key)),
    "revoke_all_sessions": lambda key, user: revoke_all_sessions(user),
    "Session.delete": lambda key, user: Session.objects.get(pk=key).delete(),
    "QuerySet.delete": lambda key, user: Session.objects.filter(pk=key).delete(),
    "QuerySet.delete without RETURNING": _select_then_delete,
    "delete_keys": lambda key, user: Session.objects.filter(user=user).delete_keys(),
    "store.delete": lambda key, user: SessionStore(key).delete(),
    "store.flush": lambda key, user: SessionStore(key).flush(),
    "cycle_key": lambda key, user: SessionStore(key).cycle_key(),
    "logout": _logout,
}


def _once_after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, then: Callable[[], Any]) -> None:
    """Patch ``owner.name`` so that its first call runs the original, then ``then()``, then returns."""
    original = getattr(owner, name)

    def patched(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(owner, name, original)
        result = original(*args, **kwargs)
        then()
        return result

    monkeypatch.setattr(owner, name, patched)


def _assert_ended(key: str) -> None:
    """No row, and neither a store nor a request with this key is signed in."""
    assert not Session.objects.filter(pk=key).exists()
    fresh = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert fresh.load() == {}
    assert fresh.session_key is None
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    client.cookies[django_settings.SESSION_COOKIE_NAME] = key
    assert client.get("/read/").json()["user"] == ""


def _uncached(user: Any) -> str:
    """A signed-in session whose entry is not in the cache (evicted, or never read since a restart)."""
    key = saved(SessionStore, user).session_key
    caches["default"].delete(KEY_PREFIX + key)
    return key


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_removes_the_entry_as_well_as_writing_the_tombstone(ending, user):
    # The published 2.x package reads the entry alone: with it gone, it finds no row either.
    key = saved(SessionStore, user).session_key
    assert caches["default"].get(KEY_PREFIX + key) is not None
    ENDINGS[ending](key, user)
    assert caches["default"].get(KEY_PREFIX + key) is None
    assert caches["default"].get(TOMBSTONE_PREFIX + key) == 1


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_load_that_read_the_row_before_the_end_cannot_bring_it_back(ending, user, monkeypatch):
    key = _uncached(user)
    _once_after(monkeypatch, base, "select_live_row", lambda: ENDINGS[ending](key, user))

    racing = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert racing.load()[SESSION_KEY] == str(user.pk)

    # The racing request did write its entry back: only the tombstone stands in its way.
    assert caches["default"].get(KEY_PREFIX + key) is not None
    _assert_ended(key)


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_save_that_wrote_the_row_before_the_end_cannot_bring_it_back(ending, user, monkeypatch):
    key = saved(SessionStore, user).session_key
    racing = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    racing["cart"] = [1]
    _once_after(monkeypatch, base.QSessionStoreMixin, "_write", lambda: ENDINGS[ending](key, user))

    racing.save()

    assert caches["default"].get(KEY_PREFIX + key)["cart"] == [1]
    _assert_ended(key)


@pytest.mark.usefixtures("close_thread_connections")
@pytest.mark.parametrize("ending", ["revoke_session", "store.flush", "logout"])
async def test_aload_that_read_the_row_before_the_end_cannot_bring_it_back(ending, user, monkeypatch):
    key = await sync_to_async(_uncached)(user)
    _once_after(monkeypatch, base, "select_live_row", lambda: ENDINGS[ending](key, user))

    racing = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert (await racing.aload())[SESSION_KEY] == str(user.pk)

    assert await caches["default"].aget(KEY_PREFIX + key) is not None
    fresh = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await fresh.aload() == {}
    assert fresh.session_key is None
    assert not await fresh.aexists(key)
    await sync_to_async(_assert_ended)(key)


@pytest.mark.usefixtures("close_thread_connections")
@pytest.mark.parametrize("ending", ["revoke_session", "store.flush", "logout"])
async def test_asave_that_wrote_the_row_before_the_end_cannot_bring_it_back(ending, user, monkeypatch):
    key = (await sync_to_async(saved)(SessionStore, user)).session_key
    racing = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await racing.aset("cart", [1])
    _once_after(monkeypatch, base.QSessionStoreMixin, "_write", lambda: ENDINGS[ending](key, user))

    await racing.asave()

    assert (await caches["default"].aget(KEY_PREFIX + key))["cart"] == [1]
    fresh = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert await fresh.aload() == {}
    await sync_to_async(_assert_ended)(key)


@pytest.mark.usefixtures("close_thread_connections")
async def test_async_logout_and_cycle_key_write_tombstones(user):
    store = await sync_to_async(saved)(SessionStore, user)
    old_key = store.session_key
    await store.acycle_key()
    assert await caches["default"].aget(TOMBSTONE_PREFIX + old_key) == 1
    new_key = store.session_key
    await store.aflush()
    assert await caches["default"].aget(TOMBSTONE_PREFIX + new_key) == 1
    await sync_to_async(_assert_ended)(old_key)
    await sync_to_async(_assert_ended)(new_key)


def test_tombstones_live_as_long_as_any_entry_they_outvote(user, settings, monkeypatch):
    written: list[tuple[dict[str, int], int]] = []
    end = tombstones._end

    def recorded(cache: Any, tombstone_keys: list[str], entries: list[str], seconds: int) -> None:
        written.append((dict.fromkeys(tombstone_keys, 1), seconds))
        end(cache, tombstone_keys, entries, seconds)

    monkeypatch.setattr(tombstones, "_end", recorded)
    settings.SESSION_COOKIE_AGE = 3600

    short = saved(SessionStore, user)
    short.set_expiry(60)
    short.save()
    revoke_session(user, make_public_id(short.session_key))
    # A save of another request would give its entry SESSION_COOKIE_AGE: the tombstone outlives that.
    assert 3600 < written[-1][1] <= 3600 + 600

    long = saved(SessionStore, user)
    long.set_expiry(30 * 86400)
    long.save()
    SessionStore(long.session_key).delete()
    assert 30 * 86400 < written[-1][1] <= 30 * 86400 + 600
    assert written[-1][0] == {TOMBSTONE_PREFIX + long.session_key: 1}

    # Revoking many: the longest-lived of them sets the timeout, wherever its row comes in the database's answer.
    keys = set()
    for expiry in (60, 30 * 86400, 120):
        store = saved(SessionStore, user)
        store.set_expiry(expiry)
        store.save()
        keys.add(TOMBSTONE_PREFIX + store.session_key)
    user.session_set.all().delete()
    assert set(written[-1][0]) == keys
    assert 30 * 86400 < written[-1][1] <= 30 * 86400 + 600


@pytest.mark.parametrize("atomic", [False, True])
def test_a_cached_db_store_used_under_another_engine_ends_its_own_sessions(user, settings, atomic):
    """Whatever SESSION_ENGINE says, a cached_db store's delete() reaches its own cache."""
    settings.SESSION_ENGINE = "qsessions.backends.db"
    store = saved(SessionStore, user, theme="dark")
    key = store.session_key
    with transaction.atomic() if atomic else contextlib.nullcontext():
        store.delete()
        assert not store.exists(key)
    assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}
    assert caches["default"].get(TOMBSTONE_PREFIX + key) == 1


def count_round_trips(
    cache: Any,
    monkeypatch: pytest.MonkeyPatch,
    names: tuple[str, ...] = ("get", "get_many", "set", "set_many", "delete", "delete_many", "has_key"),
) -> list[str]:
    """The names of the cache operations (among ``names``, sync or async) called from outside the cache: a call made
    inside a counted one (``get_many`` calls ``get`` in some caches) is not counted again."""
    calls: list[str] = []
    depth = [0]

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def enter() -> None:
            if not depth[0]:
                calls.append(name)
            depth[0] += 1

        def call(*args: Any, **kwargs: Any) -> Any:
            enter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1

        async def acall(*args: Any, **kwargs: Any) -> Any:
            enter()
            try:
                return await method(*args, **kwargs)
            finally:
                depth[0] -= 1

        return acall if inspect.iscoroutinefunction(method) else call

    for name in names:
        monkeypatch.setattr(cache, name, counted(name, getattr(cache, name)))
    return calls


def test_a_signed_in_read_is_still_one_cache_round_trip_and_no_sql(user, monkeypatch, django_assert_num_queries):
    key = saved(SessionStore, user, theme="dark").session_key
    calls = count_round_trips(caches["default"], monkeypatch)
    store = SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    with django_assert_num_queries(0):
        assert store["theme"] == "dark"
    assert calls == ["get_many"]


def _contended(error: BaseException) -> bool:
    """The database's own answer to contention, not under test: SQLite refuses a statement while another connection
    writes, and InnoDB (MariaDB) picks a deadlock victim between a multi-row DELETE and an UPDATE, which take their
    row and index locks in opposite orders. Either statement then did nothing, as the checks below confirm."""
    if not isinstance(error, OperationalError):
        return False
    if connection.vendor == "sqlite":
        return "locked" in str(error)
    return connection.vendor == "mysql" and error.args[:1] == (1213,)


def _retrying(action: Callable[[], Any]) -> Any:
    for _ in range(1000):
        try:
            return action()
        except OperationalError as error:
            if not _contended(error):
                raise
            time.sleep(0.001)
    raise AssertionError("the database stayed locked")


# A threaded run: loads (some of them after an eviction, so that they read the row), saves and revocations of the
# same sessions, with a check after each revocation and at the end that none of them came back.

STRESS_SECONDS = 3.0
STRESS_ROUNDS = 10
STRESS_LIMIT_SECONDS = 60.0
WORKERS = 3
SESSIONS_PER_ROUND = 5


def _step(store: SessionStore, rng: random.Random) -> None:
    action = rng.random()
    if action < 0.3:
        # An evicted entry: this load reads the row and writes the entry back.
        caches["default"].delete(KEY_PREFIX + store.session_key)
        store.load()
    elif action < 0.6:
        store.load()
    else:
        store["n"] = rng.random()
        # UpdateError: revoked between its load and its save, which Django's middleware turns into a 400.
        with contextlib.suppress(UpdateError):
            store.save()


def _worker(keys: list[str], lock: threading.Lock, stop: threading.Event, errors: list[BaseException]) -> None:
    rng = random.Random()
    try:
        while not stop.is_set():
            with lock:
                key = rng.choice(keys) if keys else None
            if key is None:
                time.sleep(0.001)
                continue
            try:
                _step(SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3"), rng)
            except OperationalError as error:
                if not _contended(error):
                    raise
    except BaseException as error:
        errors.append(error)
    finally:
        connections.close_all()
        # Its cache clients too: Django closes them when a request finishes, and this thread ran none.
        caches.close_all()


def _end_all(keys: list[str], user: Any, round_number: int) -> None:
    """End these sessions, a different way each round."""
    way = round_number % 3
    if way == 0:
        assert revoke_all_sessions(user) == len(keys)
    elif way == 1:
        assert Session.objects.filter(pk__in=keys).delete()[0] == len(keys)
    else:
        for key in keys:
            SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").flush()


def test_revocations_stay_final_under_concurrent_loads_and_saves(user):
    # Thread switches inside a load or a save, not just between them: the races are a few statements wide.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    keys: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    errors: list[BaseException] = []
    revoked: list[str] = []
    threads = [threading.Thread(target=_worker, args=(keys, lock, stop, errors)) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    try:
        started = time.monotonic()
        round_number = 0
        # At least STRESS_ROUNDS, however slow a loaded machine is, within a bound.
        while not errors and (
            time.monotonic() < started + STRESS_SECONDS
            or (round_number < STRESS_ROUNDS and time.monotonic() < started + STRESS_LIMIT_SECONDS)
        ):
            batch = [_retrying(lambda: saved(SessionStore, user).session_key) for _ in range(SESSIONS_PER_ROUND)]
            with lock:
                keys[:] = batch
            time.sleep(0.005)
            _retrying(lambda: _end_all(batch, user, round_number))  # noqa: B023
            revoked += batch
            round_number += 1
            # The workers go on with these sessions for a while, as requests still running would; once the
            # revocation returned, none of their loads or saves brings a session back.
            time.sleep(0.005)
            with lock:
                keys.clear()
            for key in batch:
                loaded = _retrying(lambda: SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load())  # noqa: B023
                assert loaded == {}, key
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(switch_interval)
    assert errors == []
    assert round_number >= STRESS_ROUNDS
    for key in revoked:
        _assert_ended(key)
