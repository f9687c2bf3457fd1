"""The session stores, used directly: what they write, what they read back, and at what cost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.core import signing
from django.utils import timezone

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY
from qsessions.backends.cached_db import KEY_PREFIX
from qsessions.backends.payload import ROW_TIMES_KEY
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, saved

pytestmark = pytest.mark.django_db


def _raw_payload(session_key: str) -> dict[str, Any]:
    """The row's payload decoded with Django's signing directly, as any other reader of the table would."""
    row = Session.objects.get(pk=session_key)
    return signing.loads(row.session_data, salt="django.contrib.sessions.SessionStore")  # type: ignore[no-any-return]


def _signed_in(store: Any, user: Any) -> None:
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()


def test_create_records_user_client_and_times(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    _signed_in(store, user)
    store["theme"] = "dark"
    before = timezone.now()
    store.save()

    row = Session.objects.get(pk=store.session_key)
    assert row.user == user
    assert row.ip == "10.1.2.3"
    assert row.user_agent == CHROME_ANDROID
    assert before <= row.created_at <= timezone.now()
    assert row.updated_at >= row.created_at
    assert row.expire_date > timezone.now()


def test_client_is_kept_in_the_payload_but_not_in_the_mapping(engine, user):
    store = saved(engine, theme="dark")

    payload = _raw_payload(store.session_key)
    assert payload[IP_SESSION_KEY] == "10.1.2.3"
    assert payload[USER_AGENT_SESSION_KEY] == CHROME_ANDROID
    assert payload["theme"] == "dark"

    reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert dict(reloaded.items()) == {"theme": "dark"}
    assert list(reloaded.keys()) == ["theme"]
    assert IP_SESSION_KEY not in reloaded
    assert USER_AGENT_SESSION_KEY not in reloaded
    assert len(reloaded.values()) == 1
    assert not reloaded.is_empty()
    assert Session.objects.get(pk=store.session_key).get_decoded() == {"theme": "dark"}


def test_empty_session_stays_empty(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store.create()
    reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert dict(reloaded.items()) == {}
    assert Session.objects.get(pk=store.session_key).get_decoded() == {}


def test_save_is_one_update_and_keeps_created_at(engine, user, statements):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    _signed_in(store, user)
    store.save()
    created_at = Session.objects.get(pk=store.session_key).created_at

    store = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["theme"] = "dark"
    with statements() as run:
        store.save()
    assert run.kinds == ["UPDATE"]
    assert "created_at" not in run.sql[0]

    row = Session.objects.get(pk=store.session_key)
    assert row.created_at == created_at
    assert row.get_decoded()["theme"] == "dark"


def test_creating_a_session_is_one_insert(engine, statements):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    with statements() as run:
        store.create()
    # Django's create() also asks whether the random key is taken before it inserts; here the INSERT is the check.
    assert run.kinds == ["INSERT"], run.sql
    assert Session.objects.get(pk=store.session_key).created_at is not None


def test_load_costs_what_djangos_load_costs(engine, django_assert_num_queries):
    store = saved(engine, theme="dark")
    reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    # db: one SELECT. cached_db: a cache hit, no SQL.
    with django_assert_num_queries(0 if hasattr(engine, "cache_key_prefix") else 1):
        assert reloaded["theme"] == "dark"
    assert not reloaded.modified


def test_cached_db_cache_entry_holds_the_client(settings, session_cache):
    from qsessions.backends.cached_db import SessionStore

    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    store = SessionStore(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["theme"] = "dark"
    store.save()
    row = Session.objects.get(pk=store.session_key)
    assert session_cache.get(KEY_PREFIX + store.session_key) == {
        "theme": "dark",
        IP_SESSION_KEY: "10.1.2.3",
        USER_AGENT_SESSION_KEY: CHROME_ANDROID,
        ROW_TIMES_KEY: (row.expire_date.timestamp(), row.last_activity.timestamp()),
    }


@pytest.mark.parametrize(
    ("ip", "user_agent"),
    [("10.9.9.9", CHROME_ANDROID), ("10.1.2.3", FIREFOX_LINUX), ("2001:db8::1", FIREFOX_LINUX)],
)
def test_new_client_is_recorded_without_extending_the_session(engine, ip, user_agent, statements):
    store = saved(engine, theme="dark")
    before = Session.objects.get(pk=store.session_key)

    seen_again = engine(store.session_key, user_agent=user_agent, ip=ip)
    assert seen_again["theme"] == "dark"
    # Not a modification: Django's middleware would save the data, extend the session and send a new cookie.
    assert not seen_again.modified
    with statements() as run:
        seen_again.record_activity()
    assert run.kinds == ["UPDATE"]

    row = Session.objects.get(pk=store.session_key)
    assert (row.ip, row.user_agent) == (ip, user_agent)
    assert (row.expire_date, row.session_data, row.updated_at) == (
        before.expire_date,
        before.session_data,
        before.updated_at,
    )
    assert row.last_activity >= before.last_activity
    recorded = engine(store.session_key, user_agent=user_agent, ip=ip)
    assert recorded.load() == {"theme": "dark"}
    with statements() as run:
        recorded.record_activity()
    assert run.kinds == []


def test_unchanged_client_is_not_a_modification(engine):
    store = saved(engine, theme="dark")
    reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    reloaded.load()
    assert not reloaded.modified


def test_store_without_client_keeps_the_saved_client(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    _signed_in(store, user)
    store.save()

    # A shell, a task or a test: no client is known, so none is recorded.
    elsewhere = engine(store.session_key)
    assert not elsewhere.modified
    elsewhere["theme"] = "dark"
    elsewhere.save()

    row = Session.objects.get(pk=store.session_key)
    assert (row.ip, row.user_agent, row.user) == ("10.1.2.3", CHROME_ANDROID, user)
    assert _raw_payload(store.session_key)[IP_SESSION_KEY] == "10.1.2.3"
    assert engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["theme"] == "dark"


def test_store_without_client_cycles_key_with_the_saved_client(engine, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    _signed_in(store, user)
    store.save()
    old_key = store.session_key

    elsewhere = engine(old_key)
    elsewhere.cycle_key()
    row = Session.objects.get(pk=elsewhere.session_key)
    assert (row.ip, row.user_agent, row.user) == ("10.1.2.3", CHROME_ANDROID, user)
    assert not Session.objects.filter(pk=old_key).exists()
    assert not engine(old_key).exists(old_key)


def test_user_follows_the_auth_key(engine, user, other_user):
    store = saved(engine, theme="dark")
    assert Session.objects.get(pk=store.session_key).user is None

    _signed_in(store, user)
    store.save()
    assert Session.objects.get(pk=store.session_key).user == user

    _signed_in(store, other_user)
    store.save()
    assert Session.objects.get(pk=store.session_key).user == other_user

    del store[SESSION_KEY]
    store.save()
    assert Session.objects.get(pk=store.session_key).user is None


def test_malformed_user_id_is_not_a_crash(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store[SESSION_KEY] = "not a primary key"
    store.save()
    assert Session.objects.get(pk=store.session_key).user is None


@pytest.mark.django_db(transaction=True)
def test_user_id_the_database_refuses_is_not_a_crash(engine, django_user_model):
    """A UUID with version 11 and variant 0: Python's uuid takes it, MariaDB's UUID column refuses it (elsewhere
    it names nobody). Integer user ids take the same paths with 0, which MySQL refuses for an AutoField."""
    uuid_pk = django_user_model._meta.pk.get_internal_type() == "UUIDField"
    refused = "83a52df2-49a6-b7ec-49f1-b6106a2ca9a3" if uuid_pk else "0"
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store[SESSION_KEY] = refused
    store.save()
    store["theme"] = "dark"
    store.save()
    row = Session.objects.get(pk=store.session_key)
    assert row.user_id is None
    assert row.get_decoded() == {SESSION_KEY: refused, "theme": "dark"}


@pytest.mark.django_db(transaction=True)
def test_user_deleted_before_the_insert(engine, django_user_model):
    doomed = django_user_model.objects.create_user(username="doomed", password="x")
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    _signed_in(store, doomed)
    doomed_pk = str(doomed.pk)
    doomed.delete()

    store.save()

    row = Session.objects.get(pk=store.session_key)
    assert row.user is None
    assert row.get_decoded()[SESSION_KEY] == doomed_pk


def test_update_of_a_vanished_row_is_an_update_error(engine):
    store = saved(engine, theme="dark")
    Session.objects.filter(pk=store.session_key).delete()
    store["theme"] = "light"
    with pytest.raises(UpdateError):
        store.save()
    assert not Session.objects.filter(pk=store.session_key).exists()


def test_expired_session_is_not_loaded(engine):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["theme"] = "dark"
    store.set_expiry(timezone.now() + timedelta(seconds=60))
    store.save()
    Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    if hasattr(store, "_cache"):
        store._cache.delete(store.cache_key)

    reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert reloaded.load() == {}
    assert reloaded.session_key is None
    assert not reloaded.modified


def test_delete_removes_row_and_cache_entry(engine, session_cache):
    store = saved(engine, theme="dark")
    key = store.session_key

    store.delete()

    assert not Session.objects.filter(pk=key).exists()
    assert session_cache.get(KEY_PREFIX + key) is None
    assert not engine(key).exists(key)
    assert engine(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}


def test_delete_is_one_statement(engine, statements):
    store = saved(engine, theme="dark")
    with statements() as run:
        store.delete()
    assert run.kinds == ["DELETE"]


def test_flush_forgets_everything(engine, session_cache):
    store = saved(engine, theme="dark")
    key = store.session_key

    store.flush()

    assert store.session_key is None
    assert dict(store.items()) == {}
    assert not Session.objects.filter(pk=key).exists()
    assert session_cache.get(KEY_PREFIX + key) is None


def test_cycle_key_moves_everything_to_the_new_key(engine, user, session_cache):
    store = saved(engine, theme="dark")
    old_key = store.session_key

    store.cycle_key()
    _signed_in(store, user)
    store.save()

    assert store.session_key != old_key
    assert not Session.objects.filter(pk=old_key).exists()
    assert session_cache.get(KEY_PREFIX + old_key) is None
    row = Session.objects.get(pk=store.session_key)
    assert (row.user, row.ip, row.user_agent) == (user, "10.1.2.3", CHROME_ANDROID)
    assert row.get_decoded()["theme"] == "dark"


def test_clear_expired_deletes_only_expired_rows(engine):
    live = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    live["a"] = 1
    live.save()
    expired = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    expired["a"] = 1
    expired.save()
    Session.objects.filter(pk=expired.session_key).update(expire_date=timezone.now() - timedelta(days=1))

    engine.clear_expired()

    assert list(Session.objects.values_list("pk", flat=True)) == [live.session_key]


@pytest.mark.parametrize(
    ("ip", "stored"),
    [
        ("", None),
        ("unix:/run/gunicorn.sock", None),
        ("fe80::1%eth0", None),
        ("999.1.1.1", None),
        ("not an ip", None),
        ("x" * 10_000, None),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("192.168.0.1", "192.168.0.1"),
    ],
)
def test_ip_is_validated(engine, ip, stored):
    store = engine(user_agent=CHROME_ANDROID, ip=ip)
    store["a"] = 1
    store.save()
    assert Session.objects.get(pk=store.session_key).ip == stored


@pytest.mark.parametrize(
    ("user_agent", "stored"),
    [
        ("", None),
        ("A" * 5000, "A" * 300),
        ("é" * 400, "é" * 300),
        ("😀" * 400, "😀" * 300),
        ("Mozilla\x00/5.0", "Mozilla/5.0"),
        ("bad \udcff surrogate", "bad ? surrogate"),
        ("\xff\xfe latin-1 bytes", "\xff\xfe latin-1 bytes"),
    ],
)
def test_user_agent_is_bounded_and_storable(engine, user_agent, stored):
    store = engine(user_agent=user_agent, ip="10.1.2.3")
    store["a"] = 1
    store.save()
    assert Session.objects.get(pk=store.session_key).user_agent == stored
    reloaded = engine(store.session_key, user_agent=user_agent, ip="10.1.2.3")
    reloaded.load()
    assert not reloaded.modified


def test_client_is_validated_only_when_the_session_is_used(engine, monkeypatch):
    seen = []
    monkeypatch.setattr("qsessions.backends.activity.clean_ip", lambda value: seen.append(value) or value)
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert seen == []  # an anonymous page that never reads its session pays nothing
    store["a"] = 1
    store.save()
    assert seen == ["10.1.2.3"]
    assert Session.objects.get(pk=store.session_key).ip == "10.1.2.3"
