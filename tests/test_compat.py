"""Data written by the published django-qsessions 2.x keeps working here, and the other way round.

The published package's rows and cache entries are built here from its documented format (columns, payload keys,
cache prefix) with Django's signing directly, not with this package's code.
"""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import ANY

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core import signing
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from qsessions.backends.payload import ROW_TIMES_KEY
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID

PUBLISHED_SALT = "django.contrib.sessions.SessionStore"
PUBLISHED_CACHE_PREFIX = "qsessions.q_cached_db"
PUBLISHED_COLUMNS = {
    "session_key": False,
    "session_data": False,
    "expire_date": False,
    "user_id": True,
    "user_agent": True,
    "created_at": True,
    "updated_at": False,
    "ip": True,
}


def _published_payload(user, ip: str | None, user_agent: str) -> tuple[dict[str, object], str]:
    data = {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        "_qsessions_ip": ip,
        "_qsessions_user_agent": user_agent,
        "cart": [1, 2, 3],
    }
    return data, signing.dumps(data, salt=PUBLISHED_SALT, serializer=signing.JSONSerializer, compress=True)


def _insert_published_row(key: str, user, ip: str | None, user_agent: str) -> dict[str, object]:
    data, encoded = _published_payload(user, ip, user_agent)
    now = timezone.now()
    table = connection.ops.quote_name("qsessions_session")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (session_key, session_data, expire_date, user_agent, updated_at, ip, user_id, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                key,
                encoded,
                connection.ops.adapt_datetimefield_value(now + timedelta(days=14)),
                user_agent,
                connection.ops.adapt_datetimefield_value(now),
                ip,
                user._meta.pk.get_db_prep_value(user.pk, connection),
                connection.ops.adapt_datetimefield_value(now - timedelta(days=3)),
            ],
        )
    return data


def _columns() -> dict[str, bool]:
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, "qsessions_session")
    return {column.name: bool(column.null_ok) for column in description}


@pytest.mark.django_db(transaction=True)
def test_published_migrations_give_the_published_schema():
    call_command("migrate", "qsessions", "0002", verbosity=0)
    try:
        assert _columns() == PUBLISHED_COLUMNS
    finally:
        call_command("migrate", "qsessions", verbosity=0)
    assert set(PUBLISHED_COLUMNS) <= set(_columns())


def _indexes_by_user() -> list[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "qsessions_session")
    return sorted(name for name, info in constraints.items() if info["index"] and info["columns"][:1] == ["user_id"])


@pytest.mark.django_db(transaction=True)
def test_one_index_serves_lookups_by_user():
    # The published schema has the foreign key's own index (on MySQL, the one InnoDB makes for the constraint).
    call_command("migrate", "qsessions", "0003", verbosity=0)
    try:
        assert len(_indexes_by_user()) == 2
    finally:
        call_command("migrate", "qsessions", verbosity=0)
    # Every index is updated by every row clearsessions deletes: the one of (user, -last_activity) does both jobs.
    assert _indexes_by_user() == ["qsessions_user_activity"]


@pytest.mark.django_db(transaction=True)
def test_sessions_of_the_published_package_stay_signed_in(engine, user):
    call_command("migrate", "qsessions", "0002", verbosity=0)
    keys = {f"published{index:02d}{'x' * 20}": ("10.0.0.5" if index else None) for index in range(3)}
    try:
        for key, ip in keys.items():
            _insert_published_row(key, user, ip, CHROME_ANDROID if ip else "")
    finally:
        call_command("migrate", "qsessions", verbosity=0)
    # Migration 0003 takes a session's last save as its last activity.
    for row in Session.objects.filter(pk__in=keys):
        assert row.last_activity == row.updated_at

    for key, ip in keys.items():
        client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR=ip or "127.0.0.1")
        client.cookies["sessionid"] = key
        response = client.get("/read/")
        assert response.json()["user"] == "alice", key
        assert response.json()["data"]["cart"] == [1, 2, 3]
        assert "_qsessions_ip" not in response.json()["data"]
        row = Session.objects.get(pk=key)
        assert row.user == user
        assert row.created_at < timezone.now() - timedelta(days=2)


@pytest.mark.django_db
def test_cache_entries_of_the_published_package_are_read_without_sql(settings, user, django_assert_num_queries):
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    key = "publishedcache" + "y" * 18
    data = _insert_published_row(key, user, "10.0.0.5", CHROME_ANDROID)
    caches["default"].set(PUBLISHED_CACHE_PREFIX + key, data, 3600)

    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.0.0.5")
    client.cookies["sessionid"] = key
    with django_assert_num_queries(2) as queries:
        assert client.get("/read/").json()["user"] == "alice"
    # The user, then (once) the activity the published package never recorded: no SELECT of the session.
    assert "qsessions_session" not in queries.captured_queries[0]["sql"]
    assert queries.captured_queries[1]["sql"].startswith("UPDATE")


@pytest.mark.django_db
def test_row_written_by_the_published_package_gets_its_activity_on_first_use(engine, user):
    # As during a rolling upgrade: the published package still writes rows, without last_activity.
    key = "publishedrow" + "z" * 20
    _insert_published_row(key, user, "10.0.0.5", CHROME_ANDROID)
    assert Session.objects.get(pk=key).last_activity is None
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.0.0.5")
    client.cookies["sessionid"] = key
    assert client.get("/read/").json()["user"] == "alice"
    assert Session.objects.get(pk=key).last_activity is not None


@pytest.mark.django_db
def test_what_we_write_is_what_the_published_package_reads(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.0.0.9")
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    key = client.cookies["sessionid"].value

    row = Session.objects.get(pk=key)
    payload = signing.loads(row.session_data, salt=PUBLISHED_SALT, serializer=signing.JSONSerializer)
    assert payload["_qsessions_ip"] == "10.0.0.9"
    assert payload["_qsessions_user_agent"] == CHROME_ANDROID
    assert payload[SESSION_KEY] == str(user.pk)
    if engine.__module__.endswith("cached_db"):
        # The published package would see one more key in its session, which it keeps and we take out again.
        assert caches["default"].get(PUBLISHED_CACHE_PREFIX + key) == {**payload, ROW_TIMES_KEY: ANY}
