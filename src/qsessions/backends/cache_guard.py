"""The session cache's health as one process sees it, and the invalidations that process still owes the cache.

A cache outage must not take the site down: while the cache fails, ``cached_db`` stores read and write rows alone
(a small circuit breaker, so a dead cache costs one error per burst, not one per request and one timeout each).
Nor may it leave a stale entry behind: the removal of an entry that a save could not replace is kept here, and done
before this process uses the cache again. (A tombstone the cache did not take is owed in the database instead, where
every process finds it: see ``tombstones``.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from django.core.cache import BaseCache
from django.core.signals import setting_changed

# Django's logger, so a site's logging set-up for sessions keeps working.
logger = logging.getLogger("django.contrib.sessions")

#: Seconds the cache is left alone after it failed, before a request tries it again.
RETRY_AFTER = 5.0
#: How many owed entry removals a process keeps at most: about 150 bytes each.
MAX_OWED = 100_000
#: How many keys one ``set_many``/``delete_many`` takes.
BATCH_SIZE = 500

#: ``0.0`` while the cache works. Otherwise the ``time.monotonic()`` from which the next operation may try it again:
#: a request reads just this float, and tries the cache again only when it is set.
retry_at = 0.0

#: The ``time.monotonic()`` from which this process's next load reads the tombstones owed in the database
#: (``tombstones.check_owed()``): about once a second, and at once when the cache works again.
owed_check_at = 0.0

P = ParamSpec("P")
T = TypeVar("T")

#: The keys of the entries owed a removal.
_owed: set[str] = set()
_lock = threading.Lock()
_dropped = False


def failed(cache: BaseCache, error: BaseException, *, reading: bool = False) -> None:
    """Note that an operation on ``cache`` raised: leave the cache alone for ``RETRY_AFTER`` seconds.

    Only the failure that opens the breaker is logged, so a dead cache logs once, not once per request. A failed
    write is logged with Django's own message, which a site's log filters may know.
    """
    global retry_at
    with _lock:
        opening = retry_at == 0.0
        retry_at = time.monotonic() + RETRY_AFTER
    if opening:
        message = "Error reading from cache (%s)" if reading else "Error saving to cache (%s)"
        logger.error(message, cache, exc_info=error)


def owe(entry_keys: Iterable[str]) -> None:
    """Remember entries that the cache could not replace or delete: they go before this process uses it again.

    Beyond ``MAX_OWED`` keys new ones are dropped, with one error logged per outage: those sessions may then be
    served as they were before the outage once the cache is back.
    """
    global _dropped
    lost = 0
    with _lock:
        for key in entry_keys:
            if key not in _owed and len(_owed) >= MAX_OWED:
                lost += 1
                continue
            _owed.add(key)
        report = lost > 0 and not _dropped
        _dropped = _dropped or lost > 0
    if report:
        logger.error("Too many session cache invalidations are waiting for the cache; %d were dropped.", lost)


def _take() -> list[str]:
    with _lock:
        owed = list(_owed)
        _owed.clear()
    return owed


def _batches(owed: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(owed), BATCH_SIZE):
        yield owed[start : start + BATCH_SIZE]


def _recovered(cache: BaseCache, owed: list[str], error: BaseException | None) -> bool:
    global retry_at, _dropped, owed_check_at
    with _lock:
        if error is not None:
            # Deleted or not, they are still owed: deleting twice is harmless.
            _owed.update(owed)
            retry_at = time.monotonic() + RETRY_AFTER
            return False
        # A failure elsewhere meanwhile moved retry_at on: the breaker stays open and what it owes stays owed.
        if _owed or time.monotonic() < retry_at:
            return False
        retry_at, _dropped, owed_check_at = 0.0, False, 0.0
    logger.info("The session cache (%s) works again.", cache)
    return True


def _try_again(cache: BaseCache) -> bool:
    """Whether the cache may be used again, once it failed: not before ``retry_at``, and only once it has taken every
    entry removal this process owes it. Those are the probe; with nothing owed, one ``has_key``.
    """
    if time.monotonic() < retry_at:
        return False
    owed = _take()
    try:
        if not owed:
            cache.has_key("qsessions.probe")
        for batch in _batches(owed):
            cache.delete_many(batch)
    except Exception as error:
        return _recovered(cache, owed, error)
    return _recovered(cache, owed, None)


async def _atry_again(cache: BaseCache) -> bool:
    """The async twin of ``_try_again()``."""
    if time.monotonic() < retry_at:
        return False
    owed = _take()
    try:
        if not owed:
            await cache.ahas_key("qsessions.probe")
        for batch in _batches(owed):
            await cache.adelete_many(batch)
    except Exception as error:
        return _recovered(cache, owed, error)
    return _recovered(cache, owed, None)


def owed_check_due() -> bool:
    """Whether a load reads the tombstones owed in the database first: once a second, and whenever the breaker is
    about to try the cache again, so that they are written before any entry is read from a cache back from a
    failure."""
    now = time.monotonic()
    return now >= owed_check_at or (retry_at != 0.0 and now >= retry_at)


def read(cache: BaseCache, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """``operation(*args, **kwargs)``, a read of ``cache``; ``None`` if the cache is failing, or fails now: the caller
    then reads the database."""
    if retry_at and not _try_again(cache):
        return None
    try:
        return operation(*args, **kwargs)
    except Exception as error:
        failed(cache, error, reading=True)
        return None


async def aread(cache: BaseCache, operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """The async twin of ``read()``."""
    if retry_at and not await _atry_again(cache):
        return None
    try:
        return await operation(*args, **kwargs)
    except Exception as error:
        failed(cache, error, reading=True)
        return None


def write(cache: BaseCache, operation: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> bool:
    """Whether ``operation(*args, **kwargs)``, a write to ``cache``, went through: ``False`` if the cache is failing,
    or fails now. The caller then owes (``owe()``) whatever the write was to invalidate."""
    if retry_at and not _try_again(cache):
        return False
    try:
        operation(*args, **kwargs)
    except Exception as error:
        failed(cache, error)
        return False
    return True


async def awrite(
    cache: BaseCache, operation: Callable[P, Awaitable[object]], *args: P.args, **kwargs: P.kwargs
) -> bool:
    """The async twin of ``write()``."""
    if retry_at and not await _atry_again(cache):
        return False
    try:
        await operation(*args, **kwargs)
    except Exception as error:
        failed(cache, error)
        return False
    return True


def reset(**kwargs: Any) -> None:
    """Forget every failure and owed invalidation: they were about the cache as it was configured until now."""
    global retry_at, _dropped
    if kwargs.get("setting", "CACHES") not in ("CACHES", "SESSION_CACHE_ALIAS"):
        return
    with _lock:
        retry_at, _dropped = 0.0, False
        _owed.clear()


# Another cache (override_settings in tests) starts out working, and owed nothing.
setting_changed.connect(reset)
