from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession, BaseSessionManager
from django.db import models, router
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from qsessions import devices, geoip
from qsessions.backends.payload import pop_extras
from qsessions.backends.sql import (
    delete_in_storage_order,
    delete_returning,
    delete_rows,
    outnumber_pages,
    storage_extent,
)
from qsessions.backends.tombstones import caching_store, forget

# Documented as qsessions.models.make_public_id.
from qsessions.public_id import make_public_id as make_public_id

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase
    from ua_parser import Result

#: How many keys one DELETE statement and one cache ``set_many`` of tombstones take at most.
DELETE_BATCH_SIZE = 500
#: About how many expired rows one DELETE of ``delete_expired()`` removes.
EXPIRED_BATCH_SIZE = 10_000


def delete_sessions(keys: list[str], using: str | None = None, store: Any = None) -> int:
    """Delete the sessions with these keys from the database and, on ``cached_db``, mark them gone in the cache.

    ``store``: the caching store class whose cache to mark, when it is not the configured engine's (a
    ``cached_db`` store used by hand while ``SESSION_ENGINE`` names another engine).

    Rows go first: a request that misses the cache in between finds no row. Every key given gets a tombstone, even
    one whose row was already gone. Returns the number of rows deleted.
    """
    using = using or router.db_for_write(Session)
    deleted, latest = 0, None
    for start in range(0, len(keys), DELETE_BATCH_SIZE):
        rows = Session.objects.using(using).filter(pk__in=keys[start : start + DELETE_BATCH_SIZE]).order_by()
        returned = delete_returning(rows)
        if returned is None:
            deleted += delete_rows(rows)
        else:
            deleted += len(returned[0])
            latest = max(filter(None, (latest, returned[1])), default=None)
    forget(keys, latest, using, store)
    return deleted


