"""The SQL of the measured paths, written out where the ORM would cost more than the statement: the SELECT of a load,
the UPDATE of a save, and the ``DELETE … RETURNING`` of a revocation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Field
from django.db.models.expressions import Col
from django.db.models.sql.subqueries import DeleteQuery
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
#: Columns an UPDATE writes, in this order, then ``updated_at``: ``created_at`` is written once, by the INSERT.
UPDATE_FIELDS = ("session_data", "expire_date", "user", "user_agent", "ip", "last_activity", "updated_at")
#: The UPDATE of a save per ``(alias, vendor)``, compiled once as the SELECT is, with the fields of its values.
_update_sql: dict[tuple[str, str], tuple[str, list[Field[Any, Any]]]] = {}


def _datetime_converters(connection: BaseDatabaseWrapper, model: type[Session]) -> tuple[list[Any], Col]:
    """The converters of a datetime column, and the column they expect.

    Every datetime column of the table is a ``DateTimeField``, so ``expire_date``'s converters fit them all: they
    parse SQLite's text and make the value aware (or leave it naive) as ``USE_TZ`` says.
    """
    field = model._meta.get_field("expire_date")
    assert isinstance(field, DateTimeField)
    column = field.get_col(model._meta.db_table)
    return [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)], column


def datetime_converter(connection: BaseDatabaseWrapper, model: type[Session]) -> Callable[[Any], datetime]:
    """Turns a datetime column's value as the driver returns it into the datetime the ORM would give."""
    converters, column = _datetime_converters(connection, model)

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
    # The converters inline, not through datetime_converter(): this runs on every request.
    converters, column = _datetime_converters(connection, model)
    expire_date, last_activity, created_at = row[1], row[2], row[5]
    for convert in converters:
        expire_date = convert(expire_date, column, connection)
        if last_activity is not None:
            last_activity = convert(last_activity, column, connection)
        if created_at is not None:
            created_at = convert(created_at, column, connection)
    return Row(row[0], expire_date, last_activity, row[3], row[4], created_at)


def update_row(row: Session, using: str) -> bool:
    """One UPDATE of ``row``'s columns but ``created_at`` (``updated_at`` takes ``last_activity``), in no transaction
    of its own; whether the row was there. Each value is prepared by its field, as the ORM's UPDATE prepares it."""
    connection = connections[using]
    compiled = _update_sql.get((connection.alias, connection.vendor))
    if compiled is None:
        model = type(row)
        fields = [_concrete(model, name) for name in UPDATE_FIELDS]
        quote = connection.ops.quote_name
        # A concrete field always has a column; django-stubs types it as optional.
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)  # type: ignore[arg-type]
        sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
        compiled = _update_sql[connection.alias, connection.vendor] = (sql, fields)
    sql, fields = compiled
    params = [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields[:-1]]
    params.append(fields[-1].get_db_prep_save(row.last_activity, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, row.pk])
        return bool(cursor.rowcount == 1)


