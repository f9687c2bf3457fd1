from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession, BaseSessionManager
from django.core.cache import BaseCache, caches
from django.db import connections, models, router
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from qsessions import devices, geoip
from qsessions.backends.base import pop_extras

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase
    from ua_parser import Result

#: How many keys one DELETE statement and one cache ``delete_many`` take at most.
DELETE_BATCH_SIZE = 500
#: About how many expired rows one DELETE of ``delete_expired()`` removes.
EXPIRED_BATCH_SIZE = 10_000


def _session_cache() -> tuple[BaseCache, str] | None:
    """The cache and key prefix of the configured engine's entries, or ``None`` if it caches nothing."""
    prefix: str | None = getattr(Session.get_session_store_class(), "cache_key_prefix", None)
    return None if prefix is None else (caches[settings.SESSION_CACHE_ALIAS], prefix)


def _forget_cached(keys: list[str]) -> None:
    """Delete the cache entries of these sessions (after their rows), ``DELETE_BATCH_SIZE`` per ``delete_many``."""
    cached = _session_cache()
    if cached is not None:
        cache, prefix = cached
        for start in range(0, len(keys), DELETE_BATCH_SIZE):
            cache.delete_many([prefix + key for key in keys[start : start + DELETE_BATCH_SIZE]])


def delete_sessions(keys: list[str], using: str | None = None) -> int:
    """Delete the sessions with these keys from the database and, on ``cached_db``, from the cache.

    Rows go first: a request that misses the cache in between finds no row, rather than re-caching one that is
    about to be deleted. Returns the number of rows deleted.
    """
    deleted = 0
    for start in range(0, len(keys), DELETE_BATCH_SIZE):
        batch = keys[start : start + DELETE_BATCH_SIZE]
        deleted += models.QuerySet.delete(Session._base_manager.db_manager(using).filter(pk__in=batch))[0]
    _forget_cached(keys)
    return deleted