class SessionQuerySet(models.QuerySet["Session"]):
    # django-stubs 6 types filter() and using() on a queryset of from_queryset()'s manager as returning Any: the
    # annotated names below say what they return.

    def active(self) -> SessionQuerySet:
        """Sessions that have not expired."""
        live: SessionQuerySet = self.filter(expire_date__gt=timezone.now())
        return live

    def expired(self) -> SessionQuerySet:
        """Sessions that have expired and wait for ``clearsessions``."""
        ended: SessionQuerySet = self.filter(expire_date__lte=timezone.now())
        return ended

    def listed_for(self, user: Any) -> SessionQuerySet:
        """The live sessions of ``user``, most recently active first, without their data: what the sessions page and
        the API list.

        Rows the published package wrote have no ``last_activity``: they come last, by their last save. The data is
        left out because nothing there shows it, and it is the largest column.
        """
        listed: SessionQuerySet = (
            self.active()
            .filter(user_id=user.pk)
            .order_by(models.F("last_activity").desc(nulls_last=True), "-updated_at")
            .defer("session_data")
        )
        return listed

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the rows and their cache entries without loading a single model instance.

        Without a cache (the ``db`` engine) that is one DELETE. On ``cached_db`` it is what ``delete_keys()`` does.
        """
        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete().")
        rows = self._rows_to_delete()
        deleted = delete_rows(rows) if caching_store() is None else len(rows._delete_keys())
        return deleted, {self.model._meta.label: deleted}

    def delete_keys(self) -> list[str]:
        """Delete the rows and their cache entries, and return the keys of the sessions deleted.

        The keys come back from a ``DELETE … RETURNING`` where the database has one (PostgreSQL, SQLite 3.35+,
        MariaDB 10.5+), with their expiry dates; elsewhere a batch of keys at a time is one SELECT and one DELETE.
        Then, on ``cached_db``, the sessions end in the cache too: tombstones written and entries deleted, one round
        trip per batch of keys on Redis (see ``tombstones.forget()``).
        """
        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete_keys().")
        return self._rows_to_delete()._delete_keys()

    #: Set by QuerySet.__init__ (the alias given to using(), or None); django-stubs does not declare it.
    _db: str | None

    def _rows_to_delete(self) -> SessionQuerySet:
        # Keys are read where rows are deleted: a lagging replica would keep offering keys already gone.
        rows: SessionQuerySet = self.using(self._db or router.db_for_write(self.model)).order_by()
        return rows

    def _delete_keys(self) -> list[str]:
        returned = delete_returning(self)
        if returned is None:
            return self._delete_in_batches()
        keys, latest = returned
        forget(keys, latest, self.db)
        return keys

    def _delete_in_batches(self) -> list[str]:
        rows = self.values_list("pk", "expire_date")
        deleted: list[str] = []
        latest = None
        while batch := list(rows[:DELETE_BATCH_SIZE]):
            keys = [key for key, _ in batch]
            delete_rows(self.model._base_manager.using(self.db).filter(pk__in=keys))
            deleted += keys
            latest = max(filter(None, (latest, *(expire_date for _, expire_date in batch))))
            if len(batch) < DELETE_BATCH_SIZE:
                break
        # Once, after every batch: an ending that owes its tombstones waits once, not once per batch.
        if deleted:
            forget(deleted, latest, self.db)
        return deleted

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]
    delete_keys.alters_data = True  # type: ignore[attr-defined]

    def delete_expired(self) -> int:
        """Delete the expired rows among these, oldest first, about ``EXPIRED_BATCH_SIZE`` per statement.

        Each DELETE is its own statement, so no transaction holds the locks of millions of rows. The first batch ends
        where the oldest ``EXPIRED_BATCH_SIZE`` rows end, found by walking that many entries of the index on
        ``expire_date``; each later one covers a window of ``expire_date`` sized from the density of the one before,
        which costs no walk. When more rows have expired than the table has pages (as counted in a sample of it),
        the batches are ranges of the table in the order it is stored instead (``sql.delete_in_storage_order()``:
        pages on PostgreSQL, rowids on SQLite, keys on MySQL and MariaDB), and nothing walks the index. The cache is
        left alone: the entries of expired sessions have expired with them.
        """
        rows = self.using(self._db or router.db_for_write(self.model)).order_by()
        now = timezone.now()
        expired_rows = rows.filter(expire_date__lt=now)
        extent = storage_extent(rows)
        if extent and outnumber_pages(expired_rows, extent):
            # More expired rows than pages: windows of expiry dates would read most pages once per window, as rows
            # are not stored in expiry order. Rows stored past the end once the walk began are not expired.
            return delete_in_storage_order(expired_rows, extent, EXPIRED_BATCH_SIZE)
        expired = expired_rows.order_by("expire_date").values_list("expire_date", flat=True)
        oldest = expired.first()
        if oldest is None:
            return 0
        start = expired[EXPIRED_BATCH_SIZE - 1 : EXPIRED_BATCH_SIZE].first()
        # Every DELETE names both bounds of its range, and only those. With one bound, PostgreSQL takes a range for a
        # third of the table until statistics say otherwise, and scans all of it; given ``now`` as well, SQLite may
        # walk its index up to ``now``.
        if start is None:
            return delete_rows(rows.filter(expire_date__gte=oldest, expire_date__lt=now))
        deleted = delete_rows(rows.filter(expire_date__gte=oldest, expire_date__lt=start))
        window = max(start - oldest, timedelta(seconds=1))
        while start < now:
            end = min(start + window, now)
            batch = delete_rows(rows.filter(expire_date__gte=start, expire_date__lt=end))
            deleted += batch
            # Never more than double (a sparse window says little about the next one), never under a second.
            window = max(window * (min(2.0, EXPIRED_BATCH_SIZE / batch) if batch else 2.0), timedelta(seconds=1))
            start = end
        return deleted

    delete_expired.alters_data = True  # type: ignore[attr-defined]


# django-stubs resolves from_queryset() on Manager, not on BaseSessionManager: the manager is Any to mypy.
class SessionManager(BaseSessionManager.from_queryset(SessionQuerySet)):  # type: ignore[misc]
    use_in_migrations = True


class Session(AbstractBaseSession):
    """A session, with the user it belongs to and the client that last used it."""

    # No index of its own: "qsessions_user_activity" starts with user_id and serves every lookup by user, and every
    # row written or deleted updates one index less.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, db_index=False)
    # NULL, not "", for "unknown": the column is nullable in the published schema, which this one keeps.
    user_agent = models.CharField(null=True, blank=True, max_length=300)  # noqa: DJ001
    created_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(auto_now=True)
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name=_("IP"))
    #: Refreshed at most once per ``QSESSIONS_ACTIVITY_INTERVAL``; null on rows the published package wrote.
    last_activity = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[SessionManager] = SessionManager()

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

    @cached_property
    def public_id(self) -> str:
        """The session's non-secret name (see ``make_public_id()``): what pages and the API show instead of the key."""
        return make_public_id(self.session_key)

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
    def device_summary(self) -> str:
        """The device as people name it, e.g. ``"Chrome Mobile 118 on Android 10"``, translated; ``""`` if unknown."""
        return devices.summarize(self.device_info)

    @cached_property
    def location_info(self) -> dict[str, Any] | None:
        """What GeoIP knows of the IP, with the keys of Django's ``GeoIP2.city()``; ``None`` without GeoIP."""
        return geoip.location_info(self.ip)

    @cached_property
    def location(self) -> str | None:
        """An approximate location such as ``"Linköping, Sweden"``, or ``None``."""
        return geoip.describe(self.location_info)


class OwedTombstone(models.Model):
    """A session ended in the database whose tombstone its process could not write to the cache.

    Kept where every process looks, so that the ending outlives that process: each process reads these rows about
    once a second and writes them to the cache once it can (``tombstones.check_owed()``).
    """

    session_key = models.CharField(max_length=40, primary_key=True)
    #: Until when the tombstone must outvote the session's entry: its timeout counts from the session's ending.
    keep_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"tombstone owed until {self.keep_until.isoformat()}"
