"""The middleware under ASGI: native async, with the same outcome as the sync path, request for request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from qsessions.middleware import SessionMiddleware
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID
from tests.test_requests import AsyncClientAt


def _write(request: HttpRequest) -> HttpResponse:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return HttpResponse("ok")


async def _awrite(request: HttpRequest) -> HttpResponse:
    await request.session.aset("counter", await request.session.aget("counter", 0) + 1)
    return HttpResponse("ok")


def _read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("counter")))


async def _aread(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(await request.session.aget("counter")))


def _untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def _auntouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def _flush(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("ok")


async def _aflush(request: HttpRequest) -> HttpResponse:
    await request.session.aflush()
    return HttpResponse("ok")


def _write_then_fail(request: HttpRequest) -> HttpResponse:
    request.session["counter"] = 99
    return HttpResponse(status=500)


async def _awrite_then_fail(request: HttpRequest) -> HttpResponse:
    await request.session.aset("counter", 99)
    return HttpResponse(status=500)


def _until_browser_closes(request: HttpRequest) -> HttpResponse:
    request.session.set_expiry(0)
    request.session["counter"] = 1
    return HttpResponse("ok")


async def _auntil_browser_closes(request: HttpRequest) -> HttpResponse:
    await request.session.aset_expiry(0)
    await request.session.aset("counter", 1)
    return HttpResponse("ok")


def _for_an_hour(request: HttpRequest) -> HttpResponse:
    request.session.set_expiry(timedelta(hours=1))
    request.session["counter"] = 1
    return HttpResponse("ok")


async def _afor_an_hour(request: HttpRequest) -> HttpResponse:
    await request.session.aset_expiry(timedelta(hours=1))
    await request.session.aset("counter", 1)
    return HttpResponse("ok")


_VIEWS = {
    "write": (_write, _awrite),
    "read": (_read, _aread),
    "untouched": (_untouched, _auntouched),
    "flush": (_flush, _aflush),
    "write-then-fail": (_write_then_fail, _awrite_then_fail),
    "until-browser-closes": (_until_browser_closes, _auntil_browser_closes),
    "for-an-hour": (_for_an_hour, _afor_an_hour),
}

urlpatterns = [path(f"sync/{name}/", views[0]) for name, views in _VIEWS.items()] + [
    path(f"async/{name}/", views[1]) for name, views in _VIEWS.items()
]


@pytest.fixture
def urls(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__


def _outcome(response: Any) -> dict[str, Any]:
    """What the session middleware decided for ``response``: its status, cookie and ``Vary``."""
    morsel = response.cookies.get(django_settings.SESSION_COOKIE_NAME)
    cookie = None
    if morsel is not None:
        cookie = {
            "cleared": morsel.value == "",
            # Computed from the clock, which may tick between the two requests.
            "max-age": round(int(morsel["max-age"]), -1) if morsel["max-age"] else None,
            "has-expires": bool(morsel["expires"]),
            "attributes": (morsel["path"], morsel["domain"], morsel["secure"], morsel["httponly"], morsel["samesite"]),
        }
    return {"status": response.status_code, "cookie": cookie, "vary": response.get("Vary")}


# The path to request before the one compared, to have a session (or not) to start with.
_SCENARIOS = [
    (None, "write"),
    ("write", "write"),
    ("write", "read"),
    ("write", "untouched"),
    (None, "read"),
    ("write", "flush"),
    (None, "flush"),
    ("write", "write-then-fail"),
    (None, "until-browser-closes"),
    ("write", "for-an-hour"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("urls", "close_thread_connections")
@pytest.mark.parametrize("save_every_request", [False, True])
@pytest.mark.parametrize(("before", "name"), _SCENARIOS)
async def test_async_response_is_the_sync_one(engine, settings, before, name, save_every_request):
    from asgiref.sync import sync_to_async

    settings.SESSION_SAVE_EVERY_REQUEST = save_every_request
    settings.SESSION_COOKIE_SAMESITE = "Strict"
    settings.SESSION_COOKIE_SECURE = True
    sync_client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    async_client = AsyncClientAt("10.1.2.3", CHROME_ANDROID)
    if before is not None:
        await sync_to_async(sync_client.get)(f"/sync/{before}/")
        assert (await async_client.get(f"/async/{before}/")).status_code == 200

    expected = _outcome(await sync_to_async(sync_client.get)(f"/sync/{name}/"))
    assert _outcome(await async_client.get(f"/async/{name}/")) == expected

    # And both sessions hold the same data afterwards.
    async def data(client: Any) -> dict[str, Any] | None:
        key = client.cookies.get(django_settings.SESSION_COOKIE_NAME)
        if key is None or not key.value:
            return None
        row = await Session.objects.filter(pk=key.value).afirst()
        if row is None:
            return None
        data = row.get_decoded()
        return {**data, "_session_expiry": bool(data.get("_session_expiry"))}

    assert await data(async_client) == await data(sync_client)


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """Every function sent to a worker thread through ``sync_to_async`` while the test runs."""
    sent: list[Callable[..., Any]] = []
    init = SyncToAsync.__init__

    def recording_init(self: SyncToAsync[Any, Any], func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        sent.append(func)
        init(self, func, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__init__", recording_init)
    return sent


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("urls", "close_thread_connections")
async def test_async_session_work_runs_on_the_event_loop(engine, hops, monkeypatch):
    """No thread hop for the middleware's own work: only the queries (and a cache without async methods) hop."""
    client = AsyncClientAt("10.1.2.3", CHROME_ANDROID)
    assert (await client.get("/async/write/")).status_code == 200
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    # Due for an activity update, from a new client: the response side has all it can do.
    await Session.objects.filter(pk=key).aupdate(last_activity=None)
    if hasattr(engine, "cache_key_prefix"):
        from django.core.cache import caches

        await caches["default"].adelete(engine.cache_key_prefix + key)

    loop_thread = threading.get_ident()
    threads: dict[str, set[int]] = {}
    sync_calls: list[str] = []

    def watched(name: str) -> None:
        original = getattr(engine, name)

        if name.startswith("a") or name == "__init__":

            def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
                threads.setdefault(name, set()).add(threading.get_ident())
                return original(self, *args, **kwargs)

        else:

            def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
                sync_calls.append(name)
                return original(self, *args, **kwargs)

        monkeypatch.setattr(engine, name, spy)

    for name in ("__init__", "aload", "asave", "arecord_activity", "load", "save", "record_activity", "create"):
        watched(name)
    hops.clear()

    for path_ in ("/async/write/", "/async/read/"):
        client.user_agent = f"{CHROME_ANDROID} {path_}"
        assert (await client.get(path_)).status_code == 200

    assert sync_calls == []
    assert threads == {name: {loop_thread} for name in ("__init__", "aload", "asave", "arecord_activity")}
    middleware_hops = [func for func in hops if isinstance(getattr(func, "__self__", None), SessionMiddleware)]
    assert middleware_hops == []
    store_hops = {func.__name__ for func in hops if isinstance(getattr(func, "__self__", None), engine)}
    # asave()'s write, and arecord_activity()'s UPDATE of the second request (a new user agent).
    assert store_hops == {"_write", "_touch_row"}

    row = await Session.objects.aget(pk=key)
    assert row.user_agent == f"{CHROME_ANDROID} /async/read/"
    assert row.last_activity is not None


