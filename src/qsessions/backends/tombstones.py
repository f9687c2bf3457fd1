"""Ending cached sessions for good: a tombstone per session, and its entry gone, in one cache round trip per batch.

A tombstone outvotes the session's entry for as long as a racing request could still write that entry back (the
generic cache API has no compare-and-set that could stop such a write): our stores read it with the entry and treat
the session as gone. The entry is deleted in the same round trip, so that a reader which knows nothing of tombstones
(the published 2.x package, during a rolling deploy or after a rollback) finds no session either.

Whatever the cache does not take is owed (see ``cache_guard``) and written before this process uses the cache again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.db import transaction

from qsessions.backends import cache_guard

#: Where a session's tombstone is kept: its key follows. Session keys are alphanumeric, so no entry key is one.
PREFIX = "qsessions.revoked"
#: Seconds a tombstone outlives the longest entry it may have to outvote: a request that read or wrote the row
#: just before it was deleted writes its entry a moment later, and its timeout counts from then.
MARGIN = 300
#: Sets ``KEYS[1..ARGV[3]]`` (tombstones) to ``ARGV[1]`` for ``ARGV[2]`` seconds and deletes the other keys
#: (entries): a batch in one command, where ``RedisCache.set_many()`` sends an ``MSET`` and an ``EXPIRE`` per key.
END_SCRIPT = (
    "local count = tonumber(ARGV[3]) "
    "for index, key in ipairs(KEYS) do "
    "if index <= count then redis.call('SET', key, ARGV[1], 'EX', ARGV[2]) else redis.call('DEL', key) end "
    "end"
)

#: Set once this process's Redis refused ``END_SCRIPT`` (scripting disabled, or forbidden by an ACL).
_scripts_refused = False


def caching_store() -> Any:
    """The configured engine's store class if it caches sessions (``cached_db``), else ``None``."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store if getattr(store, "caches_sessions", False) else None


def forget(keys: Sequence[str], latest: datetime | None, using: str, store: Any = None) -> None:
    """End these sessions (their rows deleted; ``latest``: the latest of their expiry dates) in the cache, if the
    engine caches them; ``store``: the caching store class to use instead of the configured engine's.

    With autocommit the tombstones are written at once. Inside a transaction the rows are gone for other connections
    only once it commits, and a rollback brings them back: the entries are deleted now (as harmless as a cache miss)
    and the tombstones written when the transaction commits, which is when the sessions end.
    """
    store = store or caching_store()
    if store is None:
        return
    if transaction.get_connection(using).in_atomic_block:
        store.delete_entries(keys)
        transaction.on_commit(partial(store.write_tombstones, keys, latest), using=using)
    else:
        store.write_tombstones(keys, latest)


def timeout(latest: datetime | None) -> int:
    """How long the tombstones of sessions whose latest expiry date is ``latest`` (``None``: unknown) must live.

    As long as any entry that a racing request could still write: an entry lives at most what was left of its row,
    or ``get_expiry_age()`` (usually ``SESSION_COOKIE_AGE``) when a save wrote it; plus ``MARGIN``.
    """
    remaining = latest.timestamp() - time.time() if latest is not None else 0.0
    return int(max(settings.SESSION_COOKIE_AGE, remaining)) + MARGIN


def write(cache: BaseCache, entry_prefix: str, keys: Sequence[str], latest: datetime | None) -> None:
    """Mark the sessions with these keys gone in ``cache`` and delete their entries (``entry_prefix`` + key): one
    ``_end()`` per ``cache_guard.BATCH_SIZE`` keys. ``latest``: the latest of their expiry dates, if known."""
    seconds = timeout(latest)
    for start in range(0, len(keys), cache_guard.BATCH_SIZE):
        batch = keys[start : start + cache_guard.BATCH_SIZE]
        tombstones = [PREFIX + key for key in batch]
        entries = [entry_prefix + key for key in batch]
        if not cache_guard.write(cache, _end, cache, tombstones, entries, seconds):
            cache_guard.owe([*((key, seconds) for key in tombstones), *((key, None) for key in entries)])


def delete_entries(cache: BaseCache, entry_prefix: str, keys: Sequence[str]) -> None:
    """Delete these sessions' entries, one ``delete_many`` per batch: what a revocation inside a transaction does
    until it commits (it writes tombstones then), so that a rollback leaves every session as it was."""
    for start in range(0, len(keys), cache_guard.BATCH_SIZE):
        entries = [entry_prefix + key for key in keys[start : start + cache_guard.BATCH_SIZE]]
        if not cache_guard.write(cache, cache.delete_many, entries):
            return


def _end(cache: BaseCache, tombstones: list[str], entries: list[str], seconds: int) -> None:
    """Write ``tombstones`` and delete ``entries``: one script call on Django's ``RedisCache``, else ``set_many()``
    and ``delete_many()``. Raises if the cache refused a tombstone (memcached names the keys it did not store).

    Django's serializer stores an integer as its digits, so the script writes what ``set_many()`` would. A Redis that
    answers the script with an error (scripting disabled, or denied by an ACL) gets the generic calls from then on.
    """
    global _scripts_refused
    if isinstance(cache, RedisCache) and not _scripts_refused:
        from redis.exceptions import ResponseError

        keys = [cache.make_key(key) for key in (*tombstones, *entries)]
        # Private to Django: the redis-py client its own writes go through. The suite's Redis runs cover every
        # Django this package supports.
        client = cache._cache.get_client(write=True)
        try:
            client.eval(END_SCRIPT, len(keys), *keys, 1, seconds, len(tombstones))
            return
        except ResponseError as error:
            _scripts_refused = True
            cache_guard.logger.warning("The session cache runs no scripts (%s): tombstones go by set_many().", error)
    refused = cache.set_many(dict.fromkeys(tombstones, 1), seconds)
    if refused:
        raise RuntimeError(f"the cache did not store {len(refused)} tombstone(s)")
    cache.delete_many(entries)
