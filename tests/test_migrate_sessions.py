"""``migrate_sessions`` copies the sessions of ``django.contrib.sessions``' table, and they stay signed in.

The old table's rows are written with Django's own ``db`` engine, as a site that ran it has them. The test settings
do not install ``django.contrib.sessions``, as a site that has switched to qsessions does not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps.registry import Apps
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string

from qsessions.backends import cached_db, db
from qsessions.models import Session

pytestmark = pytest.mark.django_db


class OldSession(AbstractBaseSession):
    """``django.contrib.sessions``' model and table, kept out of the project's apps (and so out of migrations)."""

    class Meta:
        apps = Apps()
        app_label = "testapp"
        db_table = "django_session"
        managed = False

    @classmethod
    def get_session_store_class(cls) -> type[SessionStore]:
        return SessionStore


class SessionStore(DjangoDBStore):
    """Django's ``db`` engine on the old table: ``SESSION_ENGINE = __name__`` signs in through it."""

    @classmethod
    def get_model_class(cls) -> type[OldSession]:
        return OldSession


@pytest.fixture(scope="module", autouse=True)
def old_table(django_db_setup, django_db_blocker):
    """The old table, for the whole module: outside the tests' transactions, where SQLite and MariaDB need DDL."""
    with django_db_blocker.unblock():
        with connection.schema_editor() as editor:
            editor.create_model(OldSession)
        yield
        with connection.schema_editor() as editor:
            editor.delete_model(OldSession)


def old_session(data: dict[str, Any], expire_date: datetime | None = None) -> str:
    """The key of a new row of the old table holding ``data``, as Django's ``db`` engine encodes it."""
    key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
    expire_date = expire_date or timezone.now() + timedelta(days=14)
    OldSession.objects.create(session_key=key, session_data=DjangoDBStore().encode(data), expire_date=expire_date)
    return key


def signed_in(user: Any, **data: Any) -> dict[str, Any]:
    """What ``django.contrib.auth.login()`` puts in the session, plus ``data``."""
    return {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        **data,
    }


