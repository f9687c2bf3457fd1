"""Test caches: local-memory caches that fail on demand, and the key function of the memcached runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT, default_key_func
from django.core.cache.backends.locmem import LocMemCache

#: Every key ``recorded_key`` made in this process, as the server stores it.
made_keys: set[str] = set()


def recorded_key(key: str, key_prefix: str, version: int) -> str:
    """Django's own key, remembered: memcached cannot list the keys a run left behind, so the run deletes these."""
    made = default_key_func(key, key_prefix, version)
    made_keys.add(made)
    return made


#: What a session store reads, and what it writes, of a cache.
READS = ("get", "get_many", "has_key")
WRITES = ("add", "set", "set_many", "touch", "delete", "delete_many", "clear")


def _failing(name: str) -> Callable[..., Any]:
    def operation(self: FailingCache, *args: Any, **kwargs: Any) -> Any:
        cache = type(self)
        if cache.failing:
            cache.failed_calls += 1
            raise ConnectionError(cache.error)
        return getattr(LocMemCache, name)(self, *args, **kwargs)

    operation.__name__ = name
    return operation


class FailingCache(LocMemCache):
    """``LocMemCache`` whose ``operations`` raise ``ConnectionError`` while the class's ``failing`` is set.

    The async operations are Django's defaults, which run these in a thread, so they fail alike.
    """

    operations: ClassVar[tuple[str, ...]] = ()
    error: ClassVar[str] = ""
    failing: ClassVar[bool] = False
    #: Operations attempted while failing, to tell that a store left the cache alone.
    failed_calls: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.operations:
            setattr(cls, name, _failing(name))


class FlakyCache(FailingCache):
    """A cache that is down: every operation fails."""

    operations = READS + WRITES
    error = "the cache is down"


class WriteRefusingCache(FailingCache):
    """A cache that reads, but takes no writes: full, read-only, or failing a value it will not take, after the read
    of the same request worked."""

    operations = WRITES
    error = "the cache takes no writes"


class KeyRefusingCache(LocMemCache):
    """``LocMemCache`` whose ``set_many`` leaves out the keys in ``KeyRefusingCache.refuse`` and names them in its
    answer, as memcached does for values it did not store."""

    refuse: frozenset[str] = frozenset()

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[str]:
        refused = [key for key in data if key in KeyRefusingCache.refuse]
        super().set_many({key: value for key, value in data.items() if key not in refused}, timeout, version)
        return refused
