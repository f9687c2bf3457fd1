from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.utils import timezone

from qsessions.backends import cached_db
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
