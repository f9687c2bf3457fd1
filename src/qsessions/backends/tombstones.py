"""Ending cached sessions for good: a tombstone per session, and its entry gone, in one cache round trip per batch.

A tombstone outvotes the session's entry for as long as a racing request could still write that entry back (the
generic cache API has no compare-and-set that could stop such a write): our stores read it with the entry and treat
the session as gone. The entry is deleted in the same round trip, so that a reader which knows nothing of tombstones
(the published 2.x package, during a rolling deploy or after a rollback) finds no session either.

A tombstone the cache does not take is owed: recorded in the database (``OwedTombstone``), in the transaction that
deleted the rows when the cache is known to be failing, and written to the cache by whichever process next finds it
working. Every process reads the owed tombstones about once a second (``check_owed()``), so an ending outlives a
process that could not reach the cache, and is seen by every other one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import DatabaseError, router, transaction
from django.utils import timezone

from qsessions.backends import cache_guard

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from qsessions.models import OwedTombstone

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

#: Seconds between two reads of the owed tombstones by one process; and so how long an ending that owes tombstones
#: waits before it returns (``_wait_until_read()``).
CHECK_EVERY = 1.0

#: Set once this process's Redis refused ``END_SCRIPT`` (scripting disabled, or forbidden by an ACL).
_scripts_refused = False
#: Per thread, ``databases``: those this thread owed tombstones on since its last wait (``_wait_until_read()``).
_unwaited = threading.local()
#: Set while this process's reads of what is owed fail, so that a failing read is logged once, not once a second.
_check_failing = False


def caching_store() -> Any:
    """The configured engine's store class if it caches sessions (``cached_db``), else ``None``."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store if getattr(store, "caches_sessions", False) else None


def forget(keys: Sequence[str], latest: datetime | None, using: str, store: Any = None) -> None:
    """End these sessions (their rows deleted on ``using``; ``latest``: the latest of their expiry dates) in the
    cache, if the engine caches them; ``store``: the caching store class to use instead of the configured engine's.

    With autocommit the tombstones are written at once. Inside a transaction the rows are gone for other connections
    only once it commits, and a rollback brings them back: the entries are deleted now (as harmless as a cache miss)
    and the tombstones written when the transaction commits, which is when the sessions end. While the cache is
    failing, the tombstones are owed (``owe()``) at once, in that transaction if there is one: the ending returns (or
    the transaction commits) ``CHECK_EVERY`` seconds later, when every process has read them.
    """
    store = store or caching_store()
    if store is None:
        return
    if cache_guard.retry_at:
        owe(keys, timeout(latest), using)
    elif transaction.get_connection(using).in_atomic_block:
        store.delete_entries(keys)
        transaction.on_commit(partial(store.write_tombstones, keys, latest, using), using=using)
    else:
        store.write_tombstones(keys, latest, using)


def owe(keys: Sequence[str], seconds: int, using: str) -> None:
    """Record in the database ``using`` that these sessions' tombstones, to live ``seconds``, are owed to the cache.

    A tombstone already owed keeps its time: it counts from the session's first ending, after which no request
    could write its entry back.
    """
    from qsessions.models import OwedTombstone

    keep_until = timezone.now() + timedelta(seconds=seconds)
    owed = (OwedTombstone(session_key=key, keep_until=keep_until) for key in keys)
    OwedTombstone.objects.using(using).bulk_create(owed, batch_size=cache_guard.BATCH_SIZE, ignore_conflicts=True)
    _unwaited.__dict__.setdefault("databases", set()).add(using)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(partial(_wait_until_read, using), using=using)
    else:
        _wait_until_read(using)


def _wait_until_read(using: str) -> None:
    """Return once every process reads the tombstones just owed on ``using`` before it reads an entry.

    A process reads what is owed before its first load that comes ``CHECK_EVERY`` seconds or more after its last
    read. So ``CHECK_EVERY`` after they are committed, a load anywhere either reads them, or comes less than
    ``CHECK_EVERY`` after a read that came after the commit (and so wrote them to its cache, or found its cache
    failing and read rows). The ending that owed them returns only then: once it has, no process serves the entries.
    Several endings committed together wait once: the first wait is after the commit of them all.
    """
    databases = _unwaited.__dict__.get("databases", set())
    if using in databases:
        databases.discard(using)
        time.sleep(CHECK_EVERY)


