from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeGuard

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as DjangoCachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore
from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import router

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY
from qsessions.backends import cache_guard
from qsessions.backends.base import ROW_TIMES_KEY, Client, QSessionStoreMixin, pop_extras

#: The published package's prefix: cache entries it wrote stay readable, and ours stay readable by it.
KEY_PREFIX = "qsessions.q_cached_db"
#: Where a session's tombstone is kept: its key follows. Session keys are alphanumeric, so no entry key is one.
TOMBSTONE_PREFIX = "qsessions.revoked"
#: Where a session's last recorded activity and client are kept, ``(last_activity, ip, user_agent)``: written by
#: ``record_activity()`` alone, so that it never rewrites the entry, which holds data a concurrent save may have
#: changed since this request read it.
SEEN_PREFIX = "qsessions.seen"
#: Sets every key of ``KEYS`` to ``ARGV[1]`` for ``ARGV[2]`` seconds: a batch of tombstones in one command. Django's
#: ``RedisCache.set_many()`` sends an ``MSET`` and then one ``EXPIRE`` per key, which redis-py packs and parses one
#: by one: four times the time, for the same single round trip.
SET_ALL_SCRIPT = "for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'EX', ARGV[2]) end"
#: Seconds a tombstone outlives the longest entry it may have to outvote: a request that read or wrote the row
#: just before it was deleted writes its entry a moment later, and its timeout counts from then.
TOMBSTONE_MARGIN = 300


class SessionStore(QSessionStoreMixin, DjangoCachedDBStore):
    """Cached, database-backed sessions that know their user, IP, user agent and timing.

    A cache entry holds what the row holds: the payload with its client, plus the row's expiry and last activity.
    Beside it, a tombstone marks a revoked session and a "seen" key the activity and client recorded since the entry
    was written; one ``get_many`` reads all three. So a request whose session is cached reads no SQL, even to notice
    a new client or a due activity update, and an entry never outlives its row.
    """

    cache_key_prefix = KEY_PREFIX
    #: Set by Django's ``__init__`` (the ``SESSION_CACHE_ALIAS`` cache); django-stubs does not declare it.
    _cache: BaseCache

    def _entry(self, data: dict[str, Any], client: Client) -> dict[str, Any]:
        return {**data, IP_SESSION_KEY: client[0], USER_AGENT_SESSION_KEY: client[1], ROW_TIMES_KEY: self._row_times}

    def _remaining(self) -> int:
        """Seconds the loaded row has left (0 if unknown): an entry written for it must not outlive it."""
        expires_at = self._row_times[0]
        return 0 if expires_at is None else int(expires_at - time.time())

    def _from_cache(self, found: dict[str, Any], keys: tuple[str, str, str]) -> dict[str, Any] | None:
        """The data of a cache hit (``{}`` and no key for a revoked session), or ``None`` on a miss."""
        entry_key, tombstone_key, seen_key = keys
        if tombstone_key in found:
            # The session was revoked or logged out: whatever entry is left is stale, and the row is gone.
            self._session_key = None
            return {}
        entry = found.get(entry_key)
        if not isinstance(entry, dict):
            # Nothing, or something no version of this package wrote: the row decides.
            return None
        client, times = pop_extras(entry)
        # Entries written by the published package carry no times: the first request records its activity.
        expires_at, last_activity = times or (None, None)
        seen = found.get(seen_key)
        if _is_seen(seen) and (last_activity is None or seen[0] > last_activity):
            # Activity recorded after the entry was written: the row holds its client and time now.
            last_activity, client = seen[0], (seen[1], seen[2])
        self._note_row(client, (expires_at, last_activity))
        return entry

    def _cache_keys(self, session_key: str) -> tuple[str, str, str]:
        """The keys of the session's entry, tombstone and recorded activity, read together."""
        return self.cache_key_prefix + session_key, TOMBSTONE_PREFIX + session_key, SEEN_PREFIX + session_key

    def load(self) -> dict[str, Any]:
        # Serves CachedDBStore.load: a hit is one cache round trip (entry, tombstone, activity) and no SQL; a miss
        # reads the row and caches it. A failing cache is left alone and the row alone is read.
        key = self.session_key
        if key is None:
            return {}
        cache = self._cache
        if not cache_guard.retry_at or cache_guard.ready(cache):
            keys = self._cache_keys(key)
            try:
                found = cache.get_many(keys)
            except Exception as error:
                cache_guard.failed(cache, error, reading=True)
            else:
                data = self._from_cache(found, keys)
                if data is not None:
                    return data
                data = super().load()
                if self.session_key is not None:
                    # add(), not set(): a concurrent save's entry, newer than the row read here, stays. An entry that
                    # is there but unusable is replaced.
                    write = cache.set if keys[0] in found else cache.add
                    try:
                        write(keys[0], self._entry(data, self._stored_client), self._remaining())
                    except Exception as error:
                        cache_guard.failed(cache, error)
                return data
        return super().load()

    async def aload(self) -> dict[str, Any]:
        # Serves CachedDBStore.aload.
        key = self.session_key
        if key is None:
            return {}
        cache = self._cache
        if not cache_guard.retry_at or await cache_guard.aready(cache):
            keys = self._cache_keys(key)
            try:
                found = await cache.aget_many(keys)
            except Exception as error:
                cache_guard.failed(cache, error, reading=True)
            else:
                data = self._from_cache(found, keys)
                if data is not None:
                    return data
                data = await super().aload()
                if self.session_key is not None:
                    awrite = cache.aset if keys[0] in found else cache.aadd
                    try:
                        await awrite(keys[0], self._entry(data, self._stored_client), self._remaining())
                    except Exception as error:
                        cache_guard.failed(cache, error)
                return data
        return await super().aload()

    def exists(self, session_key: str) -> bool:
        # Serves CachedDBStore.exists: a cached entry answers only if no tombstone says the session is gone.
        cache = self._cache
        if session_key and (not cache_guard.retry_at or cache_guard.ready(cache)):
            try:
                found = cache.get_many((self.cache_key_prefix + session_key, TOMBSTONE_PREFIX + session_key))
            except Exception as error:
                cache_guard.failed(cache, error, reading=True)
            else:
                if len(found) == 1 and self.cache_key_prefix + session_key in found:
                    return True
        return bool(DjangoDBStore.exists(self, session_key))

    async def aexists(self, session_key: str) -> bool:
        # Serves CachedDBStore.aexists.
        cache = self._cache
        if session_key and (not cache_guard.retry_at or await cache_guard.aready(cache)):
            try:
                found = await cache.aget_many((self.cache_key_prefix + session_key, TOMBSTONE_PREFIX + session_key))
            except Exception as error:
                cache_guard.failed(cache, error, reading=True)
            else:
                if len(found) == 1 and self.cache_key_prefix + session_key in found:
                    return True
        return bool(await DjangoDBStore.aexists(self, session_key))

    def save(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.save: the cache gets the stored payload, client and row times included.
        if self.session_key is None:
            return self.create()
        super().save(must_create)
        entry_key = self.cache_key_prefix + self.session_key
        cache = self._cache
        if not cache_guard.retry_at or cache_guard.ready(cache):
            try:
                cache.set(entry_key, self._entry(self._session, self.client), self.get_expiry_age())
                return None
            except Exception as error:
                cache_guard.failed(cache, error)
        # An older entry would be served once the cache is back: it goes before this process reads the cache again.
        cache_guard.owe([(entry_key, None)])
        return None

    async def asave(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.asave.
        if self.session_key is None:
            return await self.acreate()
        await super().asave(must_create)
        entry_key = self.cache_key_prefix + self.session_key
        cache = self._cache
        if not cache_guard.retry_at or await cache_guard.aready(cache):
            try:
                entry = self._entry(await self._aget_session(), self.client)
                await cache.aset(entry_key, entry, await self.aget_expiry_age())
                return None
            except Exception as error:
                cache_guard.failed(cache, error)
        cache_guard.owe([(entry_key, None)])
        return None

    def _activity_recorded(self, found: bool) -> None:
        # Serves QSessionStoreMixin.record_activity: one set of the "seen" key, never a rewrite of the entry.
        if not found:
            # Revoked meanwhile: the revocation wrote its tombstone.
            return
        key = self.session_key
        cache = self._cache
        if not cache_guard.retry_at or cache_guard.ready(cache):
            try:
                if self._row_times[0] is None:
                    # An entry of the published package, without the row's expiry: the next request caches the row.
                    cache.delete(self.cache_key_prefix + key)  # type: ignore[operator]
                else:
                    cache.set(SEEN_PREFIX + key, self._seen(), self._remaining())  # type: ignore[operator]
                return
            except Exception as error:
                cache_guard.failed(cache, error)
        # The entry still holds the old client and activity: the row has the new ones.
        cache_guard.owe([(self.cache_key_prefix + key, None)])  # type: ignore[operator]

    async def _aactivity_recorded(self, found: bool) -> None:
        # Serves QSessionStoreMixin.arecord_activity.
        if not found:
            return
        key = self.session_key
        cache = self._cache
        if not cache_guard.retry_at or await cache_guard.aready(cache):
            try:
                if self._row_times[0] is None:
                    await cache.adelete(self.cache_key_prefix + key)  # type: ignore[operator]
                else:
                    await cache.aset(SEEN_PREFIX + key, self._seen(), self._remaining())  # type: ignore[operator]
                return
            except Exception as error:
                cache_guard.failed(cache, error)
        cache_guard.owe([(self.cache_key_prefix + key, None)])  # type: ignore[operator]

    def _seen(self) -> tuple[float | None, str | None, str | None]:
        """What the "seen" key holds: the activity just written to the row, and the client it came from."""
        return (self._row_times[1], *self.client)

    def _delete_row(self, session_key: str) -> None:
        # Serves QSessionStoreMixin.delete/adelete (logout, cycle_key): the row, then the session's tombstone, so
        # that a request that loaded the session before cannot bring its entry back.
        from qsessions.models import delete_sessions

        delete_sessions([session_key], using=router.db_for_write(self.model), store=type(self))

    @classmethod
    def write_tombstones(cls, keys: Sequence[str], latest: datetime | None) -> None:
        """Mark these sessions gone in the cache, one write per batch (``_set_tombstones()``); ``latest``: the latest
        of their expiry dates, or ``None`` if none is known.

        A tombstone outvotes the session's entry, so an entry that a request wrote back after the row was deleted is
        never served: the generic cache API has no compare-and-set that could stop that write. Tombstones the cache
        does not take are owed (see ``cache_guard``). The entries themselves are left to expire.
        """
        cache = caches[settings.SESSION_CACHE_ALIAS]
        timeout = tombstone_timeout(latest)
        for start in range(0, len(keys), cache_guard.BATCH_SIZE):
            tombstones = {TOMBSTONE_PREFIX + key: 1 for key in keys[start : start + cache_guard.BATCH_SIZE]}
            if not cache_guard.retry_at or cache_guard.ready(cache):
                try:
                    refused = _set_tombstones(cache, tombstones, timeout)
                except Exception as error:
                    cache_guard.failed(cache, error)
                else:
                    if not refused:
                        continue
                    # Memcached answers a refused key by naming it: as good as an error for those keys.
                    tombstones = dict.fromkeys(refused, 1)
                    cache_guard.failed(cache, RuntimeError(f"the cache did not store {len(refused)} tombstone(s)"))
            cache_guard.owe((key, timeout) for key in tombstones)

    @classmethod
    def delete_entries(cls, keys: list[str]) -> None:
        """Delete these sessions' entries, one ``delete_many`` per batch: what a revocation inside a transaction
        does until it commits (it writes tombstones then), so that a rollback leaves every session as it was."""
        cache = caches[settings.SESSION_CACHE_ALIAS]
        for start in range(0, len(keys), cache_guard.BATCH_SIZE):
            if cache_guard.retry_at and not cache_guard.ready(cache):
                return
            try:
                cache.delete_many([cls.cache_key_prefix + key for key in keys[start : start + cache_guard.BATCH_SIZE]])
            except Exception as error:
                cache_guard.failed(cache, error)
                return


#: Set once this process's Redis refused ``SET_ALL_SCRIPT`` (scripting disabled, or forbidden by an ACL).
_scripts_refused = False


def _set_tombstones(cache: BaseCache, tombstones: dict[str, int], timeout: int) -> list[str]:
    """What ``cache.set_many(tombstones, timeout)`` does, in one script call on Django's ``RedisCache``.

    Its serializer stores an integer as its digits, so the script writes what ``set_many()`` would. A Redis that
    answers the script with an error (scripting disabled, or denied by an ACL) gets ``set_many()`` from then on.
    """
    global _scripts_refused
    if isinstance(cache, RedisCache) and not _scripts_refused:
        from redis.exceptions import ResponseError

        keys = [cache.make_key(key) for key in tombstones]
        # Private to Django: the redis-py client its own writes go through. The suite's Redis runs cover every
        # Django this package supports.
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        try:
            client.eval(SET_ALL_SCRIPT, len(keys), *keys, 1, timeout)
            return []
        except ResponseError as error:
            _scripts_refused = True
            cache_guard.logger.warning("The session cache runs no scripts (%s): tombstones go by set_many().", error)
    return cache.set_many(tombstones, timeout)


def _is_seen(value: object) -> TypeGuard[tuple[float, str | None, str | None]]:
    """Whether ``value`` is what ``_seen()`` writes: a damaged or foreign value must not break a load."""
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and type(value[0]) is float
        and all(part is None or isinstance(part, str) for part in value[1:])
    )


def tombstone_timeout(latest: datetime | None) -> int:
    """How long the tombstones of sessions whose latest expiry date is ``latest`` (``None``: unknown) must live.

    As long as any entry that a racing request could still write: an entry lives at most what was left of its row,
    or ``get_expiry_age()`` (usually ``SESSION_COOKIE_AGE``) when a save wrote it; plus ``TOMBSTONE_MARGIN``.
    """
    remaining = latest.timestamp() - time.time() if latest is not None else 0.0
    return int(max(settings.SESSION_COOKIE_AGE, remaining)) + TOMBSTONE_MARGIN
