"""Test caches: a local-memory cache that fails on demand, and the key function of the memcached runs."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, default_key_func
from django.core.cache.backends.locmem import LocMemCache

#: Every key ``recorded_key`` made in this process, as the server stores it.
made_keys: set[str] = set()


def recorded_key(key: str, key_prefix: str, version: int) -> str:
    """Django's own key, remembered: memcached cannot list the keys a run left behind, so the run deletes these."""
    made = default_key_func(key, key_prefix, version)
    made_keys.add(made)
    return made


class FlakyCache(LocMemCache):
    """``LocMemCache`` whose every operation raises ``ConnectionError`` while ``FlakyCache.failing`` is set.

    The async operations are Django's defaults, which run these in a thread, so they fail alike.
    """

    failing = False
    #: Operations attempted while failing, to tell that a store left the cache alone.
    failed_calls = 0

    def _check(self) -> None:
        if FlakyCache.failing:
            FlakyCache.failed_calls += 1
            raise ConnectionError("the cache is down")

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().add(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().get(*args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().get_many(*args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().set(*args, **kwargs)

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().set_many(*args, **kwargs)

    def touch(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().touch(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().delete(*args, **kwargs)

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().delete_many(*args, **kwargs)

    def has_key(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().has_key(*args, **kwargs)

    def clear(self) -> None:
        self._check()
        super().clear()


class WriteRefusingCache(LocMemCache):
    """``LocMemCache`` that reads, but whose writes raise while ``WriteRefusingCache.refusing`` is set: a cache
    that is full, read-only, or fails a value it will not take, after the read of the same request worked."""

    refusing = False
    #: Writes attempted while refusing.
    refused = 0

    def _check(self) -> None:
        if WriteRefusingCache.refusing:
            WriteRefusingCache.refused += 1
            raise ConnectionError("the cache takes no writes")

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().add(*args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().set(*args, **kwargs)

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().set_many(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().delete(*args, **kwargs)

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().delete_many(*args, **kwargs)


class KeyRefusingCache(LocMemCache):
    """``LocMemCache`` whose ``set_many`` leaves out the keys in ``KeyRefusingCache.refuse`` and names them in its
    answer, as memcached does for values it did not store."""

    refuse: frozenset[str] = frozenset()

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[str]:
        refused = [key for key in data if key in KeyRefusingCache.refuse]
        super().set_many({key: value for key, value in data.items() if key not in refused}, timeout, version)
        return refused
