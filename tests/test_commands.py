from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from qsessions.backends import cached_db, db
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, saved

pytestmark = pytest.mark.django_db


def test_clearsessions_deletes_expired_sessions_only(engine):
    keys = []
    for _ in range(4):
        store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
        store["a"] = 1
        store.save()
        keys.append(store.session_key)
    Session.objects.filter(pk__in=keys[:3]).update(expire_date=timezone.now() - timedelta(seconds=1))

    call_command("clearsessions")

    assert list(Session.objects.values_list("pk", flat=True)) == keys[3:]


def test_clearsessions_deletes_in_bounded_batches_and_leaves_the_cache_alone(engine, monkeypatch, statements):
    from qsessions import models

    monkeypatch.setattr(models, "EXPIRED_BATCH_SIZE", 3)
    # Windows of expiry dates, as on MariaDB (on PostgreSQL and SQLite, where fewer rows expired than there are pages).
    monkeypatch.setattr(models, "storage_extent", lambda rows: None)
    now = timezone.now()
    keys = [saved(engine).session_key for _ in range(9)]
    for index, key in enumerate(keys[:7]):
        Session.objects.filter(pk=key).update(expire_date=now - timedelta(minutes=index + 1))
    cache_calls = []
    monkeypatch.setattr(type(caches["default"]), "delete_many", lambda *args: cache_calls.append(args))
    monkeypatch.setattr(type(caches["default"]), "delete", lambda *args: cache_calls.append(args))

    deleted: list[int] = []
    delete = models.models.QuerySet.delete

    def counted(rows):
        result = delete(rows)
        deleted.append(result[0])
        return result

    monkeypatch.setattr(models.models.QuerySet, "delete", counted)
    with statements() as run:
        call_command("clearsessions")

    # The oldest expiry date and the batch's third, then the rows before that one; then windows sized from the
    # density of the one before (2 rows in 2 minutes, then 2 in the next 2), up to now. None is over a batch.
    # On cached_db, one more SELECT: the tombstones owed to the cache, none here.
    owed_check = ["SELECT"] if engine is cached_db.SessionStore else []
    assert run.kinds == ["SELECT", "SELECT"] + ["DELETE"] * 4 + owed_check
    assert deleted == [2, 2, 3, 0]
    # Each DELETE names both bounds of its range and no other: with only "<", PostgreSQL scanned the whole table.
    bounds = [re.findall(r"expire_date\W*\s(>=|<)\s", sql) for sql in run.sql if sql.startswith("DELETE")]
    assert bounds == [[">=", "<"]] * 4
    assert set(Session.objects.values_list("pk", flat=True)) == set(keys[7:])
    assert cache_calls == []


def test_clearsessions_gets_past_more_rows_than_a_batch_that_expire_together(engine, monkeypatch):
    from qsessions import models

    monkeypatch.setattr(models, "EXPIRED_BATCH_SIZE", 3)
    keys = [saved(engine).session_key for _ in range(8)]
    moment = timezone.now() - timedelta(minutes=5)
    Session.objects.filter(pk__in=keys[:5]).update(expire_date=moment)
    Session.objects.filter(pk=keys[5]).update(expire_date=moment + timedelta(minutes=1))

    call_command("clearsessions")

    assert set(Session.objects.values_list("pk", flat=True)) == set(keys[6:])


storage_order = pytest.mark.skipif(
    connection.vendor not in ("postgresql", "sqlite", "mysql"), reason="no order of storage known"
)


@pytest.fixture
def fresh_table() -> None:
    """A session table with no pages: on PostgreSQL, the deletes rolled back by earlier tests leave pages behind,
    which count."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE qsessions_session")


def _analyzed() -> None:
    """On MySQL and MariaDB, statistics that count the rows just written: the table's size is read from them."""
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE TABLE qsessions_session")
            cursor.fetchall()


def _in_a_range(sql: str) -> bool:
    """Whether a statement reads a range of the table in the order it is stored."""
    return ".ctid >= '(" in sql or ".rowid >= " in sql or "`.`session_key` >= " in sql


def _closed_ranges(statements: list[str]) -> int:
    """How many DELETEs read a range with an end (on MySQL and MariaDB, not the keys past the last range)."""
    ends = (".ctid < '(", ".rowid < ", "`.`session_key` < ")
    return sum(sql.startswith("DELETE") and any(end in sql for end in ends) for sql in statements)


def _spread_out(count: int, expired: int) -> list[str]:
    """``count`` sessions of about 1.4 kB, five or so to a page, stored in an order that is not their expiry order:
    every third of the first ``3 * expired`` has expired. Random data: Django compresses a session's payload."""
    keys = [saved(db.SessionStore, blob=secrets.token_urlsafe(750)).session_key for _ in range(count)]
    for index, key in enumerate(keys[: 3 * expired : 3]):
        Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(minutes=index + 1))
    _analyzed()
    return keys