def check_owed(store: Any) -> None:
    """Write the tombstones owed by any process to the cache of ``store`` (a caching store class), deleting their
    entries, and forget them; the next check is ``CHECK_EVERY`` seconds away. What the cache does not take stays
    owed. A database error is logged, once until a check works again: it must not fail a request that the cache
    could serve.
    """
    from qsessions.models import OwedTombstone

    global _check_failing
    cache_guard.owed_check_at = time.monotonic() + CHECK_EVERY
    # Where the store's rows are, and so where their endings were owed.
    using = router.db_for_write(store.get_model_class())
    # Inside a transaction, a savepoint: a failed read must not break the caller's transaction.
    try:
        with transaction.atomic(using) if transaction.get_connection(using).in_atomic_block else nullcontext():
            _write_owed(OwedTombstone.objects.using(using), store.cache_key_prefix)
    except DatabaseError as error:
        if not _check_failing:
            cache_guard.logger.error(
                "Could not read the session tombstones owed to the cache (%s)", error, exc_info=error
            )
        _check_failing = True
    else:
        _check_failing = False


def _write_owed(owed: QuerySet[OwedTombstone], entry_prefix: str) -> None:
    """``check_owed()``'s work: ``owed`` (the ``OwedTombstone`` rows) written to the session cache a batch at a
    time, each batch deleted once written; its entries are ``entry_prefix`` + key."""
    cache = caches[settings.SESSION_CACHE_ALIAS]
    while batch := list(owed.values_list("session_key", "keep_until")[: cache_guard.BATCH_SIZE]):
        now = timezone.now()
        # Past its time, a tombstone outvotes nothing: the entry it was for has expired.
        due = [(key, until) for key, until in batch if until > now]
        if due:
            seconds = int((max(until for _, until in due) - now).total_seconds()) + 1
            if not _ended(cache, entry_prefix, [key for key, _ in due], seconds):
                return
        owed.filter(session_key__in=[key for key, _ in batch]).delete()
        if len(batch) < cache_guard.BATCH_SIZE:
            return


def timeout(latest: datetime | None) -> int:
    """How long the tombstones of sessions whose latest expiry date is ``latest`` (``None``: unknown) must live.

    As long as any entry that a racing request could still write: an entry lives at most what was left of its row,
    or ``get_expiry_age()`` (usually ``SESSION_COOKIE_AGE``) when a save wrote it; plus ``MARGIN``.
    """
    remaining = latest.timestamp() - time.time() if latest is not None else 0.0
    return int(max(settings.SESSION_COOKIE_AGE, remaining)) + MARGIN


def write(cache: BaseCache, entry_prefix: str, keys: Sequence[str], latest: datetime | None, using: str) -> None:
    """Mark the sessions with these keys gone in ``cache`` and delete their entries (``entry_prefix`` + key): one
    ``_end()`` per ``cache_guard.BATCH_SIZE`` keys. ``latest``: the latest of their expiry dates, if known. What the
    cache does not take is owed, in the database ``using`` that their rows were deleted from."""
    seconds = timeout(latest)
    for start in range(0, len(keys), cache_guard.BATCH_SIZE):
        if not _ended(cache, entry_prefix, keys[start : start + cache_guard.BATCH_SIZE], seconds):
            owe(keys[start:], seconds, using)
            return


def _ended(cache: BaseCache, entry_prefix: str, keys: Sequence[str], seconds: int) -> bool:
    """Whether one batch of sessions ended in ``cache`` (``_end()``: tombstones of ``seconds``, entries deleted)."""
    tombstones = [PREFIX + key for key in keys]
    entries = [entry_prefix + key for key in keys]
    return cache_guard.write(cache, _end, cache, tombstones, entries, seconds)


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
