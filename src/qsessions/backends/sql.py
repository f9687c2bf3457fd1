"""The SQL of the measured paths, written out where the ORM would cost more than the statement: the SELECT of a load,
and the ``DELETE … RETURNING`` of a revocation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField
from django.utils import timezone

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from qsessions.models import Session


class Row(NamedTuple):
    """The columns a load reads."""

    session_data: str
    expire_date: datetime
    last_activity: datetime | None
    ip: str | None
    user_agent: str | None
    created_at: datetime | None


#: The SELECT of a load per ``(alias, vendor)``: compiled once, as building it through the ORM on every request cost
#: more than running it.
_load_sql: dict[tuple[str, str], str] = {}


def datetime_converter(connection: BaseDatabaseWrapper, model: type[Session]) -> Callable[[Any], datetime]:
    """Turns a datetime column's value as the driver returns it into the datetime the ORM would give.

    Every datetime column of the table is a ``DateTimeField``, so ``expire_date``'s converters fit them all: they
    parse SQLite's text and make the value aware (or leave it naive) as ``USE_TZ`` says.
    """
    field = model._meta.get_field("expire_date")
    assert isinstance(field, DateTimeField)
    column = field.get_col(model._meta.db_table)
    converters = [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]

    def convert(value: Any) -> datetime:
        for converter in converters:
            value = converter(value, column, connection)
        return value  # type: ignore[no-any-return]

    return convert


def select_live_row(model: type[Session], session_key: str | None) -> Row | None:
    """The session's row if it exists and has not expired: one indexed SELECT, with no queryset built."""
    connection = connections[router.db_for_read(model)]
    sql = _load_sql.get((connection.alias, connection.vendor))
    if sql is None:
        # Filters in the order of the parameters below.
        rows = model._base_manager.filter(session_key="").filter(expire_date__gt=timezone.now())
        compiler = rows.values_list(*Row._fields).query.get_compiler(connection=connection)
        sql = _load_sql[connection.alias, connection.vendor] = compiler.as_sql()[0]
    with connection.cursor() as cursor:
        cursor.execute(sql, (session_key, connection.ops.adapt_datetimefield_value(timezone.now())))
        row = cursor.fetchone()
    if row is None:
        return None
    convert = datetime_converter(connection, model)
    last_activity, created_at = row[2], row[5]
    return Row(
        row[0],
        convert(row[1]),
        None if last_activity is None else convert(last_activity),
        row[3],
        row[4],
        None if created_at is None else convert(created_at),
    )


def delete_rows(rows: QuerySet[Session]) -> int:
    """One DELETE of these rows, and nothing else: past ``SessionQuerySet.delete()``, which also ends the sessions in
    the cache. Returns the number of rows deleted."""
    return models.QuerySet.delete(rows)[0]


def delete_returning(rows: QuerySet[Session]) -> tuple[list[str], datetime | None] | None:
    """``DELETE … RETURNING`` these rows' keys and the latest expiry date among those that end more than
    ``SESSION_COOKIE_AGE`` from now (``None`` if none does), or ``None`` where the database has no ``RETURNING``.

    Only those dates matter: a tombstone lives ``SESSION_COOKIE_AGE`` at least (see ``tombstones.timeout()``). The
    other rows return NULL, which costs no conversion (see the performance page).
    """
    connection = connections[rows.db]
    # The databases that return columns from an INSERT are those that do from a DELETE too.
    if not connection.features.can_return_columns_from_insert:
        return None
    select, params = rows.values_list("pk").query.get_compiler(connection=connection).as_sql()
    quote = connection.ops.quote_name
    table, key, expire_date = quote(rows.model._meta.db_table), quote("session_key"), quote("expire_date")
    later = connection.ops.adapt_datetimefield_value(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE {key} IN ({select}) "
            f"RETURNING {key}, CASE WHEN {expire_date} > %s THEN {expire_date} END",
            (*params, later),
        )
        returned = cursor.fetchall()
    # The latest is the only one converted: the database's values compare as they are (datetimes, or on SQLite
    # ISO 8601 strings).
    latest = max((value for _, value in returned if value is not None), default=None)
    if latest is not None:
        latest = datetime_converter(connection, rows.model)(latest)
    return [key for key, _ in returned], latest
