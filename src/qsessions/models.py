from __future__ import annotations

from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession, BaseSessionManager
from django.core.cache import caches
from django.db import models, router
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY, devices, geoip
from qsessions.backends.base import ROW_TIMES_KEY

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase
    from ua_parser import Result

#: How many keys one DELETE statement and one cache ``delete_many`` take at most.
DELETE_BATCH_SIZE = 500
#: About how many expired rows one DELETE of ``delete_expired()`` removes.
EXPIRED_BATCH_SIZE = 10_000


def delete_sessions(keys: list[str], using: str | None = None) -> int:
    """Delete the sessions with these keys from the database and, on ``cached_db``, from the cache.

    Rows go first: a request that misses the cache in between finds no row, rather than re-caching one that is
    about to be deleted. Returns the number of rows deleted.
    """
    store_class = Session.get_session_store_class()
    prefix: str | None = getattr(store_class, "cache_key_prefix", None)
    cache = caches[settings.SESSION_CACHE_ALIAS] if prefix is not None else None
    deleted = 0
    for start in range(0, len(keys), DELETE_BATCH_SIZE):
        batch = keys[start : start + DELETE_BATCH_SIZE]
        deleted += models.QuerySet.delete(Session._base_manager.db_manager(using).filter(pk__in=batch))[0]
        if cache is not None:
            cache.delete_many([prefix + key for key in batch])
    return deleted


class SessionQuerySet(models.QuerySet["Session"]):
    def active(self) -> SessionQuerySet:
        """Sessions that have not expired."""
        return self.filter(expire_date__gt=timezone.now())

    def expired(self) -> SessionQuerySet:
        """Sessions that have expired and wait for ``clearsessions``."""
        return self.filter(expire_date__lte=timezone.now())

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the rows and their cache entries, a batch of keys at a time, without loading a model instance.

        Each batch is one SELECT of keys, one DELETE and (on ``cached_db``) one cache ``delete_many``.
        """
        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete().")
        # Keys are read where rows are deleted: a lagging replica would keep offering keys already gone.
        using = self._db or router.db_for_write(self.model)
        keys = self.using(using).order_by().values_list("pk", flat=True)
        deleted = 0
        while batch := list(keys[:DELETE_BATCH_SIZE]):
            deleted += delete_sessions(batch, using=using)
            if len(batch) < DELETE_BATCH_SIZE:
                break
        return deleted, {self.model._meta.label: deleted}

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def delete_expired(self) -> int:
        """Delete the expired rows among these, oldest first, about ``EXPIRED_BATCH_SIZE`` per statement.

        Each DELETE is its own statement, so no transaction holds the locks of millions of rows, and each follows
        the ``expire_date`` index. The cache is left alone: the entries of expired sessions have expired with them.
        """
        using = self._db or router.db_for_write(self.model)
        expired = self.using(using).filter(expire_date__lt=timezone.now()).order_by()
        deleted = 0
        while cut := list(
            expired.order_by("expire_date").values_list("expire_date", flat=True)[
                EXPIRED_BATCH_SIZE - 1 : EXPIRED_BATCH_SIZE
            ]
        ):
            deleted += models.QuerySet.delete(expired.filter(expire_date__lte=cut[0]))[0]
        return deleted + models.QuerySet.delete(expired)[0]

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
        data = super().get_decoded()
        data.pop(IP_SESSION_KEY, None)
        data.pop(USER_AGENT_SESSION_KEY, None)
        data.pop(ROW_TIMES_KEY, None)
        return data  # type: ignore[no-any-return]

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
