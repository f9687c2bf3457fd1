"""Session fixation: signing in moves the session to a new key, and nothing stays reachable under the old one.

``login()`` calls ``cycle_key()`` (``alogin()``: ``acycle_key()``). The new row must carry what the old one did
(user, client, ``created_at``: the session goes on, under a new name), and the old key must name nothing, neither
in the database nor in the cache, so a key an attacker planted or saw before the login is worth nothing after it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.test import Client

from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, saved
from tests.test_requests import AsyncClientAt

LOGIN = {"username": "alice", "password": "secret"}


def _cached(engine: Any, session_key: str) -> Any:
    """The cache entry that ``session_key`` reaches on cached_db (``None`` if none, and always on db).

    An entry left behind under a tombstone reaches nothing: the tombstone wins (see docs/reliability.md).
    """
    prefix = getattr(engine, "cache_key_prefix", None)
    if prefix is None:
        return None
    from qsessions.backends.tombstones import PREFIX as TOMBSTONE_PREFIX

    found = engine()._cache.get_many([prefix + session_key, TOMBSTONE_PREFIX + session_key])
    return None if TOMBSTONE_PREFIX + session_key in found else found.get(prefix + session_key)


def _backdate(session_key: str) -> Session:
    """Make the row's ``created_at`` a day old, so that a new row written "now" cannot be mistaken for it."""
    created_at = Session.objects.get(pk=session_key).created_at
    Session.objects.filter(pk=session_key).update(created_at=created_at - timedelta(days=1))
    return Session.objects.get(pk=session_key)


def _assert_moved(engine: Any, old: Session, new_key: str, user: Any) -> None:
    assert new_key != old.session_key
    assert not Session.objects.filter(pk=old.session_key).exists()
    assert _cached(engine, old.session_key) is None
    new = Session.objects.get(pk=new_key)
    assert (new.user_id, new.ip, new.user_agent, new.created_at) == (user.pk, old.ip, old.user_agent, old.created_at)


def _anonymous_visit(client: Any) -> Session:
    """A visitor's session before signing in: what a fixation attack would plant."""
    response = client.get("/write/")
    assert response.status_code == 200
    return _backdate(client.cookies[django_settings.SESSION_COOKIE_NAME].value)


@pytest.mark.django_db
@pytest.mark.parametrize("cached", [True, False], ids=["loaded-from-cache", "loaded-from-row"])
def test_login_moves_the_session_to_a_new_key(engine, user, cached):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    old = _anonymous_visit(client)
    if cached and hasattr(engine, "cache_key_prefix"):
        # The cache entry is read on login; it does not carry created_at, which must still come from the row.
        assert client.get("/read/").status_code == 200
        assert _cached(engine, old.session_key) is not None
    elif hasattr(engine, "cache_key_prefix"):
        engine()._cache.delete(engine.cache_key_prefix + old.session_key)

    assert client.post("/login/", LOGIN).status_code == 200

    new_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    _assert_moved(engine, old, new_key, user)
    assert Session.objects.get(pk=new_key).get_decoded()["counter"] == 1

    # Whoever kept the old cookie is a stranger: no user, and none of the session's data.
    stranger = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.6.6.6")
    stranger.cookies[django_settings.SESSION_COOKIE_NAME] = old.session_key
    assert stranger.get("/read/").json() == {"user": "", "data": {}}
    assert client.get("/read/").json()["user"] == "alice"


@pytest.mark.django_db
def test_cycle_key_of_a_store_keeps_created_at(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["theme"] = "dark"
    store.save()
    old = _backdate(store.session_key)

    reloaded = engine(old.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    reloaded.cycle_key()
    reloaded[SESSION_KEY] = str(user.pk)
    reloaded.save()

    _assert_moved(engine, old, reloaded.session_key, user)


@pytest.mark.django_db
def test_cycle_key_of_a_new_session_is_created_now(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["theme"] = "dark"
    store.cycle_key()
    row = Session.objects.get(pk=store.session_key)
    assert row.created_at == row.last_activity


@pytest.mark.django_db
def test_created_at_is_kept_by_one_cycle_only(engine, user):
    store = saved(engine, user)
    old = _backdate(store.session_key)
    reloaded = engine(old.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    reloaded.cycle_key()
    # A session created afterwards by the same store (after a logout's flush) is a new one.
    reloaded.flush()
    reloaded["a"] = 1
    reloaded.save()
    row = Session.objects.get(pk=reloaded.session_key)
    assert row.created_at > old.created_at
    assert row.created_at == row.last_activity


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_login_moves_the_session_to_a_new_key(engine, user):
    client = AsyncClientAt("10.7.7.7", CHROME_ANDROID)
    assert (await client.get("/async/write/")).status_code == 200
    old_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    old = await _abackdate(old_key)

    assert (await client.post("/async/login/", LOGIN)).status_code == 200

    new_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    await _aassert_moved(engine, old, new_key, user)
    stranger = AsyncClientAt("10.6.6.6", CHROME_ANDROID)
    stranger.cookies[django_settings.SESSION_COOKIE_NAME] = old_key
    assert (await stranger.get("/async/read/")).json() == {"user": "", "data": {}}
    assert (await client.get("/async/read/")).json()["user"] == "alice"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_acycle_key_of_a_store_keeps_created_at(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("theme", "dark")
    await store.asave()
    old = await _abackdate(store.session_key)

    reloaded = engine(old.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await reloaded.acycle_key()
    await reloaded.aset(SESSION_KEY, str(user.pk))
    await reloaded.asave()

    await _aassert_moved(engine, old, reloaded.session_key, user)


async def _abackdate(session_key: str) -> Session:
    return await sync_to_async(_backdate)(session_key)


async def _aassert_moved(engine: Any, old: Session, new_key: str, user: Any) -> None:
    await sync_to_async(_assert_moved)(engine, old, new_key, user)


@pytest.mark.django_db
@pytest.mark.parametrize("cached", [True, False], ids=["loaded-from-cache", "loaded-from-row"])
def test_keeping_created_at_reads_the_row_only_on_a_cache_hit(engine, statements, cached):
    store = saved(engine)
    reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    if not cached and hasattr(engine, "cache_key_prefix"):
        reloaded._cache.delete(reloaded.cache_key)
    assert reloaded["a"] == 1
    with statements() as run:
        reloaded.cycle_key()
    reads = [sql for sql in run.sql if sql.startswith("SELECT") and "created_at" in sql]
    assert len(reads) == (1 if cached and hasattr(engine, "cache_key_prefix") else 0)
    assert run.kinds.count("INSERT") == run.kinds.count("DELETE") == 1