@storage_order
# Committed: ANALYZE TABLE commits on MySQL and MariaDB.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_table")
@pytest.mark.parametrize(
    ("count", "expired", "by_pages"),
    [(30, 10, True), (60, 4, False)],
    ids=["more-expired-rows-than-pages", "fewer-expired-rows-than-pages"],
)
def test_clearsessions_walks_in_storage_order_only_where_more_rows_expired_than_there_are_pages(
    count, expired, by_pages, monkeypatch, statements
):
    from qsessions import models

    monkeypatch.setattr(models, "EXPIRED_BATCH_SIZE", 3)
    keys = _spread_out(count, expired=expired)
    with statements() as run:
        assert Session.objects.delete_expired() == expired
    deletes = [sql for sql in run.sql if sql.startswith("DELETE")]
    assert deletes
    if by_pages:
        # Each reads a range of pages (a TID range scan) or rowids, never a window of expiry dates.
        assert all(_in_a_range(sql) and "expire_date" in sql for sql in deletes)
    else:
        assert not any(_in_a_range(sql) for sql in deletes)
    assert set(Session.objects.values_list("pk", flat=True)) == set(keys) - set(keys[: 3 * expired : 3])


@storage_order
# Committed: ANALYZE TABLE commits on MySQL and MariaDB.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_table")
def test_clearsessions_counts_expired_rows_in_a_sample_of_a_larger_table(statements):
    now = timezone.now()
    rows = [
        # About five to a page, every other one expired, stored out of expiry order.
        Session(
            session_key=f"{index:032d}", session_data="x" * 1500, expire_date=now + timedelta(hours=index % 2 - 0.5)
        )
        for index in range(1200)
    ]
    Session.objects.bulk_create(rows)
    _analyzed()
    with statements() as run:
        assert Session.objects.delete_expired() == 600
    # The table's extent, then one count over eight ranges of it, then DELETEs by ranges only.
    assert run.kinds[:2] == ["SELECT", "SELECT"]
    assert run.sql[1].count("UNION ALL") == 7
    assert set(run.kinds[2:]) == {"DELETE"}
    assert all(_in_a_range(sql) for sql in run.sql[2:])
    assert Session.objects.count() == 600
    assert not Session.objects.filter(expire_date__lt=now).exists()


@storage_order
# Committed: ANALYZE TABLE commits on MySQL and MariaDB.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_table")
def test_clearsessions_in_storage_order_of_sessions_filtered_across_a_relation(user, other_user):
    mine = [saved(db.SessionStore, user, blob=secrets.token_urlsafe(750)).session_key for _ in range(12)]
    theirs = [saved(db.SessionStore, other_user, blob=secrets.token_urlsafe(750)).session_key for _ in range(12)]
    Session.objects.update(expire_date=timezone.now() - timedelta(minutes=1))
    # Joined with the user table, which has a ctid (or rowid) of its own.
    assert Session.objects.filter(user__username="alice").delete_expired() == 12
    assert set(Session.objects.values_list("pk", flat=True)) == set(theirs)
    assert not set(mine) & set(Session.objects.values_list("pk", flat=True))


@storage_order
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_table")
def test_clearsessions_in_storage_order_deletes_keys_of_any_characters(statements):
    now = timezone.now()
    # On MySQL and MariaDB the walk is by ranges of keys: these sort before its first bound and after its last.
    odd = ["", "-", "___", "~~~~", "zzzzzz", "zzzzzzzzzzzz", "ZZZZZZZ", "zzzzzz~", "zzzzzzé"]
    keys = [*odd, *(secrets.token_hex(16) for _ in range(40))]
    Session.objects.bulk_create(
        Session(session_key=key, session_data="x", expire_date=now - timedelta(minutes=1)) for key in keys
    )
    live = saved(db.SessionStore).session_key
    _analyzed()
    with statements() as run:
        assert Session.objects.delete_expired() == len(keys)
    assert any(_in_a_range(sql) for sql in run.sql)
    assert list(Session.objects.values_list("pk", flat=True)) == [live]


@storage_order
@pytest.mark.usefixtures("fresh_table")
def test_clearsessions_in_storage_order_starts_small_where_the_tables_size_is_stale(monkeypatch, statements):
    from qsessions import models

    now = timezone.now()
    Session.objects.bulk_create(
        Session(session_key=secrets.token_hex(16), session_data="x", expire_date=now - timedelta(minutes=1))
        for _ in range(200)
    )
    real_extent = models.storage_extent

    def stale(rows):
        # As if statistics said the table had one page: "eight pages" would be all of it.
        extent = real_extent(rows)
        return extent._replace(per_page=extent.end - extent.first)

    monkeypatch.setattr(models, "storage_extent", stale)
    with statements() as run:
        assert Session.objects.delete_expired() == 200
    assert _closed_ranges(run.sql) > 1
    assert not Session.objects.exists()
