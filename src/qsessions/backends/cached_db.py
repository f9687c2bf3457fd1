from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as DjangoCachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import router

from qsessions.backends import cache_guard, payload, tombstones
from qsessions.backends.base import QSessionStoreMixin

#: The published package's prefix: cache entries it wrote stay readable, and ours stay readable by it.
KEY_PREFIX = "qsessions.q_cached_db"
#: Where a session's last recorded activity and client are kept (``payload.Seen``): written by ``record_activity()``
#: alone, so that it never rewrites the entry, which holds data a concurrent save may have changed since this request
#: read it.
SEEN_PREFIX = "qsessions.seen"


class SessionStore(QSessionStoreMixin, DjangoCachedDBStore):
    """Cached, database-backed sessions that know their user, IP, user agent and timing.

    A cache entry holds what the row holds: the payload with its client, plus the row's expiry and last activity.
    Beside it, a tombstone marks an ended session and a "seen" key the activity and client recorded since the entry
    was written; one ``get_many`` reads all three. So a request whose session is cached reads no SQL, even to notice
    a new client or a due activity update, and an entry never outlives its row. Every cache operation goes through
    ``cache_guard``: while the cache fails, the store reads and writes rows alone.
    """

    caches_sessions: ClassVar[bool] = True
    cache_key_prefix = KEY_PREFIX
    #: Set by Django's ``__init__`` (the ``SESSION_CACHE_ALIAS`` cache); django-stubs does not declare it.
    _cache: BaseCache

    def _entry(self, data: dict[str, Any]) -> dict[str, Any]:
        return payload.entry(data, self.client, self._row_times)

    def _seconds_left(self) -> int:
        """Seconds the loaded row has left (0 if unknown): an entry written for it must not outlive it."""
        expires_at = self._row_times[0]
        return 0 if expires_at is None else int(expires_at - time.time())

    def _cache_keys(self, session_key: str) -> tuple[str, str, str]:
        """The keys of the session's entry, tombstone and recorded activity, read together."""
        return self.cache_key_prefix + session_key, tombstones.PREFIX + session_key, SEEN_PREFIX + session_key

    def _from_cache(self, found: dict[str, Any], keys: tuple[str, str, str]) -> dict[str, Any] | None:
        """The data of a cache hit (``{}`` and no key for an ended session), or ``None`` on a miss."""
        entry_key, tombstone_key, seen_key = keys
        if tombstone_key in found:
            # Whatever entry is left is stale, and the row is gone.
            self._session_key = None
            return {}
        entry = found.get(entry_key)
        if not isinstance(entry, dict):
            # Nothing, or something no version of this package wrote: the row decides.
            return None
        client, times = payload.pop_extras(entry)
        # Entries written by the published package carry no times: the first request records its activity.
        expires_at, last_activity = times or (None, None)
        seen = found.get(seen_key)
        if payload.is_seen(seen) and (last_activity is None or seen[0] > last_activity):
            # Activity recorded after the entry was written: the row holds its client and time now.
            last_activity, client = seen[0], (seen[1], seen[2])
        self._remember_row(client, (expires_at, last_activity))
        return entry

    def _cache_entry_of(self, data: dict[str, Any], found: dict[str, Any], entry_key: str) -> None:
        """After a miss: cache the row just read. ``add()``, not ``set()``, so that a concurrent save's entry, newer
        than the row read here, stays; an entry that is there but unusable is replaced."""
        if self.session_key is not None:
            write = self._cache.set if entry_key in found else self._cache.add
            cache_guard.write(self._cache, write, entry_key, self._entry(data), self._seconds_left())

    async def _acache_entry_of(self, data: dict[str, Any], found: dict[str, Any], entry_key: str) -> None:
        if self.session_key is not None:
            write = self._cache.aset if entry_key in found else self._cache.aadd
            await cache_guard.awrite(self._cache, write, entry_key, self._entry(data), self._seconds_left())

    async def _aget_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """``aget_many()`` in one thread hop and one round trip. Django's default is one ``aget()``, a hop and a
        round trip, per key: a cache without async methods of its own (Django's ``RedisCache``, django-redis,
        memcached) gets one ``get_many()`` in one hop instead, and local memory, which does no I/O, none."""
        cache = self._cache
        if type(cache).aget_many is not BaseCache.aget_many:
            return await cache.aget_many(keys)
        if isinstance(cache, LocMemCache):
            return cache.get_many(keys)
        return await sync_to_async(cache.get_many)(keys)

    def load(self) -> dict[str, Any]:
        # Serves CachedDBStore.load: a hit is one cache round trip (entry, tombstone, activity) and no SQL; a miss
        # reads the row and caches it. A failing cache is left alone and the row alone is read.
        if self.session_key is None:
            return {}
        if cache_guard.owed_check_due():
            tombstones.check_owed(type(self))
        keys = self._cache_keys(self.session_key)
        found = cache_guard.read(self._cache, self._cache.get_many, keys)
        if found is None:
            return super().load()
        data = self._from_cache(found, keys)
        if data is None:
            data = super().load()
            self._cache_entry_of(data, found, keys[0])
        return data

    async def aload(self) -> dict[str, Any]:
        # Serves CachedDBStore.aload.
        if self.session_key is None:
            return {}
        if cache_guard.owed_check_due():
            await sync_to_async(tombstones.check_owed)(type(self))
        keys = self._cache_keys(self.session_key)
        found = await cache_guard.aread(self._cache, self._aget_many, keys)
        if found is None:
            return await super().aload()
        data = self._from_cache(found, keys)
        if data is None:
            data = await super().aload()
            await self._acache_entry_of(data, found, keys[0])
        return data

    def exists(self, session_key: str) -> bool:
        # Serves CachedDBStore.exists: a cached entry answers only if no tombstone says the session is gone.
        if session_key:
            keys = self._cache_keys(session_key)[:2]
            found = cache_guard.read(self._cache, self._cache.get_many, keys)
            if found is not None and found.keys() == {keys[0]}:
                return True
        return bool(DjangoDBStore.exists(self, session_key))

    async def aexists(self, session_key: str) -> bool:
        # Serves CachedDBStore.aexists.
        if session_key:
            keys = self._cache_keys(session_key)[:2]
            found = await cache_guard.aread(self._cache, self._aget_many, keys)
            if found is not None and found.keys() == {keys[0]}:
                return True
        return bool(await DjangoDBStore.aexists(self, session_key))

    def save(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.save: the cache gets the stored payload, client and row times included.
        if self.session_key is None:
            return self.create()
        super().save(must_create)
        entry_key = self.cache_key_prefix + self.session_key
        entry = self._entry(self._session)
        if not cache_guard.write(self._cache, self._cache.set, entry_key, entry, self.get_expiry_age()):
            # An older entry would be served once the cache is back.
            cache_guard.owe([entry_key])
        return None

    async def asave(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.asave.
        if self.session_key is None:
            return await self.acreate()
        await super().asave(must_create)
        entry_key = self.cache_key_prefix + self.session_key
        entry = self._entry(await self._aget_session())
        if not await cache_guard.awrite(self._cache, self._cache.aset, entry_key, entry, await self.aget_expiry_age()):
            cache_guard.owe([entry_key])
        return None

    def _activity_recorded(self, found: bool) -> None:
        # Serves QSessionStoreMixin.record_activity: one set of the "seen" key, never a rewrite of the entry. An entry
        # of the published package has no row expiry to time that key by: it goes, and the next request caches the row.
        if not found:
            self._end_vanished_row()
            return
        entry_key, _, seen_key = self._cache_keys(self.session_key)  # type: ignore[arg-type]
        if self._row_times[0] is None:
            done = cache_guard.write(self._cache, self._cache.delete, entry_key)
        else:
            done = cache_guard.write(self._cache, self._cache.set, seen_key, self._seen(), self._seconds_left())
        if not done:
            # The entry still holds the old client and activity: the row has the new ones.
            cache_guard.owe([entry_key])

    async def _aactivity_recorded(self, found: bool) -> None:
        # Serves QSessionStoreMixin.arecord_activity.
        if not found:
            await sync_to_async(self._end_vanished_row)()
            return
        entry_key, _, seen_key = self._cache_keys(self.session_key)  # type: ignore[arg-type]
        if self._row_times[0] is None:
            done = await cache_guard.awrite(self._cache, self._cache.adelete, entry_key)
        else:
            done = await cache_guard.awrite(self._cache, self._cache.aset, seen_key, self._seen(), self._seconds_left())
        if not done:
            cache_guard.owe([entry_key])

    def _end_vanished_row(self) -> None:
        """The row was deleted since this request loaded the session: write its tombstone again. Its ending wrote it
        or owed it, unless the process that ended it died in between; the row's absence is the record of it."""
        expires_at = self._row_times[0]
        latest = None if expires_at is None else datetime.fromtimestamp(expires_at, tz=timezone.utc)
        self.write_tombstones([self.session_key], latest, router.db_for_write(self.model))  # type: ignore[list-item]

    def _seen(self) -> tuple[float | None, str | None, str | None]:
        """What the "seen" key holds: the activity just written to the row, and the client it came from."""
        return (self._row_times[1], *self.client)

    def _delete_row(self, session_key: str) -> None:
        # Serves QSessionStoreMixin.delete/adelete (logout, cycle_key): the row, then the session's tombstone, so
        # that a request that loaded the session before cannot bring its entry back.
        from qsessions.models import delete_sessions

        delete_sessions([session_key], using=router.db_for_write(self.model), store=type(self))

    @classmethod
    def write_tombstones(cls, keys: Sequence[str], latest: datetime | None, using: str) -> None:
        """End these sessions, whose rows are deleted from ``using``, in the cache (``tombstones.write()``);
        ``latest``: the latest of their expiry dates."""
        tombstones.write(caches[settings.SESSION_CACHE_ALIAS], cls.cache_key_prefix, keys, latest, using)

    @classmethod
    def delete_entries(cls, keys: Sequence[str]) -> None:
        """Delete these sessions' entries (``tombstones.delete_entries()``)."""
        tombstones.delete_entries(caches[settings.SESSION_CACHE_ALIAS], cls.cache_key_prefix, keys)

    @classmethod
    def clear_expired(cls) -> None:
        # Serves QSessionStoreMixin.clear_expired: clearsessions also writes the tombstones owed to the cache, and
        # forgets those whose time is past.
        super().clear_expired()
        tombstones.check_owed(cls)
