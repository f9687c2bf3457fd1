"""Copy the live sessions of ``django.contrib.sessions``' table into ours, so that switching engines signs nobody out.

The old table is read with plain SQL: once a site has switched, ``django.contrib.sessions`` is no longer installed
and has no model to query through, but its table is still there.
"""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import auth
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from qsessions.backends.db import SessionStore
from qsessions.backends.sql import datetime_converter
from qsessions.models import Session

#: A row of the old table: ``(session_key, session_data, expire_date)``.
_OldRow = tuple[str, str, datetime]

#: Stands for a user id that no user can have: it is not a valid value of the user model's primary key.
_NO_SUCH_USER = object()


@dataclass
class _Counts:
    """What happened to the sessions read, for one batch or the whole run."""

    read: int = 0
    copied: int = 0
    present: int = 0
    unreadable: int = 0
    user_gone: int = 0

    def add(self, other: _Counts) -> None:
        self.read += other.read
        self.copied += other.copied
        self.present += other.present
        self.unreadable += other.unreadable
        self.user_gone += other.user_gone

    def describe(self, dry_run: bool) -> str:
        copied = f"would copy {self.copied}" if dry_run else f"copied {self.copied}"
        return (
            f"read {self.read}, {copied}, already present {self.present}, unreadable {self.unreadable}, "
            f"user gone {self.user_gone}"
        )


def _batch_size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return size


def _read_live_rows(
    connection: BaseDatabaseWrapper, table: str, now: datetime, batch_size: int
) -> Iterator[list[_OldRow]]:
    """The rows of ``table`` that expire after ``now``, by ascending key, one SELECT of ``batch_size`` at a time.

    Each SELECT starts after the last key of the one before (keyset pagination): it reads only its own rows, where
    an OFFSET would make the database walk past every row of the earlier batches again.
    """
    quote = connection.ops.quote_name
    key = quote("session_key")
    select = (
        f"SELECT {key}, {quote('session_data')}, {quote('expire_date')} FROM {quote(table)} "
        f"WHERE {quote('expire_date')} > %s"
    )
    order = f"ORDER BY {key} {connection.ops.limit_offset_sql(0, batch_size)}"
    expires_after = connection.ops.adapt_datetimefield_value(now)
    convert = datetime_converter(connection, Session)
    last_key: str | None = None
    while True:
        if last_key is None:
            sql, params = f"{select} {order}", [expires_after]
        else:
            sql, params = f"{select} AND {key} > %s {order}", [expires_after, last_key]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if rows:
            yield [(session_key, data, convert(expire_date)) for session_key, data, expire_date in rows]
        if len(rows) < batch_size:
            return
        last_key = rows[-1][0]


def _decode(store: SessionStore, session_data: str) -> dict[str, Any] | None:
    """The session's data as our engines will read it, or ``None`` if they cannot.

    This is ``store.decode()`` without its fallback: that answers ``{}`` for a payload it cannot read, the same as
    for an empty session, so a corrupt row would pass for an anonymous one.
    """
    try:
        data = signing.loads(session_data, salt=store.key_salt, serializer=store.serializer)
    except Exception:
        # A bad signature (another SECRET_KEY), or a payload the serializer cannot read.
        return None
    return data if isinstance(data, dict) else None


def _user_pk(data: dict[str, Any]) -> Any:
    """The primary key of the user the session is signed in as, ``None`` if anonymous, or ``_NO_SUCH_USER``."""
    value = data.get(auth.SESSION_KEY)
    if value is None:
        return None
    try:
        return auth.get_user_model()._meta.pk.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return _NO_SUCH_USER


def _copy_batch(rows: list[_OldRow], using: str, dry_run: bool) -> _Counts:
    """Copy the rows our table does not have yet: one SELECT of our keys, one of the users, one ``bulk_create``.

    The payload, key and expiry are copied as they are: our engines sign with the salt Django's database engines
    sign with. The client and the times the old table never recorded stay NULL until the session's next request.
    """
    counts = _Counts(read=len(rows))
    present = set(
        Session._base_manager.using(using).filter(pk__in=[row[0] for row in rows]).values_list("pk", flat=True)
    )
    store = SessionStore()
    candidates: list[tuple[_OldRow, Any]] = []
    for row in rows:
        if row[0] in present:
            counts.present += 1
            continue
        data = _decode(store, row[1])
        if data is None:
            counts.unreadable += 1
            continue
        candidates.append((row, _user_pk(data)))

    user_model = auth.get_user_model()
    wanted = {pk for _, pk in candidates if pk is not None and pk is not _NO_SUCH_USER}
    # The base manager: a user a custom default manager hides is still a row the foreign key can point to.
    users = set(user_model._base_manager.using(using).filter(pk__in=wanted).values_list("pk", flat=True))
    sessions = []
    for (session_key, session_data, expire_date), user_pk in candidates:
        if user_pk is not None and user_pk not in users:
            counts.user_gone += 1
            continue
        sessions.append(
            Session(session_key=session_key, session_data=session_data, expire_date=expire_date, user_id=user_pk)
        )
    counts.copied = len(sessions)
    if not dry_run:
        # A row written by a request since the SELECT above wins: it is newer than the old table's.
        Session._base_manager.using(using).bulk_create(sessions, ignore_conflicts=True)
    return counts


class Command(BaseCommand):
    help = (
        "Copy the live sessions of django.contrib.sessions' table into qsessions' table, keeping their keys, data "
        "and expiry, so that switching SESSION_ENGINE to qsessions signs nobody out. Sessions already copied are "
        "left alone, so it can run again to catch sessions created since."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--table", default="django_session", help='The table to copy from. Defaults to "django_session".'
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help='The database that holds both tables. Defaults to the "default" database.',
        )
        parser.add_argument(
            "--batch-size",
            type=_batch_size,
            default=1000,
            help="How many sessions each batch reads and writes. Defaults to 1000.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Read and report what would be copied, without writing anything."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        table: str = options["table"]
        using: str = options["database"]
        dry_run: bool = options["dry_run"]
        verbosity: int = options["verbosity"]
        connection = connections[using]
        if table == Session._meta.db_table:
            raise CommandError(f'"{table}" is qsessions\' own table: pass --table the table to copy from.')
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        if table not in tables:
            raise CommandError(
                f'There is no table "{table}" in the "{using}" database: it is where django.contrib.sessions keeps '
                "its sessions. Pass --table if yours is named otherwise (SessionStore subclasses with their own "
                "model), or --database for another database."
            )

        if verbosity >= 1:
            action = "Reading" if dry_run else "Copying"
            self.stdout.write(
                self.style.MIGRATE_HEADING(
                    f'{action} live sessions from "{table}" into "{Session._meta.db_table}" (database "{using}"):'
                )
            )
        total = _Counts()
        for number, rows in enumerate(_read_live_rows(connection, table, timezone.now(), options["batch_size"]), 1):
            counts = _copy_batch(rows, using, dry_run)
            total.add(counts)
            if verbosity >= 1:
                self.stdout.write(f"  Batch {number}: {counts.describe(dry_run)}")
        if verbosity >= 1:
            summary = total.describe(dry_run)
            if dry_run:
                self.stdout.write(self.style.SUCCESS(f"Dry run, nothing written: {summary}."))
            else:
                self.stdout.write(self.style.SUCCESS(f"Done: {summary}."))
