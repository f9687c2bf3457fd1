"""On Django's ``RedisCache``, a revocation writes its tombstones with one script call per batch: each must hold what
``set_many()`` would have written, for as long, and a Redis that refuses scripts must still get every tombstone.

These tests need the session cache to be Django's ``RedisCache`` (``QSESSIONS_TEST_CACHE=redis``); the generic
path, ``set_many()``, is what every other cache's run of the suite takes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from qsessions.backends import cache_guard, tombstones
from qsessions.backends.cached_db import KEY_PREFIX, SessionStore
from qsessions.backends.tombstones import PREFIX as TOMBSTONE_PREFIX
from tests.conftest import CHROME_ANDROID, saved

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not django_settings.CACHES["default"]["BACKEND"].endswith("backends.redis.RedisCache"),
        reason="needs Django's RedisCache as the session cache (QSESSIONS_TEST_CACHE=redis)",
    ),
]

NO_SCRIPTS_USER = "qsessions_no_scripts"


@pytest.fixture(autouse=True)
def _cached_db(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    monkeypatch.setattr(tombstones, "_scripts_refused", False)


def _raw(alias: str = "default") -> Any:
    cache = caches[alias]
    assert isinstance(cache, RedisCache)
    return cache._cache.get_client(write=True)  # type: ignore[attr-defined]


def test_a_revocation_writes_its_tombstones_with_one_script_call_per_batch(user, settings, monkeypatch):
    settings.SESSION_COOKIE_AGE = 3600
    stores = [saved(SessionStore, user) for _ in range(3)]
    stores[1].set_expiry(30 * 86400)
    stores[1].save()
    keys = [store.session_key for store in stores]
    calls: list[str] = []
    monkeypatch.setattr(RedisCache, "set_many", lambda *args, **kwargs: calls.append("set_many"))
    monkeypatch.setattr(cache_guard, "BATCH_SIZE", 2)
    client = _raw()
    evaluate = client.eval

    def counted(*args: Any) -> Any:
        calls.append("eval")
        return evaluate(*args)

    monkeypatch.setattr(type(client), "eval", lambda self, *args: counted(*args))

    user.session_set.all().delete()

    assert calls == ["eval", "eval"]
    cache = caches["default"]
    # What set_many() would have written: read back through the cache, an integer.
    assert cache.get_many([TOMBSTONE_PREFIX + key for key in keys]) == {TOMBSTONE_PREFIX + key: 1 for key in keys}
    # The same calls deleted the entries.
    assert cache.get_many([KEY_PREFIX + key for key in keys]) == {}
    for key in keys:
        # The longest-lived session sets the timeout of every tombstone in the revocation.
        assert 30 * 86400 < client.ttl(cache.make_key(TOMBSTONE_PREFIX + key)) <= 30 * 86400 + 600
        assert SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}


@pytest.fixture
def no_scripts(settings: Any) -> Iterator[str]:
    """A cache alias whose Redis user may do anything but run scripts, as an ACL can set one up."""
    _raw().acl_setuser(
        NO_SCRIPTS_USER, enabled=True, nopass=True, keys=["*"], commands=["+@all", "-@scripting"], reset=True
    )
    location = urlsplit(django_settings.CACHES["default"]["LOCATION"])
    netloc = f"{NO_SCRIPTS_USER}:@{location.hostname}:{location.port or 6379}"
    settings.CACHES = {
        **settings.CACHES,
        "no_scripts": {**settings.CACHES["default"], "LOCATION": urlunsplit(location._replace(netloc=netloc))},
    }
    settings.SESSION_CACHE_ALIAS = "no_scripts"
    yield "no_scripts"
    _raw().acl_deluser(NO_SCRIPTS_USER)


def test_a_redis_that_runs_no_scripts_gets_its_tombstones_by_set_many(user, no_scripts, caplog):
    first, second = saved(SessionStore, user), saved(SessionStore, user)

    with caplog.at_level(logging.WARNING, logger="django.contrib.sessions"):
        SessionStore(first.session_key).delete()
        SessionStore(second.session_key).delete()

    cache = caches[no_scripts]
    assert cache.get_many([TOMBSTONE_PREFIX + first.session_key, TOMBSTONE_PREFIX + second.session_key]) == {
        TOMBSTONE_PREFIX + first.session_key: 1,
        TOMBSTONE_PREFIX + second.session_key: 1,
    }
    # Said once, not once per revocation; and the cache was never taken for broken.
    warnings = [record for record in caplog.records if record.name == "django.contrib.sessions"]
    assert [record.levelno for record in warnings] == [logging.WARNING]
    assert "runs no scripts" in warnings[0].getMessage()
    assert cache_guard.retry_at == 0.0
    for store in (first, second):
        assert SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load() == {}