class SessionQuerySet(models.QuerySet["Session"]):
    def active(self) -> SessionQuerySet:
        """Sessions that have not expired."""
        return self.filter(expire_date__gt=timezone.now())

    def expired(self) -> SessionQuerySet:
        """Sessions that have expired and wait for ``clearsessions``."""
        return self.filter(expire_date__lte=timezone.now())

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the rows and their cache entries without loading a single model instance.

        Without a cache (the ``db`` engine) that is one DELETE. On ``cached_db`` the keys come back from a
        ``DELETE … RETURNING`` where the database has one (PostgreSQL, SQLite 3.35+, MariaDB 10.5+); elsewhere a
        batch of keys at a time is one SELECT and one DELETE. Then one cache ``delete_many`` per batch of keys.
        """
        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete().")
        # Keys are read where rows are deleted: a lagging replica would keep offering keys already gone.
        rows = self.using(self._db or router.db_for_write(self.model)).order_by()
        if _session_cache() is None:
            deleted = models.QuerySet.delete(rows)[0]
        else:
            keys = rows._delete_returning_keys()
            if keys is not None:
                _forget_cached(keys)
                deleted = len(keys)
            else:
                deleted = rows._delete_in_batches()
        return deleted, {self.model._meta.label: deleted}

    def _delete_returning_keys(self) -> list[str] | None:
        connection = connections[self.db]
        # The databases that return columns from an INSERT are those that do from a DELETE too.
        if not connection.features.can_return_columns_from_insert:
            return None
        select, params = self.values_list("pk").query.get_compiler(connection=connection).as_sql()
        table, key = connection.ops.quote_name(self.model._meta.db_table), connection.ops.quote_name("session_key")
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE {key} IN ({select}) RETURNING {key}", params)
            return [row[0] for row in cursor.fetchall()]

    def _delete_in_batches(self) -> int:
        keys = self.values_list("pk", flat=True)
        deleted = 0
        while batch := list(keys[:DELETE_BATCH_SIZE]):
            deleted += delete_sessions(batch, using=self.db)
            if len(batch) < DELETE_BATCH_SIZE:
                break
        return deleted

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def delete_expired(self) -> int:
        """Delete the expired rows among these, oldest first, about ``EXPIRED_BATCH_SIZE`` per statement.

        Each DELETE is its own statement, so no transaction holds the locks of millions of rows. Each covers a
        window of ``expire_date`` along its index, sized from the previous window's density to hold about a batch,
        so finding where a batch ends costs no scan. The cache is left alone: the entries of expired sessions have
        expired with them.
        """
        using = self._db or router.db_for_write(self.model)
        now = timezone.now()
        expired = self.using(using).filter(expire_date__lt=now).order_by()
        start = expired.order_by("expire_date").values_list("expire_date", flat=True).first()
        deleted, window = 0, timedelta(minutes=1)
        while start is not None and start < now:
            end = min(start + window, now)
            batch = models.QuerySet.delete(expired.filter(expire_date__gte=start, expire_date__lt=end))[0]
            deleted += batch
            # Never more than double (a sparse window says little about the next one), never under a second.
            window = max(window * (min(2.0, EXPIRED_BATCH_SIZE / batch) if batch else 2.0), timedelta(seconds=1))
            start = end
        return deleted

    delete_expired.alters_data = True  # type: ignore[attr-defined]


class SessionManager(BaseSessionManager.from_queryset(SessionQuerySet)):  # type: ignore[misc]
    use_in_migrations = True


class Session(AbstractBaseSession):
    """A session, with the user it belongs to and the client that last used it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE)
    # NULL, not "", for "unknown": the column is nullable in the published schema, which this one keeps.
    user_agent = models.CharField(null=True, blank=True, max_length=300)  # noqa: DJ001
    created_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(auto_now=True)
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name=_("IP"))
    #: Refreshed at most once per ``QSESSIONS_ACTIVITY_INTERVAL``; null on rows the published package wrote.
    last_activity = models.DateTimeField(null=True, blank=True)

    objects = SessionManager()

    class Meta(AbstractBaseSession.Meta):
        # "This user's live sessions, most recently active first".
        indexes = [models.Index(fields=["user", "-last_activity"], name="qsessions_user_activity")]  # noqa: RUF012

    @classmethod
    def get_session_store_class(cls) -> type[SessionBase]:
        return import_module(settings.SESSION_ENGINE).SessionStore  # type: ignore[no-any-return]

    def get_decoded(self) -> dict[str, Any]:
        """The application's session data: the client keys kept in the payload are not part of it."""
        data: dict[str, Any] = super().get_decoded()
        pop_extras(data)
        return data

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        """Delete the row and its cache entry."""
        deleted = delete_sessions([self.pk], using=using or self._state.db)
        # As Model.delete() does: the instance no longer names a row.
        self.pk = None
        return deleted, {self._meta.label: deleted}

    delete.alters_data = True  # type: ignore[attr-defined]

    @property
    def is_active(self) -> bool:
        return self.expire_date > timezone.now()

    @cached_property
    def device_info(self) -> Result | None:
        """The parsed user agent (``ua_parser.Result``), or ``None`` without one."""
        return devices.parse(self.user_agent)

    @cached_property
    def device(self) -> str:
        """The client's device, OS and browser, e.g. ``"K / Android 10 / Chrome Mobile 118.0.0.0"``."""
        return devices.describe(self.device_info)

    @cached_property
    def location_info(self) -> dict[str, Any] | None:
        """What GeoIP knows of the IP, with the keys of Django's ``GeoIP2.city()``; ``None`` without GeoIP."""
        return geoip.location_info(self.ip)

    @cached_property
    def location(self) -> str | None:
        """An approximate location such as ``"Linköping, Sweden"``, or ``None``."""
        return geoip.describe(self.location_info)
