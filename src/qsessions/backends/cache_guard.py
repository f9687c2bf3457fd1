"""The session cache's health as one process sees it, and the invalidations that process still owes the cache.

A cache outage must not take the site down: while the cache fails, ``cached_db`` stores read and write rows alone
(a small circuit breaker, so a dead cache costs one error per burst, not one per request and one timeout each).
Nor may it leave a stale entry behind: an invalidation that could not be written (a tombstone of a revoked session,
the removal of an entry a save could not replace) is kept here, and written before this process uses the cache
again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from django.core.cache import BaseCache
from django.core.signals import setting_changed

# Django's logger, so a site's logging set-up for sessions keeps working.
logger = logging.getLogger("django.contrib.sessions")

#: Seconds the cache is left alone after it failed, before a request tries it again.
RETRY_AFTER = 5.0
#: How many owed invalidations a process keeps at most: about 150 bytes each.
MAX_OWED = 100_000
#: How many keys one ``set_many``/``delete_many`` takes.
BATCH_SIZE = 500

#: ``0.0`` while the cache works. Otherwise the ``time.monotonic()`` from which the next operation may try it again:
#: a request reads just this float, and tries the cache again only when it is set.
retry_at = 0.0

P = ParamSpec("P")
T = TypeVar("T")

#: Cache key -> what is owed: a tombstone's timeout, or ``None`` to delete an entry.
_owed: dict[str, int | None] = {}
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


def owe(invalidations: Iterable[tuple[str, int | None]]) -> None:
    """Remember invalidations that the cache did not take: ``(key, tombstone timeout)``, or ``(key, None)`` to delete.

    A tombstone is kept with the longest timeout asked for. Beyond ``MAX_OWED`` keys new ones are dropped, with one
    error logged per outage: entries of those sessions may then be served stale once the cache is back.
    """
    global _dropped
    lost = 0
    with _lock:
        for key, timeout in invalidations:
            if key not in _owed and len(_owed) >= MAX_OWED:
                lost += 1
                continue
            known = _owed.get(key)
            _owed[key] = timeout if known is None or (timeout is not None and timeout > known) else known
        report = lost > 0 and not _dropped
        _dropped = _dropped or lost > 0
    if report:
        logger.error("Too many session cache invalidations are waiting for the cache; %d were dropped.", lost)


def _take() -> dict[str, int | None]:
    with _lock:
        owed = dict(_owed)
        _owed.clear()
    return owed


def _batches(owed: dict[str, int | None]) -> Iterable[tuple[dict[str, int], int, list[str]]]:
    """``(tombstones, their timeout, keys to delete)`` per ``BATCH_SIZE`` keys."""
    items = list(owed.items())
    for start in range(0, len(items), BATCH_SIZE):
        batch = items[start : start + BATCH_SIZE]
        tombstones = {key: 1 for key, timeout in batch if timeout is not None}
        timeout = max((timeout for _, timeout in batch if timeout is not None), default=0)
        yield tombstones, timeout, [key for key, timeout in batch if timeout is None]


def _recovered(cache: BaseCache, owed: dict[str, int | None], error: BaseException | None) -> bool:
    global retry_at, _dropped
    with _lock:
        if error is not None:
            # Written or not, they are still owed: rewriting a tombstone or deleting twice is harmless.
            for key, timeout in owed.items():
                _owed.setdefault(key, timeout)
            retry_at = time.monotonic() + RETRY_AFTER
            return False
        # A failure elsewhere meanwhile moved retry_at on: the breaker stays open and what it owes stays owed.
        if _owed or time.monotonic() < retry_at:
            return False
        retry_at, _dropped = 0.0, False
    logger.info("The session cache (%s) works again.", cache)
    return True


def _try_again(cache: BaseCache) -> bool:
    """Whether the cache may be used again, once it failed: not before ``retry_at``, and only once it has taken every
    invalidation this process owes it. Writing those is the probe; with nothing owed, one ``has_key``.
    """
    if time.monotonic() < retry_at:
        return False
    owed = _take()
    try:
        if not owed:
            cache.has_key("qsessions.probe")
        for tombstones, timeout, deletes in _batches(owed):
            if tombstones:
                cache.set_many(tombstones, timeout)
            if deletes:
                cache.delete_many(deletes)
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
        for tombstones, timeout, deletes in _batches(owed):
            if tombstones:
                await cache.aset_many(tombstones, timeout)
            if deletes:
                await cache.adelete_many(deletes)
    except Exception as error:
        return _recovered(cache, owed, error)
    return _recovered(cache, owed, None)


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
