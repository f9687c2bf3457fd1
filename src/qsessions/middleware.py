from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date

from qsessions.conf import conf


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, with a store that knows the request's client.

    Building the store touches neither the database nor the cache, and validates nothing: the session is loaded,
    and the client's address and user agent checked, on first access. The address is ``REMOTE_ADDR`` unless the
    settings name trusted proxies or a function that finds it: no forwarding header is trusted by default. Once the
    response is ready, a session that was not saved records its new client or its activity, if either is due.

    Under ASGI it runs natively async: the store is built inline (it does no I/O) and the response side uses the
    store's async API, so the session costs no trip to a worker thread beyond the ones its queries need.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        # A subclass that overrides a sync hook keeps it under ASGI too, run in a worker thread as Django runs it: its
        # code may do I/O, and the async path must not skip it.
        cls = type(self)
        self._inline_request = cls.process_request is SessionMiddleware.process_request
        self._native_response = cls.process_response is SessionMiddleware.process_response

    def process_request(self, request: HttpRequest) -> None:
        # Serves MiddlewareMixin.__call__ (sync), and __acall__ below, which runs it inline.
        resolve = conf.CLIENT_IP
        request.session = self.SessionStore(  # type: ignore[call-arg]
            session_key=request.COOKIES.get(settings.SESSION_COOKIE_NAME),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            ip=request.META.get("REMOTE_ADDR") if resolve is None else resolve(request),
        )

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # Serves MiddlewareMixin.__call__ (sync): Django's saving and cookie handling, then the activity.
        response = super().process_response(request, response)
        record_activity = getattr(getattr(request, "session", None), "record_activity", None)
        if record_activity is not None:
            record_activity()
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Serves MiddlewareMixin.__acall__, which would run each process_* method in a worker thread.
        if self._inline_request:
            self.process_request(request)
        else:
            await sync_to_async(self.process_request, thread_sensitive=True)(request)
        # get_response is a coroutine function whenever this runs: MiddlewareMixin decided so.
        response = await self.get_response(request)  # type: ignore[misc]
        if self._native_response:
            return await self.aprocess_response(request, response)
        return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)

    async def aprocess_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """The async twin of ``process_response()``: the same decisions as Django's, through the async store API."""
        try:
            session = request.session
            accessed, modified, empty = session.accessed, session.modified, session.is_empty()
        except AttributeError:
            # Something removed the session, or put there an object that is not one: nothing to save.
            return response
        cookie_name = settings.SESSION_COOKIE_NAME
        vary_on_cookie = accessed
        if empty and cookie_name in request.COOKIES:
            # The session was flushed: the browser forgets its key.
            _forget_cookie(response)
            vary_on_cookie = True
        elif not empty and (modified or settings.SESSION_SAVE_EVERY_REQUEST) and response.status_code < 500:
            # A server error leaves the session as it was before the request.
            if await session.aget_expire_at_browser_close():
                max_age = None
            else:
                max_age = await session.aget_expiry_age()
            try:
                await session.asave()
            except UpdateError as error:
                raise SessionInterrupted(
                    "The session was deleted before the request completed, for example by a logout in a concurrent "
                    "request."
                ) from error
            _set_cookie(response, session.session_key, max_age)
            vary_on_cookie = True
        if vary_on_cookie:
            patch_vary_headers(response, ("Cookie",))
        arecord_activity = getattr(session, "arecord_activity", None)
        if arecord_activity is not None:
            await arecord_activity()
        return response


def _set_cookie(response: HttpResponseBase, session_key: str | None, max_age: int | None) -> None:
    """Give the browser the session's key, for ``max_age`` seconds (``None``: until it closes)."""
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session_key,  # type: ignore[arg-type]
        max_age=max_age,
        expires=None if max_age is None else http_date(time.time() + max_age),
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        # False adds no attribute, as None does.
        secure=bool(settings.SESSION_COOKIE_SECURE),
        httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


def _forget_cookie(response: HttpResponseBase) -> None:
    response.delete_cookie(
        settings.SESSION_COOKIE_NAME,
        path=settings.SESSION_COOKIE_PATH,
        domain=settings.SESSION_COOKIE_DOMAIN,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )
