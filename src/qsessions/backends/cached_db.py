from __future__ import annotations

import logging
import time
from typing import Any

from django.contrib.sessions.backends.cached_db import SessionStore as DjangoCachedDBStore

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY
from qsessions.backends.base import ROW_TIMES_KEY, Client, QSessionStoreMixin, RowTimes, pop_extras

#: The published package's prefix: cache entries it wrote stay readable, and ours stay readable by it.
KEY_PREFIX = "qsessions.q_cached_db"

# Django's logger and message, so a site's logging set-up for sessions keeps working.
logger = logging.getLogger("django.contrib.sessions")


class SessionStore(QSessionStoreMixin, DjangoCachedDBStore):
    """Cached, database-backed sessions that know their user, IP, user agent and timing.

    A cache entry holds what the row holds: the payload with its client, plus the row's expiry and last activity.
    So a request whose session is cached reads no SQL, even to notice a new client or a due activity update, and
    an entry never outlives its row.
    """

    cache_key_prefix = KEY_PREFIX

    def _entry(self, data: dict[str, Any], client: Client) -> dict[str, Any]:
        return {**data, IP_SESSION_KEY: client[0], USER_AGENT_SESSION_KEY: client[1], ROW_TIMES_KEY: self._row_times}

    def _remaining(self) -> int:
        """Seconds the loaded row has left (0 if unknown): an entry written for it must not outlive it."""
        expires_at = self._row_times[0]
        return 0 if expires_at is None else int(expires_at - time.time())

    def _from_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        client, times = pop_extras(entry)
        # Entries written by the published package carry no times: the first request records its activity.
        self._note_row(client, times or (None, None))
        return entry

    def load(self) -> dict[str, Any]:
        # Serves CachedDBStore.load: a hit is one cache GET and no SQL; a miss reads the row and caches it.
        try:
            entry = self._cache.get(self.cache_key)
        except Exception:
            # As Django's: some caches reject some keys.
            entry = None
        if entry is not None:
            return self._from_entry(entry)
        data = super().load()
        if self.session_key is not None:
            self._cache.set(self.cache_key, self._entry(data, self._stored_client), self._remaining())
        return data

    async def aload(self) -> dict[str, Any]:
        # Serves CachedDBStore.aload.
        try:
            entry = await self._cache.aget(await self.acache_key())
        except Exception:
            entry = None
        if entry is not None:
            return self._from_entry(entry)
        data = await super().aload()
        if self.session_key is not None:
            await self._cache.aset(await self.acache_key(), self._entry(data, self._stored_client), self._remaining())
        return data

    def save(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.save: the cache gets the stored payload, client and row times included.
        if self.session_key is None:
            return self.create()
        super().save(must_create)
        try:
            self._cache.set(self.cache_key, self._entry(self._session, self.client), self.get_expiry_age())
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)
        return None

    async def asave(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.asave.
        if self.session_key is None:
            return await self.acreate()
        await super().asave(must_create)
        try:
            entry = self._entry(await self._aget_session(), self.client)
            await self._cache.aset(await self.acache_key(), entry, await self.aget_expiry_age())
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)
        return None

    def _activity_recorded(self, found: bool, loaded: RowTimes) -> None:
        # Serves QSessionStoreMixin.record_activity.
        try:
            action = self._entry_action(self._cache.get(self.cache_key) if found else None, found, loaded)
            if action == "replace":
                self._cache.set(self.cache_key, self._entry(self._session, self.client), self._remaining())
            elif action == "delete":
                self._cache.delete(self.cache_key)
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)

    async def _aactivity_recorded(self, found: bool, loaded: RowTimes) -> None:
        # Serves QSessionStoreMixin.arecord_activity.
        key = await self.acache_key()
        try:
            action = self._entry_action(await self._cache.aget(key) if found else None, found, loaded)
            if action == "replace":
                await self._cache.aset(key, self._entry(await self._aget_session(), self.client), self._remaining())
            elif action == "delete":
                await self._cache.adelete(key)
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)

    def _entry_action(self, entry: dict[str, Any] | None, found: bool, loaded: RowTimes) -> str | None:
        """What to do with the cache entry once the row's client and activity are written.

        The entry is replaced only if it is still the one this request loaded: otherwise the request would put back
        stale data over what a concurrent request saved, or a session that was just revoked or evicted. It is
        deleted if the row is gone, or if it carries no row times (written by the published package), so that the
        next request caches the row afresh.
        """
        if not found:
            return "delete"
        if entry is None:
            return None
        times = entry.get(ROW_TIMES_KEY)
        if times is None:
            return "delete"
        return "replace" if tuple(times) == loaded and self._remaining() > 0 else None

    def _delete_row(self, session_key: str) -> None:
        # Serves QSessionStoreMixin.delete/adelete: the row first, so a concurrent cache miss cannot re-cache it.
        super()._delete_row(session_key)
        self._cache.delete(self.cache_key_prefix + session_key)
