"""What a stored session holds beside the application's data, in its row's payload and in its cache entry.

The payload keeps the client under ``IP_SESSION_KEY``/``USER_AGENT_SESSION_KEY``, as the published package always
did. A cache entry is that payload plus the row's expiry and last activity under ``ROW_TIMES_KEY``, so a cached
session knows when its row ends and when its activity is due without a query. Those keys are taken out on every load:
the application sees its own data only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeGuard

from django.contrib import auth
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models.fields import AutoFieldMixin

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY

if TYPE_CHECKING:
    from qsessions.models import Session

#: Where a cache entry keeps its row's expiry and last activity (POSIX timestamps).
ROW_TIMES_KEY = "_qsessions_row"

#: ``(ip, user_agent)``.
Client = tuple[str | None, str | None]
#: A row's ``expire_date`` and ``last_activity`` as POSIX timestamps; ``None`` where they are not known.
RowTimes = tuple[float | None, float | None]
#: What a "seen" key holds: the activity last written to the row, and the client it came from.
Seen = tuple[float, str | None, str | None]


def with_client(data: dict[str, Any], client: Client) -> dict[str, Any]:
    """The data as a row stores it: the application's keys plus the client's."""
    return {**data, IP_SESSION_KEY: client[0], USER_AGENT_SESSION_KEY: client[1]}


def entry(data: dict[str, Any], client: Client, times: RowTimes) -> dict[str, Any]:
    """The data as a cache entry holds it: the row's payload plus its times."""
    stored = with_client(data, client)
    stored[ROW_TIMES_KEY] = times
    return stored


def pop_extras(data: dict[str, Any]) -> tuple[Client, RowTimes | None]:
    """Take the client and the row times out of stored data, leaving only the application's keys."""
    client = (data.pop(IP_SESSION_KEY, None), data.pop(USER_AGENT_SESSION_KEY, None))
    return client, _row_times(data.pop(ROW_TIMES_KEY, None))


def _row_times(value: object) -> RowTimes | None:
    """``value`` as row times if it is two finite timestamps or ``None``s, else ``None`` (unknown, as if absent).

    A damaged or foreign entry must not break the arithmetic done with them on every request.
    """
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_timestamp_or_none, value)):
        return value[0], value[1]
    return None


def _is_timestamp_or_none(value: object) -> bool:
    return value is None or (type(value) in (int, float) and math.isfinite(value))  # type: ignore[arg-type]


def is_seen(value: object) -> TypeGuard[Seen]:
    """Whether ``value`` is what a "seen" key holds: a damaged or foreign value must not break a load."""
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and type(value[0]) is float
        and all(part is None or isinstance(part, str) for part in value[1:])
    )


def user_id(data: dict[str, Any], model: type[Session]) -> Any:
    """The signed-in user's primary key from ``auth.SESSION_KEY``, or ``None`` if there is none or it is bad."""
    value = data.get(auth.SESSION_KEY)
    if value is None:
        return None
    pk = auth.get_user_model()._meta.pk
    try:
        user_id = pk.to_python(value)
        # An integer outside the column's range fails the write (SQLite, PostgreSQL) or is clamped (MySQL), and
        # MySQL takes no 0 for an AutoField. Only that check, not get_db_prep_value(): for a UUID it asks MySQL
        # for its version on a new connection, a query that an async caller must not make.
        pk.run_validators(user_id)
        if isinstance(pk, AutoFieldMixin):
            connections[router.db_for_write(model)].ops.validate_autopk_value(user_id)
    except (ValidationError, TypeError, ValueError):
        return None
    return user_id
