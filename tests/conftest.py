from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import caches
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from qsessions.backends import cached_db, db, tombstones
from tests.testapp.caches import FlakyCache

ENGINES = {"db": db.SessionStore, "cached_db": cached_db.SessionStore}

CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def saved(engine: type[SessionBase], user: Any = None, **data: Any) -> SessionBase:
    """A session saved by ``engine`` for a Chrome-on-Android client at 10.1.2.3, signed in as ``user`` if given."""
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")  # type: ignore[call-arg]
    if user is not None:
        store["_auth_user_id"] = str(user.pk)
    store.update(data or {"a": 1})
    store.save()
    return store


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("QSESSIONS_TEST_CACHE") == "memcached":
        # A cache client opened inside a Channels consumer's worker thread is closed by no request_finished, and the
        # garbage collector reports its memcached socket in whichever test runs then.
        config.addinivalue_line(
            "filterwarnings",
            r"ignore:Exception ignored in. <socket.socket .*11211\)>:pytest.PytestUnraisableExceptionWarning",
        )


def pytest_report_header() -> str:
    db_name = os.environ.get("QSESSIONS_TEST_DB", "sqlite")
    cache = os.environ.get("QSESSIONS_TEST_CACHE", "locmem")
    return f"qsessions: database={db_name} cache={cache} user={os.environ.get('QSESSIONS_TEST_USER_MODEL', 'default')}"


def delete_behind_the_stores_back(key: str) -> None:
    """Delete a session's row with plain SQL: no tombstone written or owed, as when the process that deleted it died
    before it could do either."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM qsessions_session WHERE session_key = %s", [key])


@pytest.fixture(scope="session", autouse=True)
def _drop_cache_keys_afterwards() -> Iterator[None]:
    """Sessions live for weeks in the cache: a test run on a cache server leaves none of its keys behind."""
    yield
    cache_settings = django_settings.CACHES["default"]
    # Django's RedisCache and django-redis's both make keys as "<prefix>:<version>:<key>".
    if cache_settings["BACKEND"].endswith("RedisCache"):
        import redis

        client = redis.Redis.from_url(cache_settings["LOCATION"])
        for key in client.scan_iter(match=f"{cache_settings['KEY_PREFIX']}:*", count=1000):
            client.delete(key)
        client.close()
    elif cache_settings["BACKEND"].endswith("PyMemcacheCache"):
        from tests.testapp.caches import made_keys

        # The raw client: the cache's own delete_many would make each key again.
        client = caches["default"]._cache  # type: ignore[attr-defined]
        keys = sorted(made_keys)
        for start in range(0, len(keys), 500):
            client.delete_many(keys[start : start + 500])


@pytest.fixture(autouse=True)
def _quick_owed_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ending that owes its tombstones waits a twentieth of a second rather than a second (``tombstones.owe()``),
    and loads read what is owed as often. The tests of separate processes run the real timing, in those processes."""
    from qsessions.backends import tombstones

    monkeypatch.setattr(tombstones, "CHECK_EVERY", 0.05)


@pytest.fixture(autouse=True)
def _working_session_cache() -> Iterator[None]:
    """Each test starts with a session cache that is taken to work and is owed nothing, and leaves it so.

    Nor does a load read the owed tombstones (``tombstones.check_owed()``) unless the test asks for it or brings the
    cache back from a failure: about once a second, that read would land in the statement counts of whichever test
    runs then.
    """
    from qsessions.backends import cache_guard

    cache_guard.reset()
    cache_guard.owed_check_at = math.inf
    yield
    cache_guard.reset()
    cache_guard.owed_check_at = math.inf


@pytest.fixture
def flaky(settings: Any) -> Iterator[type[FlakyCache]]:
    """The session cache is a ``FlakyCache`` on ``cached_db``: set ``failing`` to take it down, clear it to bring it
    back."""
    settings.CACHES = {**settings.CACHES, "flaky": {"BACKEND": "tests.testapp.caches.FlakyCache"}}
    settings.SESSION_CACHE_ALIAS = "flaky"
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    FlakyCache.failing, FlakyCache.failed_calls = False, 0
    yield FlakyCache
    FlakyCache.failing = False


def ended_in_the_cache(key: str) -> bool:
    """Whether the session cache holds the session's tombstone, and no entry for readers that know nothing of
    tombstones."""
    found = caches["default"].get_many([tombstones.PREFIX + key, cached_db.KEY_PREFIX + key])
    return found == {tombstones.PREFIX + key: 1}


@pytest.fixture
def fresh_geoip(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GeoIP reader, resolved path or warning carried over from another test."""
    from qsessions import geoip

    monkeypatch.setattr(geoip, "_databases", {})
    monkeypatch.setattr(geoip, "_resolved", {})
    monkeypatch.setattr(geoip, "_warned", set())


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest, settings: Any) -> type[SessionBase]:
    """Each test that takes it runs once per qsessions engine, with SESSION_ENGINE set to match."""
    settings.SESSION_ENGINE = f"qsessions.backends.{request.param}"
    return ENGINES[request.param]


@pytest.fixture
async def close_thread_connections() -> AsyncIterator[None]:
    """Close the connections that the async ORM opened in its worker thread, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="alice", email="alice@example.com", password="secret")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="bob", email="bob@example.com", password="secret")


@pytest.fixture
def session_cache() -> Any:
    return caches["default"]


class Statements:
    """The SQL statements run inside the block, without the savepoints a test's transaction adds."""

    def __init__(self, context: CaptureQueriesContext) -> None:
        self._context = context

    @property
    def sql(self) -> list[str]:
        return [
            query["sql"]
            for query in self._context.captured_queries
            if not query["sql"].upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))
        ]

    @property
    def kinds(self) -> list[str]:
        """``["SELECT", "UPDATE", …]``: the first word of each statement."""
        return [sql.split(None, 1)[0].upper() for sql in self.sql]


@pytest.fixture
def statements() -> Callable[[], Any]:
    """``with statements() as run: …`` then ``run.kinds``."""

    class _Capture:
        def __enter__(self) -> Statements:
            self._context = CaptureQueriesContext(connection)
            self._context.__enter__()
            return Statements(self._context)

        def __exit__(self, *exc: object) -> None:
            self._context.__exit__(*exc)

    return _Capture
