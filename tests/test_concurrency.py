"""Concurrent writers: requests of one session, or of one user, at the same time, on real connections (one a thread).

The outcomes must be those of Django's own engines: two saves of one session each win whole, the last one last;
nothing crashes, no row is duplicated, no session deleted meanwhile comes back. Every wait is bounded, so a
deadlock fails the test instead of hanging the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends import cached_db as django_cached_db
from django.contrib.sessions.backends import db as django_db
from django.core.cache import caches
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, ENGINES
from tests.testapp import views

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("urls")]

#: Seconds any thread waits for another before the test fails.
TIMEOUT = 15
COOKIE = django_settings.SESSION_COOKIE_NAME
LOGIN = {"username": "alice", "password": "secret"}


class DjangoDBStore(django_db.SessionStore):
    """Django's own db engine, on qsessions' table: the documented way to give it another session model."""

    @classmethod
    def get_model_class(cls) -> type[Session]:
        return Session


class DjangoCachedDBStore(django_cached_db.SessionStore):
    """Django's own cached_db engine, on qsessions' table."""

    cache_key_prefix = "tests.django_cached_db"

    @classmethod
    def get_model_class(cls) -> type[Session]:
        return Session


#: What a view waits on, set by the test: called with the request once the session is loaded.
_pause: dict[str, Callable[[HttpRequest], None]] = {}


def _write_after_pause(request: HttpRequest) -> HttpResponse:
    """Loads the session and the user, lets the test act (``_pause``), then changes the session."""
    request.session.get("counter")
    request.user.get_username()
    _pause["hook"](request)
    request.session["counter"] = request.session.get("counter", 0) + 1
    return HttpResponse("ok")


urlpatterns = [
    path("write-after-pause/", _write_after_pause),
    path("login/", csrf_exempt(views.login_view)),
    path("read/", views.read_session),
]


@pytest.fixture
def urls(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__


def _in_threads(*targets: Callable[[], Any]) -> list[Any]:
    """Run each target in its own thread (its own database connection); return their results, or raise theirs."""
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def run(index: int, target: Callable[[], Any]) -> None:
        try:
            results[index] = target()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()
            # Its cache clients too: Django closes them when a request finishes, and this thread ran none.
            caches.close_all()

    threads = [threading.Thread(target=run, args=(index, target)) for index, target in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads), "a writer is still running: deadlocked?"
    if errors:
        raise errors[0]
    return results


def _save_together(make_store: Callable[[str | None], Any], session_key: str) -> dict[str, Any]:
    """Two stores of one session load it, then each saves its own key while the other has loaded too."""
    both_loaded = threading.Barrier(2, timeout=TIMEOUT)

    def writer(name: str) -> None:
        store = make_store(session_key)
        store.get("base")
        both_loaded.wait()
        store[name] = True
        store.save()

    _in_threads(lambda: writer("a"), lambda: writer("b"))
    assert Session.objects.filter(pk=session_key).count() == 1
    return dict(make_store(session_key).items())


@pytest.mark.parametrize(
    ("ours", "djangos"), [("db", DjangoDBStore), ("cached_db", DjangoCachedDBStore)], ids=["db", "cached_db"]
)
def test_concurrent_saves_of_one_session_behave_as_djangos(settings, ours, djangos):
    settings.SESSION_ENGINE = f"qsessions.backends.{ours}"
    outcomes = []
    for make_store in (lambda key: ENGINES[ours](key, user_agent=CHROME_ANDROID, ip="10.1.2.3"), djangos):
        store = make_store(None)
        store["base"] = 1
        store.save()
        data = _save_together(make_store, store.session_key)
        # Last write wins, whole: the base, and exactly one of the two writers' keys.
        assert data.pop("base") == 1
        outcomes.append(sorted(data.values()))
    assert outcomes[0] == outcomes[1] == [True]


def test_concurrent_requests_of_one_session(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    assert client.post("/login/", LOGIN).status_code == 200
    key = client.cookies[COOKIE].value
    both_loaded = threading.Barrier(2, timeout=TIMEOUT)
    _pause["hook"] = lambda request: both_loaded.wait()

    def request(address: str) -> int:
        other = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR=address)
        other.cookies[COOKIE] = key
        return other.get("/write-after-pause/").status_code

    assert _in_threads(lambda: request("10.0.0.1"), lambda: request("10.0.0.2")) == [200, 200]
    row = Session.objects.get(pk=key)
    assert row.get_decoded()["counter"] == 1
    assert row.user == user
    assert row.ip in ("10.0.0.1", "10.0.0.2")


def test_concurrent_logins_of_one_user_make_distinct_sessions(engine, user):
    start = threading.Barrier(4, timeout=TIMEOUT)

    def login(index: int) -> str:
        client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR=f"10.0.0.{index}")
        start.wait()
        assert client.post("/login/", LOGIN).status_code == 200
        return client.cookies[COOKIE].value

    keys = _in_threads(*(lambda index=index: login(index) for index in range(1, 5)))
    assert len(set(keys)) == 4
    rows = Session.objects.filter(user=user)
    assert sorted(rows.values_list("pk", flat=True)) == sorted(keys)
    assert sorted(rows.values_list("ip", flat=True)) == [f"10.0.0.{index}" for index in range(1, 5)]


def test_user_deleted_during_a_request_is_no_crash(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    assert client.post("/login/", LOGIN).status_code == 200
    key = client.cookies[COOKIE].value
    loaded, deleted = threading.Event(), threading.Event()

    def pause(request: HttpRequest) -> None:
        loaded.set()
        assert deleted.wait(TIMEOUT)

    _pause["hook"] = pause

    def request() -> int:
        return client.get("/write-after-pause/").status_code

    def delete_user() -> None:
        assert loaded.wait(TIMEOUT)
        user.delete()
        deleted.set()

    status, _ = _in_threads(request, delete_user)
    # The session was deleted with its user: the save finds no row, which is SessionInterrupted, and writes none.
    assert status == 400
    assert not Session.objects.filter(pk=key).exists()
    assert not Session.objects.exists()
    assert client.get("/read/").json()["user"] == ""