class MarkingSessionMiddleware(SessionMiddleware):
    """A site's subclass that changes both sync hooks."""

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        request.session_thread = threading.get_ident()  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: Any) -> Any:
        response = super().process_response(request, response)
        response["X-Session-Thread"] = str(request.session_thread)  # type: ignore[attr-defined]
        response["X-Response-Thread"] = str(threading.get_ident())
        return response


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("urls", "close_thread_connections")
async def test_a_subclass_with_its_own_sync_hooks_keeps_them_under_asgi(engine, settings):
    settings.MIDDLEWARE = [f"{__name__}.MarkingSessionMiddleware", *settings.MIDDLEWARE[1:]]
    client = AsyncClientAt("10.1.2.3", CHROME_ANDROID)
    response = await client.get("/async/write/")
    assert response.status_code == 200
    # Run in Django's worker thread, as MiddlewareMixin runs sync hooks, not on the event loop.
    assert response["X-Session-Thread"] == response["X-Response-Thread"] != str(threading.get_ident())
    row = await Session.objects.aget(pk=client.cookies[django_settings.SESSION_COOKIE_NAME].value)
    assert (row.ip, row.user_agent) == ("10.1.2.3", CHROME_ANDROID)


def test_sync_path_is_djangos_mixin():
    # The sync path is MiddlewareMixin's own __call__, with nothing added around it.
    from django.utils.deprecation import MiddlewareMixin

    assert SessionMiddleware.__call__ is MiddlewareMixin.__call__
    middleware = SessionMiddleware(lambda request: HttpResponse())
    assert not middleware.async_mode


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_a_cached_aload_is_one_hop_and_one_round_trip(settings, hops, monkeypatch):
    """Entry, tombstone and "seen" key in one read, whatever the cache: Django's default aget_many() is an aget(), a
    thread hop and a round trip, per key."""
    from asgiref.sync import sync_to_async
    from django.core.cache import BaseCache, caches
    from django.core.cache.backends.locmem import LocMemCache

    from qsessions.backends.cached_db import SessionStore
    from tests.conftest import saved
    from tests.test_finality import count_round_trips

    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    key = (await sync_to_async(saved)(SessionStore, None, cart=[1])).session_key
    cache = caches["default"]
    calls = count_round_trips(cache, monkeypatch, ("get", "get_many", "aget", "aget_many"))
    hops.clear()

    assert (await SessionStore(key, user_agent=CHROME_ANDROID, ip="10.1.2.3").aload())["cart"] == [1]

    if type(cache).aget_many is not BaseCache.aget_many:
        assert (calls, len(hops)) == (["aget_many"], 0)
    else:
        assert (calls, len(hops)) == (["get_many"], 0 if isinstance(cache, LocMemCache) else 1)
