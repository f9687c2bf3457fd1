from __future__ import annotations

import logging

from django.contrib.sessions.backends.cached_db import SessionStore as DjangoCachedDBStore

from qsessions.backends.base import QSessionStoreMixin

#: The published package's prefix: cache entries it wrote stay readable, and ours stay readable by it.
KEY_PREFIX = "qsessions.q_cached_db"

# Django's logger and message, so a site's logging set-up for sessions keeps working.
logger = logging.getLogger("django.contrib.sessions")


class SessionStore(QSessionStoreMixin, DjangoCachedDBStore):
    """Cached, database-backed sessions that know their user, IP, user agent and creation time.

    The cache holds the same payload as the row, client included, so a request whose session is cached reads
    no SQL even to notice that its client changed.
    """

    cache_key_prefix = KEY_PREFIX

    def save(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.save: the cache gets the stored payload, client included.
        if self.session_key is None:
            return self.create()
        super().save(must_create)
        try:
            self._cache.set(self.cache_key, self._payload(self._session), self.get_expiry_age())
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)
        return None

    async def asave(self, must_create: bool = False) -> None:
        # Serves CachedDBStore.asave.
        if self.session_key is None:
            return await self.acreate()
        await super().asave(must_create)
        try:
            await self._cache.aset(
                await self.acache_key(), self._payload(await self._aget_session()), await self.aget_expiry_age()
            )
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)
        return None

    def _delete_row(self, session_key: str) -> None:
        # Serves QSessionStoreMixin.delete/adelete: the row first, so a concurrent cache miss cannot re-cache it.
        super()._delete_row(session_key)
        self._cache.delete(self.cache_key_prefix + session_key)
