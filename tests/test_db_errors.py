"""Database errors are not swallowed: each one a save meets is either Django's documented outcome or goes up as it is.

- The row was deleted while the request ran (a logout or a revocation elsewhere): ``UpdateError``, which Django's
  middleware turns into ``SessionInterrupted``, a 400. The session is not written back.
- Any other database error (an outage, a lock timeout): raised as it is, a 500 that the site's error reporting
  sees; the cache is not told of a save that did not happen.
- A new key that is taken: ``CreateError`` inside, and ``create()`` tries another key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import UpdateError
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path

from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, saved
from tests.test_requests import AsyncClientAt


def _write_then_revoked(request: HttpRequest) -> HttpResponse:
    """Changes the session, while (as a concurrent logout would) its row is deleted."""
    request.session["counter"] = 99
    Session.objects.filter(pk=request.session.session_key).delete()
    return HttpResponse("ok")


async def _async_write_then_revoked(request: HttpRequest) -> HttpResponse:
    await request.session.aset("counter", 99)
    await Session.objects.filter(pk=request.session.session_key).adelete()
    return HttpResponse("ok")


def _write(request: HttpRequest) -> HttpResponse:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return JsonResponse({"counter": request.session["counter"]})


urlpatterns = [
    path("write/", _write),
    path("write-then-revoked/", _write_then_revoked),
    path("async/write-then-revoked/", _async_write_then_revoked),
]


@pytest.fixture
def urls(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__


@contextmanager
def _failing(kind: str, error: Exception | None = None) -> Iterator[list[str]]:
    """Every ``kind`` statement (``"UPDATE"``, ``"INSERT"``) on the session table fails with ``error``."""
    failed: list[str] = []

    def execute(run: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith(kind) and "qsessions_session" in sql:
            failed.append(sql)
            raise error or OperationalError("server closed the connection unexpectedly")
        return run(sql, params, many, context)

    with connection.execute_wrapper(execute):
        yield failed


def _cookie(client: Any) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


# A row deleted during the request.


@pytest.mark.django_db
@pytest.mark.usefixtures("urls")
def test_revoked_during_the_request_is_session_interrupted(engine):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    assert client.get("/write/").json() == {"counter": 1}
    key = _cookie(client)

    response = client.get("/write-then-revoked/")

    assert response.status_code == 400
    assert not Session.objects.filter(pk=key).exists()
    assert client.get("/write/").json() == {"counter": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("urls", "close_thread_connections")
async def test_revoked_during_an_async_request_is_session_interrupted(engine):
    client = AsyncClientAt("10.1.2.3", CHROME_ANDROID)
    assert (await client.get("/write/")).json() == {"counter": 1}
    key = _cookie(client)

    response = await client.get("/async/write-then-revoked/")

    assert response.status_code == 400
    assert not await Session.objects.filter(pk=key).aexists()


@pytest.mark.django_db
def test_update_of_a_vanished_row_writes_no_cache_entry(engine, session_cache):
    store = saved(engine, theme="dark")
    Session.objects.filter(pk=store.session_key).delete()
    store["theme"] = "light"
    with pytest.raises(UpdateError):
        store.save()
    assert not Session.objects.filter(pk=store.session_key).exists()
    assert session_cache.get(f"{getattr(engine, 'cache_key_prefix', '')}{store.session_key}") is None


# Any other database error.


# Without an outer transaction, as in a request: a failed statement breaks the one it is in.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["UPDATE", "INSERT"])
def test_database_error_on_save_is_raised(engine, session_cache, kind):
    store = saved(engine, theme="dark") if kind == "UPDATE" else engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    store["theme"] = "light"

    with _failing(kind) as failed, pytest.raises(OperationalError):
        store.save()

    assert len(failed) == 1
    if kind == "UPDATE":
        # Neither the row nor the cache claims the save that failed.
        reloaded = engine(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
        assert reloaded["theme"] == "dark"
        assert Session.objects.get(pk=store.session_key).get_decoded()["theme"] == "dark"
    else:
        assert not Session.objects.exists()
        assert session_cache.get(f"{getattr(engine, 'cache_key_prefix', '')}{store.session_key}") is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
@pytest.mark.parametrize("kind", ["UPDATE", "INSERT"])
async def test_database_error_on_asave_is_raised(engine, kind):
    store = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await store.aset("theme", "dark")
    if kind == "UPDATE":
        await store.asave()
    await store.aset("theme", "light")

    # asave() writes through sync_to_async, in the thread whose connection is the one to break.
    failing = _failing(kind)
    failed = await sync_to_async(failing.__enter__)()
    try:
        with pytest.raises(OperationalError):
            await store.asave()
    finally:
        await sync_to_async(failing.__exit__)(None, None, None)
    assert len(failed) == 1


# Without an outer transaction, as in a request: a failed statement breaks the one it is in.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("urls")
def test_database_error_on_save_is_a_server_error_not_a_400(engine):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, raise_request_exception=False)
    assert client.get("/write/").json() == {"counter": 1}

    with _failing("UPDATE"):
        response = client.get("/write/")

    assert response.status_code == 500
    assert response.exc_info[0] is OperationalError
    assert client.get("/write/").json() == {"counter": 2}


# A taken key.


@pytest.mark.django_db
def test_create_retries_a_taken_key(engine, session_cache, monkeypatch):
    taken = saved(engine, theme="dark")
    fresh = "f" * 32
    keys = iter([taken.session_key, fresh])
    monkeypatch.setattr(engine, "_get_new_session_key", lambda self: next(keys))

    store = engine(user_agent=CHROME_ANDROID, ip="10.9.9.9")
    store["theme"] = "light"
    store.save()

    assert store.session_key == fresh
    # The taken session is untouched, in the row and the cache; the outer transaction is still usable.
    assert Session.objects.get(pk=taken.session_key).ip == "10.1.2.3"
    assert engine(taken.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")["theme"] == "dark"
    assert engine(fresh, user_agent=CHROME_ANDROID, ip="10.9.9.9")["theme"] == "light"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_acreate_retries_a_taken_key(engine, monkeypatch):
    taken = engine(user_agent=CHROME_ANDROID, ip="10.1.2.3")
    await taken.aset("theme", "dark")
    await taken.asave()
    keys = iter([taken.session_key, "f" * 32])

    async def new_key(self: Any) -> str:
        return next(keys)

    monkeypatch.setattr(engine, "_aget_new_session_key", new_key)
    store = engine(user_agent=CHROME_ANDROID, ip="10.9.9.9")
    await store.aset("theme", "light")
    await store.asave()

    assert store.session_key == "f" * 32
    assert await engine(taken.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aget("theme") == "dark"
    assert await engine("f" * 32, user_agent=CHROME_ANDROID, ip="10.9.9.9").aget("theme") == "light"
