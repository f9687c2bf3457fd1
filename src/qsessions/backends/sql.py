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


def _delete_sql(
    rows: QuerySet[Session], connection: BaseDatabaseWrapper, returning: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """The DELETE of these rows and its parameters, of a form that takes a ``RETURNING`` clause if ``returning``.
    Raises ``EmptyResultSet`` for rows that cannot match."""
    query = rows.query.clone()
    query.__class__ = DeleteQuery
    compiler = query.get_compiler(connection=connection)
    if compiler.single_alias or not returning:
        # The rows' own WHERE (``user_id = %s`` for a user's sessions): an IN (SELECT …) of the same rows was planned
        # as a scan of the whole table by PostgreSQL at some table sizes. Across a relation, Django's own form (a
        # DELETE with a JOIN on MySQL and MariaDB, which takes no RETURNING).
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
        delete, params = _delete_sql(rows, connection, returning=True)
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


class Extent(NamedTuple):
    """A table's rows in the order they are stored, as positions of which a range is read alone: pages on PostgreSQL
    (TID range scans, 14 and newer as Django requires), rowids on SQLite (a range of the table's own b-tree), and on
    MySQL and MariaDB the session key's first characters read as a number in base 36 (InnoDB stores rows in key
    order, and keys are letters and digits drawn at random, spread evenly over that range)."""

    first: int
    end: int
    #: Positions to a page, about.
    per_page: float


#: The characters of a session key, in the order MySQL's collations sort them; a position on MySQL is the number that
#: its first ``_KEY_DIGITS`` characters write in this base.
_KEY_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_KEY_DIGITS = 6
#: Session rows to a page of SQLite's, where a position is a rowid: about as many as a 4 kB page holds.
_SQLITE_ROWS_PER_PAGE = 8


def storage_extent(rows: QuerySet[Session]) -> Extent | None:
    """The rows' table as ``Extent`` positions, or ``None`` on a database this knows no positions of."""
    connection = connections[rows.db]
    table = rows.model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int", [table])
            return Extent(0, int(cursor.fetchone()[0]), 1)
        if connection.vendor == "sqlite":
            cursor.execute(
                f"SELECT coalesce(min(rowid), 0), coalesce(max(rowid) + 1, 0) FROM {connection.ops.quote_name(table)}"
            )
            first, end = cursor.fetchone()
            return Extent(int(first), int(end), _SQLITE_ROWS_PER_PAGE)
        if connection.vendor == "mysql":
            # The statistics' estimate (MySQL keeps it for a day by default): where it is stale, the sample counts
            # more or fewer rows than 64 pages hold.
            cursor.execute(
                "SELECT data_length / @@innodb_page_size FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = %s",
                [table],
            )
            positions = len(_KEY_ALPHABET) ** _KEY_DIGITS - 1
            return Extent(0, positions, positions / max(1, int(cursor.fetchone()[0] or 0)))
    return None


#: Stand-ins for a range's bounds in a statement compiled once, replaced by each range's own (see ``_ranged()``).
_LOW, _HIGH = "\x00qsessions range low", "\x00qsessions range high"


def _in_a_range(rows: QuerySet[Session], statement: str) -> tuple[str, list[Any]]:
    """The ``"delete"`` or ``"select"`` (of keys) of those of ``rows`` in a range of positions (see ``Extent``), and
    its parameters, with ``_LOW`` and ``_HIGH`` where the range's bounds go."""
    connection = connections[rows.db]
    if connection.vendor == "mysql":
        # A lookup, not raw SQL: MySQL's WHERE compares raw SQL to TRUE, which no index range serves.
        ranged = rows.filter(pk__gte=_LOW, pk__lt=_HIGH)
    else:
        # Named with its table: a filter across a relation joins another table, which has a ctid (or rowid) too.
        table = connection.ops.quote_name(rows.model._meta.db_table)
        position, bound = (
            (f"{table}.ctid", "%s::tid") if connection.vendor == "postgresql" else (f"{table}.rowid", "%s")
        )
        ranged = rows.filter(
            models.expressions.RawSQL(
                f"{position} >= {bound} AND {position} < {bound}", (_LOW, _HIGH), output_field=models.BooleanField()
            )
        )
    if statement == "delete":
        sql, params = _delete_sql(ranged, connection)
    else:
        sql, params = ranged.values("pk").query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def _ranged(params: list[Any], bounds: tuple[Any, Any]) -> list[Any]:
    """``params`` of ``_in_a_range()`` with the bounds of a range in place of ``_LOW`` and ``_HIGH``."""
    return [bounds[0] if value == _LOW else bounds[1] if value == _HIGH else value for value in params]


def _key(position: int) -> str:
    digits = []
    for _ in range(_KEY_DIGITS):
        position, digit = divmod(position, len(_KEY_ALPHABET))
        digits.append(_KEY_ALPHABET[digit])
    return "".join(reversed(digits))


def _bounds(connection: BaseDatabaseWrapper, first: int, end: int) -> tuple[Any, Any]:
    if connection.vendor == "postgresql":
        return f"({first},0)", f"({end},0)"
    if connection.vendor == "mysql":
        # From the empty string: a key of other characters may sort before the first position.
        return (_key(first) if first else ""), _key(end)
    return first, end


def outnumber_pages(rows: QuerySet[Session], extent: Extent, sample: int = 64) -> bool:
    """Whether these rows, of a table stored over ``extent``, outnumber its pages: counted in ``sample`` pages, eight
    evenly spaced ranges of them (all pages of a smaller table), in one statement."""
    connection = connections[rows.db]
    size, step = extent.end - extent.first, max(1, int(sample // 8 * extent.per_page))
    ranges = (
        [(extent.first, extent.end)]
        if size <= sample * extent.per_page
        else [(extent.first + index * size // 8, extent.first + index * size // 8 + step) for index in range(8)]
    )
    try:
        select, params = _in_a_range(rows, "select")
    except EmptyResultSet:
        return False
    union = " UNION ALL ".join([f"SELECT * FROM ({select}) AS part"] * len(ranges))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM ({union}) AS sample",
            [value for bounds in ranges for value in _ranged(params, _bounds(connection, *bounds))],
        )
        found = int(cursor.fetchone()[0])
    return found * extent.per_page >= sum(end - first for first, end in ranges)


def delete_in_storage_order(rows: QuerySet[Session], extent: Extent, batch_size: int) -> int:
    """Delete these rows (of a table stored over ``extent``) one range of positions at a time, in the order they are
    stored, each range sized from the one before for about ``batch_size`` rows. Returns how many.

    Each DELETE reads its range alone. The statement is compiled once: the ORM's work for each batch cost more than a
    small batch's SQL.
    """
    connection = connections[rows.db]
    try:
        delete, params = _in_a_range(rows, "delete")
    except EmptyResultSet:
        return 0
    # Eight pages, or a 64th of the table if that is less: where the pages are counted from stale statistics, eight
    # "pages" may be all of it.
    first, deleted = extent.first, 0
    span = max(1, min(int(8 * extent.per_page), (extent.end - extent.first) // 64))
    with connection.cursor() as cursor:
        while first < extent.end:
            end = min(first + span, extent.end)
            cursor.execute(delete, _ranged(params, _bounds(connection, first, end)))
            batch = cursor.rowcount
            deleted += batch
            # Never more than double (a sparse range says little about the next one), never under one position.
            span = max(1, int(span * (min(2.0, batch_size / batch) if batch else 2.0)))
            first = end
        if connection.vendor == "mysql":
            # Keys from the last position on, which no range has an end past.
            cursor.execute(*_delete_sql(rows.filter(pk__gte=_key(extent.end)), connection))
            deleted += cursor.rowcount
    return deleted
