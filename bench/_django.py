"""What the benchmarks share: Django configured for one database and one cache, and a count of the SQL statements
and cache round trips that an operation makes."""

from __future__ import annotations

import gc
import importlib.util
import os
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

#: The cache the session engines use, per ``--cache``. Local memory keeps 300 entries by default, far fewer than a
#: scenario puts in it.
CACHES = {
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 10**7}},
    "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/13"},
}


def database(db: str, name: str | None = None, conn_max_age: int = 0, pool: bool = False) -> dict[str, Any]:
    """The settings of ``db`` (``sqlite``, ``postgresql`` or ``mariadb``) for a database of the benchmark's own.

    ``name``: the SQLite file (default: an in-memory database) or the server database (default: one named for this
    process). Never a test suite's ``test_*`` database: the tests may be running. ``pool``: on PostgreSQL, a pool of
    connections (psycopg's, through Django) instead of ``CONN_MAX_AGE``.
    """
    if db == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name or "bench.sqlite3",
            "TEST": {"NAME": name},
            "CONN_MAX_AGE": conn_max_age,
        }
    name = name or f"qsessions_bench_{os.getpid()}"
    servers = {
        "postgresql": {"ENGINE": "django.db.backends.postgresql", "USER": "postgres", "TEST": {"NAME": name}},
        "mariadb": {
            "ENGINE": "django.db.backends.mysql",
            "USER": "root",
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": name, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        },
    }
    settings = {**servers[db], "NAME": name, "HOST": "127.0.0.1", "CONN_MAX_AGE": conn_max_age}
    if pool and db == "postgresql":
        settings.update(CONN_MAX_AGE=0, OPTIONS={"pool": True})
    return settings


def configure(
    db: str, cache: str, name: str | None = None, conn_max_age: int = 0, pool: bool = False, **extra: Any
) -> None:
    """``settings.configure()`` for ``database(db, name, conn_max_age, pool)`` and ``CACHES[cache]``; ``extra``: more
    settings."""
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        DEBUG=False,
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        DATABASES={"default": database(db, name, conn_max_age, pool)},
        CACHES={"default": CACHES[cache]},
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", "qsessions"],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        SILENCED_SYSTEM_CHECKS=["qsessions.W001"],
        **extra,
    )


class Counter:
    """SQL statements (through an execute wrapper) and cache round trips (through the cache's methods).

    A call made inside a counted one is not counted again: some caches' ``get_many()`` is a ``get()`` per key, in one
    round trip or none, and local memory's ``delete_many()`` calls ``delete()`` per key. Our ``cached_db`` ends a
    batch of sessions on Redis with one script call, past the cache's methods: that call is counted too.
    """

    CACHE_METHODS = ("get", "set", "add", "delete", "get_many", "set_many", "delete_many", "has_key", "touch")

    def __init__(self) -> None:
        from django.core.cache import caches
        from django.core.cache.backends.redis import RedisCache
        from django.db import connection

        self.sql = 0
        self.cache = 0
        #: Seconds of the longest statement.
        self.longest = 0.0
        self._depth = 0
        connection.execute_wrappers.append(self._count_sql)
        cache = caches["default"]
        for name in self.CACHE_METHODS:
            setattr(cache, name, self._counting(getattr(cache, name)))
        # The published package, run in a child process under the same import name, has no such module.
        if isinstance(cache, RedisCache) and importlib.util.find_spec("qsessions.backends.tombstones"):
            tombstones = import_module("qsessions.backends.tombstones")
            tombstones._end = self._counting(tombstones._end)

    def _count_sql(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.sql += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.longest = max(self.longest, time.perf_counter() - started)

    def _counting(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.cache += self._depth == 0
            self._depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def timed(self, operation: Callable[[], Any]) -> dict[str, float]:
        """Milliseconds, statements, round trips and the longest statement's milliseconds of one ``operation()``."""
        gc.collect()
        self.sql = self.cache = 0
        self.longest = 0.0
        started = time.perf_counter()
        operation()
        elapsed = (time.perf_counter() - started) * 1000
        return {"ms": elapsed, "sql": self.sql, "cache": self.cache, "longest_ms": self.longest * 1000}