def migrate_sessions(*args: str) -> str:
    out = StringIO()
    call_command("migrate_sessions", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_our_engines_sign_with_the_salt_of_djangos():
    assert db.SessionStore().key_salt == DjangoDBStore().key_salt == "django.contrib.sessions.SessionStore"
    assert cached_db.SessionStore().key_salt == DjangoDBStore().key_salt


def test_live_sessions_are_copied_as_they_are(user):
    key = old_session(signed_in(user, cart=[1, 2, 3]))
    old = OldSession.objects.get(pk=key)

    migrate_sessions()

    row = Session.objects.get(pk=key)
    assert (row.session_data, row.expire_date, row.user_id) == (old.session_data, old.expire_date, user.pk)
    assert (row.ip, row.user_agent, row.created_at, row.last_activity) == (None, None, None, None)
    assert row.get_decoded()["cart"] == [1, 2, 3]


def test_expired_sessions_are_left_out(user):
    live = old_session(signed_in(user))
    old_session(signed_in(user), expire_date=timezone.now() - timedelta(seconds=1))

    output = migrate_sessions()

    assert list(Session.objects.values_list("pk", flat=True)) == [live]
    assert "Done: read 1, copied 1, already present 0, unreadable 0, user gone 0." in output


def test_a_second_run_copies_nothing_and_writes_nothing(user, statements):
    keys = {old_session(signed_in(user)) for _ in range(3)}
    migrate_sessions()
    rows = {row.pk: row.session_data for row in Session.objects.all()}

    with statements() as run:
        output = migrate_sessions()

    assert output.splitlines()[-1] == "Done: read 3, copied 0, already present 3, unreadable 0, user gone 0."
    # The table lookup, the old rows, our keys: nothing to decode, look up or insert.
    assert run.kinds[1:] == ["SELECT", "SELECT"]
    assert {row.pk: row.session_data for row in Session.objects.all()} == rows
    assert set(rows) == keys


def test_a_session_already_in_our_table_is_kept(user):
    key = old_session(signed_in(user, source="old"))
    Session.objects.create(
        session_key=key, session_data=db.SessionStore().encode({"source": "new"}), expire_date=timezone.now()
    )

    output = migrate_sessions()

    assert Session.objects.get(pk=key).get_decoded() == {"source": "new"}
    assert "copied 0, already present 1" in output


def test_dry_run_reads_and_reports_but_writes_nothing(user, statements):
    old_session(signed_in(user))
    old_session({"anonymous": True})

    with statements() as run:
        output = migrate_sessions("--dry-run")

    assert not Session.objects.exists()
    assert "INSERT" not in run.kinds
    assert output.splitlines()[-1] == (
        "Dry run, nothing written: read 2, would copy 2, already present 0, unreadable 0, user gone 0."
    )


def test_the_user_is_taken_from_the_payload(user, other_user):
    # An integer or a UUID, as QSESSIONS_TEST_USER_MODEL says.
    keys = {old_session(signed_in(user)): user.pk, old_session(signed_in(other_user)): other_user.pk}

    migrate_sessions()

    assert dict(Session.objects.values_list("pk", "user_id")) == keys
    assert {session.user for session in Session.objects.all()} == {user, other_user}


def test_a_session_whose_user_is_gone_is_left_out(user, other_user):
    kept = old_session(signed_in(user))
    old_session(signed_in(other_user))
    old_session({SESSION_KEY: "not a primary key"})
    other_user.delete()

    output = migrate_sessions()

    assert list(Session.objects.values_list("pk", flat=True)) == [kept]
    assert "Done: read 3, copied 1, already present 0, unreadable 0, user gone 2." in output


def test_an_anonymous_session_is_copied_without_a_user():
    key = old_session({"cart": [4]})

    migrate_sessions()

    row = Session.objects.get(pk=key)
    assert row.user_id is None
    assert row.get_decoded() == {"cart": [4]}


def test_a_payload_that_cannot_be_decoded_is_counted_and_left_out(user, settings):
    kept = old_session(signed_in(user))
    secret_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key"
    old_session(signed_in(user))
    settings.SECRET_KEY = secret_key
    garbage = old_session({})
    OldSession.objects.filter(pk=garbage).update(session_data="not a signed payload")
    empty = old_session({})

    output = migrate_sessions()

    # An empty session is still a session: only the payloads our engines cannot read are left out.
    assert set(Session.objects.values_list("pk", flat=True)) == {kept, empty}
    assert "Done: read 4, copied 2, already present 0, unreadable 2, user gone 0." in output


def test_each_batch_is_three_selects_and_one_insert(user, statements):
    keys = sorted(old_session(signed_in(user)) for _ in range(5))

    with statements() as run:
        output = migrate_sessions("--batch-size", "2")

    # The table lookup, then per batch: the old rows, our keys among them, their users, one INSERT.
    assert run.kinds[1:] == ["SELECT", "SELECT", "SELECT", "INSERT"] * 3
    old_rows = [sql for sql in run.sql if "django_session" in sql]
    assert len(old_rows) == 3
    assert not any("OFFSET" in sql.upper() for sql in old_rows)
    assert sorted(Session.objects.values_list("pk", flat=True)) == keys
    assert output.splitlines()[1:] == [
        "  Batch 1: read 2, copied 2, already present 0, unreadable 0, user gone 0",
        "  Batch 2: read 2, copied 2, already present 0, unreadable 0, user gone 0",
        "  Batch 3: read 1, copied 1, already present 0, unreadable 0, user gone 0",
        "Done: read 5, copied 5, already present 0, unreadable 0, user gone 0.",
    ]


def test_a_full_last_batch_ends_with_an_empty_select(user, statements):
    for _ in range(4):
        old_session(signed_in(user))

    with statements() as run:
        output = migrate_sessions("--batch-size", "2")

    assert run.kinds[1:] == ["SELECT", "SELECT", "SELECT", "INSERT"] * 2 + ["SELECT"]
    assert output.splitlines()[-1] == "Done: read 4, copied 4, already present 0, unreadable 0, user gone 0."


def test_verbosity_zero_prints_nothing(user):
    old_session(signed_in(user))

    out = StringIO()
    call_command("migrate_sessions", verbosity=0, stdout=out)

    assert out.getvalue() == ""
    assert Session.objects.count() == 1


def test_the_heading_names_both_tables():
    output = migrate_sessions()

    assert output.splitlines() == [
        'Copying live sessions from "django_session" into "qsessions_session" (database "default"):',
        "Done: read 0, copied 0, already present 0, unreadable 0, user gone 0.",
    ]


@pytest.mark.parametrize("use_tz", [True, False])
def test_the_expiry_is_kept_to_the_microsecond(settings, use_tz):
    settings.USE_TZ = use_tz
    settings.TIME_ZONE = "Asia/Tehran"
    expire_date = timezone.now().replace(microsecond=123456) + timedelta(days=3)
    key = old_session({"a": 1}, expire_date=expire_date)

    migrate_sessions()

    assert Session.objects.get(pk=key).expire_date == expire_date


def test_a_missing_table_is_a_command_error():
    with pytest.raises(CommandError, match='There is no table "no_such_table" in the "default" database'):
        call_command("migrate_sessions", "--table", "no_such_table")


def test_our_own_table_is_refused():
    with pytest.raises(CommandError, match="qsessions' own table"):
        call_command("migrate_sessions", "--table", "qsessions_session")


@pytest.mark.parametrize("size", ["0", "-3", "many"])
def test_the_batch_size_is_a_positive_integer(size):
    with pytest.raises(CommandError, match="must be a positive integer"):
        call_command("migrate_sessions", "--batch-size", size)


def test_signed_in_through_djangos_engine_stays_signed_in_on_ours(engine, user, settings):
    ours = (settings.SESSION_ENGINE, settings.MIDDLEWARE)
    settings.SESSION_ENGINE = __name__
    settings.MIDDLEWARE = [
        name.replace("qsessions.middleware", "django.contrib.sessions.middleware") for name in settings.MIDDLEWARE
    ]
    client = Client()
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert OldSession.objects.filter(pk=key).exists()
    settings.SESSION_ENGINE, settings.MIDDLEWARE = ours
    before = Client()
    before.cookies[settings.SESSION_COOKIE_NAME] = key
    assert before.get("/read/").json()["user"] == ""
    # Why the copy must come before the new engine serves: a session it cannot find costs the browser its cookie.
    assert before.cookies[settings.SESSION_COOKIE_NAME].value == ""

    migrate_sessions()

    response = client.get("/read/")
    assert response.json()["user"] == "alice"
    assert Session.objects.get(pk=key).user == user
