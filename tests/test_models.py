"""The Session model: its queries, its cache-aware deletes and its device description."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from qsessions.backends.cached_db import KEY_PREFIX
from qsessions.models import DELETE_BATCH_SIZE, Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, saved

pytestmark = pytest.mark.django_db


def test_user_session_set(engine, user, other_user):
    mine = {saved(engine, user).session_key for _ in range(3)}
    saved(engine, other_user)
    assert set(user.session_set.values_list("pk", flat=True)) == mine
    assert set(user.session_set.filter(expire_date__gt=timezone.now()).values_list("pk", flat=True)) == mine


def test_active_and_expired(engine):
    live = saved(engine).session_key
    gone = saved(engine).session_key
    Session.objects.filter(pk=gone).update(expire_date=timezone.now() - timedelta(minutes=1))
    assert list(Session.objects.active().values_list("pk", flat=True)) == [live]
    assert list(Session.objects.expired().values_list("pk", flat=True)) == [gone]
    assert Session.objects.get(pk=live).is_active
    assert not Session.objects.get(pk=gone).is_active


def test_queryset_delete_removes_rows_and_cache_entries(engine, user, other_user, session_cache, statements):
    mine = [saved(engine, user).session_key for _ in range(3)]
    theirs = saved(engine, other_user).session_key

    with statements() as run:
        deleted = user.session_set.all().delete()

    assert deleted == (3, {"qsessions.Session": 3})
    assert run.kinds in (["DELETE"], ["SELECT", "DELETE"])
    assert not Session.objects.filter(pk__in=mine).exists()
    for key in mine:
        assert session_cache.get(KEY_PREFIX + key) is None
        assert engine(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}
    assert Session.objects.filter(pk=theirs).exists()
    assert engine(theirs, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {
        "_auth_user_id": str(other_user.pk),
        "a": 1,
    }


@pytest.mark.parametrize("returning", [True, False], ids=["delete-returning", "select-then-delete"])
def test_queryset_delete_statements_and_cache_calls(engine, returning, statements, session_cache, monkeypatch):
    from django.db import connection

    if returning and not connection.features.can_return_columns_from_insert:
        pytest.skip("this database has no DELETE … RETURNING")
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", returning)
    keys = [saved(engine).session_key for _ in range(DELETE_BATCH_SIZE + 1)]
    cache_calls = []
    delete_many = session_cache.delete_many
    monkeypatch.setattr(session_cache, "delete_many", lambda keys: cache_calls.append(delete_many(keys)))
    with statements() as run:
        assert Session.objects.all().delete() == (len(keys), {"qsessions.Session": len(keys)})
    cached = hasattr(engine, "cache_key_prefix")
    if not cached:
        assert run.kinds == ["DELETE"]
    elif returning:
        assert run.kinds == ["DELETE"]
        assert "RETURNING" in run.sql[0]
    else:
        # A batch of keys, its DELETE, then the last (short) batch and its DELETE.
        assert run.kinds == ["SELECT", "DELETE", "SELECT", "DELETE"]
    # One cache round-trip per batch of keys.
    assert len(cache_calls) == (2 if cached else 0)
    assert not Session.objects.exists()
    assert all(session_cache.get(KEY_PREFIX + key) is None for key in keys)


@pytest.mark.parametrize("returning", [True, False], ids=["delete-returning", "select-then-delete"])
def test_queryset_delete_across_a_join_leaves_other_sessions(engine, returning, user, other_user, monkeypatch):
    from django.db import connection

    if returning and not connection.features.can_return_columns_from_insert:
        pytest.skip("this database has no DELETE … RETURNING")
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", returning)
    mine = [saved(engine, user).session_key for _ in range(3)]
    theirs = saved(engine, other_user).session_key
    assert Session.objects.filter(user__username="alice").delete()[0] == 3
    assert list(Session.objects.values_list("pk", flat=True)) == [theirs]
    assert engine(theirs, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() != {}
    assert all(engine(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {} for key in mine)


def test_instance_delete_removes_row_and_cache_entry(engine, session_cache, statements):
    key = saved(engine).session_key
    session = Session.objects.get(pk=key)
    with statements() as run:
        assert session.delete() == (1, {"qsessions.Session": 1})
    assert run.kinds == ["DELETE"]
    assert session.pk is None
    assert session_cache.get(KEY_PREFIX + key) is None
    assert engine(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}


def test_db_engine_delete_leaves_the_cache_alone(settings, session_cache):
    from qsessions.backends.db import SessionStore

    settings.SESSION_ENGINE = "qsessions.backends.db"
    key = saved(SessionStore).session_key
    session_cache.set(KEY_PREFIX + key, "unrelated")
    Session.objects.filter(pk=key).delete()
    assert session_cache.get(KEY_PREFIX + key) == "unrelated"


def test_str_is_the_key():
    assert str(Session(session_key="k" * 32)) == "k" * 32


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        (CHROME_ANDROID, "K / Android 10 / Chrome Mobile 118.0.0.0"),
        (FIREFOX_LINUX, "Other / Linux / Firefox 120.0"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.1 Mobile/15E148 Safari/604.1",
            "iPhone / iOS 17.1 / Mobile Safari 17.1",
        ),
        ("curl/8.4.0", "Other / Other / curl 8.4.0"),
        ("", ""),
        (None, ""),
    ],
)
def test_device(user_agent, device):
    session = Session(user_agent=user_agent)
    assert session.device == device


def test_device_info():
    info = Session(user_agent=CHROME_ANDROID).device_info
    assert info is not None
    assert info.device.family == "K"
    assert (info.os.family, info.os.major) == ("Android", "10")
    assert (info.user_agent.family, info.user_agent.major) == ("Chrome Mobile", "118")
    assert Session(user_agent=None).device_info is None


def test_deleting_a_queryset_that_matches_nothing_runs_no_statement(engine, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert Session.objects.filter(pk__in=[]).delete() == (0, {"qsessions.Session": 0})
        assert Session.objects.none().delete_keys() == []
    assert Session.objects.filter(pk__in=[]).delete_keys() == []


def test_a_users_sessions_are_deleted_by_their_own_where_clause(engine, user, other_user, statements):
    # Not by "session_key IN (SELECT …)": that form was planned as a scan of the whole table on PostgreSQL.
    saved(engine, user), saved(engine, other_user)
    with statements() as run:
        assert user.session_set.all().delete()[0] == 1
    delete = next(sql for sql in run.sql if sql.startswith("DELETE"))
    assert "SELECT" not in delete
    assert Session.objects.filter(user=other_user).count() == 1
