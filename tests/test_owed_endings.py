"""An ending made by a process that cannot reach the cache is final in every process, even once that one is gone.

Each test runs separate processes (``tests.processes``) on the suite's database and cache server: the revoking one
reaches the cache through a ``Relay`` that the test cuts, as a network partition of that one server would. The
tombstones it could not write are owed in the database, where every other process reads them
(``tombstones.check_owed()``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import caches
from django.utils import timezone

from bench._servers import Relay
from qsessions.backends import tombstones
from qsessions.backends.cached_db import KEY_PREFIX, SessionStore
from qsessions.models import OwedTombstone, Session
from tests.conftest import ended_in_the_cache, saved
from tests.processes import AppProcess, needs_a_cache_server

pytestmark = [pytest.mark.django_db(transaction=True), needs_a_cache_server]


@pytest.fixture(autouse=True)
def _cached_db(settings: Any) -> None:
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"


def _cache_address() -> SplitResult:
    """The suite's cache server's location, split: a URL (Redis) or ``host:port`` (memcached)."""
    location = django_settings.CACHES["default"]["LOCATION"]
    return urlsplit(location if "//" in location else f"//{location}")


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A relay to the suite's cache server: the network of the processes that reach the cache through it."""
    address = _cache_address()
    relayed = Relay((address.hostname or "127.0.0.1", address.port or 0))
    yield relayed
    relayed.cut()


@pytest.fixture
def processes() -> Iterator[list[AppProcess]]:
    """The processes a test starts: killed at its end, whatever happened."""
    started: list[AppProcess] = []
    yield started
    for process in started:
        process.kill()


def _through(relay: Relay) -> dict[str, Any]:
    """The suite's cache settings, reached through ``relay``."""
    cache = dict(django_settings.CACHES["default"])
    cache["LOCATION"] = cache["LOCATION"].replace(_cache_address().netloc, f"127.0.0.1:{relay.port}", 1)
    return {"default": cache}


def _start(processes: list[AppProcess], caches: dict[str, Any] | None = None, retry_after: float = 5.0) -> AppProcess:
    process = AppProcess(caches, retry_after)
    processes.append(process)
    return process


def _cached_session(user: Any) -> str:
    """A signed-in session of ``user`` whose entry is in the cache, as a busy session's is."""
    key = saved(SessionStore, user).session_key
    assert SESSION_KEY in SessionStore(key, user_agent="parent", ip="10.1.1.1").load()
    assert caches["default"].get(KEY_PREFIX + key) is not None
    return key


def test_a_revocation_by_a_partitioned_process_is_final_in_the_others_once_it_exited(user, relay, processes):
    key = _cached_session(user)
    serving = _start(processes)
    relay.cut()
    revoking = _start(processes, _through(relay))
    # Its last read of what is owed is now: without more, it would not read again for a second.
    assert serving.signed_in(key)

    assert revoking.revoke_all_sessions(user) == 1
    revoking.exit()
    assert not Session.objects.filter(pk=key).exists()
    # The cache still serves the entry: only the database knows of the ending.
    assert caches["default"].get(KEY_PREFIX + key) is not None
    assert list(OwedTombstone.objects.values_list("session_key", flat=True)) == [key]

    # The revocation returned once every process reads what it owed before an entry: here at once.
    assert not serving.signed_in(key)
    assert ended_in_the_cache(key)
    assert not OwedTombstone.objects.exists()


def test_the_ending_outlives_a_process_that_exits_before_the_cache_is_back(user, relay, processes):
    key = _cached_session(user)
    relay.cut()
    revoking = _start(processes, _through(relay))
    assert revoking.revoke_all_sessions(user) == 1
    revoking.exit()
    relay.heal()

    assert not _start(processes, _through(relay)).signed_in(key)
    assert ended_in_the_cache(key)


def test_a_revoking_process_writes_what_it_owes_once_its_cache_is_back(user, other_user, relay, processes):
    key = _cached_session(user)
    elsewhere = _cached_session(other_user)
    relay.cut()
    revoking = _start(processes, _through(relay), retry_after=0.1)
    assert revoking.revoke_all_sessions(user) == 1
    assert OwedTombstone.objects.count() == 1
    relay.heal()
    time.sleep(0.2)

    # Its next request, whatever session it reads, writes the tombstone before reading an entry.
    assert revoking.signed_in(elsewhere)
    assert ended_in_the_cache(key)
    assert not OwedTombstone.objects.exists()
    assert not revoking.signed_in(key)


def test_more_endings_owed_at_once_than_a_process_could_keep(user, relay, processes):
    """Beyond the 100,000 invalidations a process keeps in memory: owed in the database, none is dropped."""
    count = 100_500
    cached = [_cached_session(user) for _ in range(3)]
    expire_date = timezone.now() + timedelta(days=1)
    Session.objects.bulk_create(
        (
            Session(session_key=f"bulk{index:028d}", session_data="", expire_date=expire_date, user=user)
            for index in range(count - len(cached))
        ),
        batch_size=2000,
    )
    relay.cut()
    revoking = _start(processes, _through(relay))
    assert revoking.revoke_all_sessions(user) == count
    revoking.exit()
    assert OwedTombstone.objects.count() == count

    assert not _start(processes).signed_in(cached[0])
    assert not OwedTombstone.objects.exists()
    keys = [*cached, *(f"bulk{index:028d}" for index in range(count - len(cached)))]
    cache = caches["default"]
    written = 0
    for start in range(0, count, 5000):
        written += len(cache.get_many([tombstones.PREFIX + key for key in keys[start : start + 5000]]))
    assert written == count
    assert all(ended_in_the_cache(key) for key in cached)
