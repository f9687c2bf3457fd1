from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession, BaseSessionManager
from django.core.cache import caches
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY, devices, geoip

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase
    from ua_parser import Result

#: How many keys one DELETE statement and one cache ``delete_many`` take at most.
DELETE_BATCH_SIZE = 500


def delete_sessions(keys: Iterable[str], using: str | None = None) -> int:
    """Delete the sessions with these keys from the database and, on ``cached_db``, from the cache.

    Rows go first: a request that misses the cache in between finds no row, rather than re-caching one that is
    about to be deleted. Returns the number of rows deleted.
    """
    store_class = Session.get_session_store_class()
    prefix: str | None = getattr(store_class, "cache_key_prefix", None)
    cache = caches[settings.SESSION_CACHE_ALIAS] if prefix is not None else None
    keys = list(keys)
    deleted = 0
    for start in range(0, len(keys), DELETE_BATCH_SIZE):
        batch = keys[start : start + DELETE_BATCH_SIZE]
        batch_rows = Session._base_manager.db_manager(using).filter(pk__in=batch)
        deleted += models.QuerySet.delete(batch_rows)[0]
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
        """Delete the rows and their cache entries, without loading a single model instance."""
        deleted = delete_sessions(self.values_list("pk", flat=True), using=self.db)
        return deleted, {self.model._meta.label: deleted}

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


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

    objects = SessionManager()

    @classmethod
    def get_session_store_class(cls) -> type[SessionBase]:
        return import_module(settings.SESSION_ENGINE).SessionStore  # type: ignore[no-any-return]

    def get_decoded(self) -> dict[str, Any]:
        """The application's session data: the client keys kept in the payload are not part of it."""
        data = super().get_decoded()
        data.pop(IP_SESSION_KEY, None)
        data.pop(USER_AGENT_SESSION_KEY, None)
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