def _concrete(model: type[Session], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def delete_rows(rows: QuerySet[Session]) -> int:
    """One DELETE of these rows, and nothing else: past ``SessionQuerySet.delete()``, which also ends the sessions in
    the cache. Returns the number of rows deleted."""
    return models.QuerySet.delete(rows)[0]


def _delete_sql(rows: QuerySet[Session], connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
    """The DELETE of these rows and its parameters. Raises ``EmptyResultSet`` for rows that cannot match."""
    query = rows.query.clone()
    query.__class__ = DeleteQuery
    compiler = query.get_compiler(connection=connection)
    if compiler.single_alias:
        # The rows' own WHERE (``user_id = %s`` for a user's sessions): an IN (SELECT …) of the same rows was planned
        # as a scan of the whole table by PostgreSQL at some table sizes.
        delete, params = compiler.as_sql()
        return delete, tuple(params)
    quote = connection.ops.quote_name
    select, params = rows.values_list("pk").query.get_compiler(connection=connection).as_sql()
    return f"DELETE FROM {quote(rows.model._meta.db_table)} WHERE {quote('session_key')} IN ({select})", tuple(params)


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
    quote = connection.ops.quote_name
    key, expire_date = quote("session_key"), quote("expire_date")
    try:
        delete, params = _delete_sql(rows, connection)
    except EmptyResultSet:
        # A filter that matches nothing, such as pk__in=[]: no statement at all.
        return [], None
    later = connection.ops.adapt_datetimefield_value(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE))
    with connection.cursor() as cursor:
        cursor.execute(
            f"{delete} RETURNING {key}, CASE WHEN {expire_date} > %s THEN {expire_date} END", (*params, later)
        )
        returned = cursor.fetchall()
    # The latest is the only one converted: the database's values compare as they are (datetimes, or on SQLite
    # ISO 8601 strings).
    latest = max((value for _, value in returned if value is not None), default=None)
    if latest is not None:
        latest = datetime_converter(connection, rows.model)(latest)
    return [key for key, _ in returned], latest


def heap_pages(rows: QuerySet[Session]) -> int | None:
    """How many pages the rows' table has on PostgreSQL, whose TID range scans (14 and newer, as Django requires)
    read a range of pages and nothing else; ``None`` elsewhere."""
    connection = connections[rows.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int", [rows.model._meta.db_table])
        return int(cursor.fetchone()[0])


def _in_a_page_range(rows: QuerySet[Session], statement: str) -> tuple[str, tuple[Any, ...]]:
    """The ``"delete"`` or ``"select"`` (of keys) of those of ``rows`` in a range of pages, and its parameters but
    the range's bounds, which go last: a range's condition is the last one added."""
    connection = connections[rows.db]
    # Named with its table: a filter across a relation joins another table, which has a ctid too.
    ctid = f"{connection.ops.quote_name(rows.model._meta.db_table)}.ctid"
    in_range = models.expressions.RawSQL(
        f"{ctid} >= %s::tid AND {ctid} < %s::tid", ("(0,0)", "(0,0)"), output_field=models.BooleanField()
    )
    ranged = rows.filter(in_range)
    if statement == "delete":
        sql, params = _delete_sql(ranged, connection)
    else:
        sql, select_params = ranged.values("pk").query.get_compiler(connection=connection).as_sql()
        params = tuple(select_params)
    return sql, params[:-2]


def _bounds(first: int, end: int) -> tuple[str, str]:
    return f"({first},0)", f"({end},0)"


def outnumber_pages(rows: QuerySet[Session], pages: int, sample: int = 64) -> bool:
    """Whether these rows, of a table of ``pages`` pages on PostgreSQL, outnumber its pages: counted in ``sample``
    pages, eight evenly spaced ranges of them (all pages of a smaller table), in one statement."""
    connection = connections[rows.db]
    step = max(1, sample // 8)
    ranges = (
        [(0, pages)] if pages <= sample else [(index * pages // 8, index * pages // 8 + step) for index in range(8)]
    )
    try:
        select, params = _in_a_page_range(rows, "select")
    except EmptyResultSet:
        return False
    union = " UNION ALL ".join([f"({select})"] * len(ranges))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM ({union}) AS sample",
            [value for bounds in ranges for value in (*params, *_bounds(*bounds))],
        )
        found = int(cursor.fetchone()[0])
    return found >= sum(end - first for first, end in ranges)


def delete_by_pages(rows: QuerySet[Session], pages: int, batch_size: int) -> int:
    """Delete these rows (of a table of ``pages`` pages, on PostgreSQL) one range of pages at a time, in the order
    the pages are stored, each range sized from the one before for about ``batch_size`` rows. Returns how many.

    Each DELETE reads its pages alone (a TID range scan). The statement is compiled once: the ORM's work for each
    batch cost more than a small batch's SQL.
    """
    try:
        delete, params = _in_a_page_range(rows, "delete")
    except EmptyResultSet:
        return 0
    deleted, first, span = 0, 0, 64
    with connections[rows.db].cursor() as cursor:
        while first < pages:
            end = min(first + span, pages)
            cursor.execute(delete, (*params, *_bounds(first, end)))
            batch = cursor.rowcount
            deleted += batch
            # Never more than double (a sparse range says little about the next one), never under a page.
            span = max(1, int(span * (min(2.0, batch_size / batch) if batch else 2.0)))
            first = end
    return deleted
