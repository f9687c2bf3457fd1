from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponseBase

from qsessions.conf import conf


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, with a store that knows the request's client.

    Building the store touches neither the database nor the cache, and validates nothing: the session is loaded,
    and the client's address and user agent checked, on first access. The address is ``REMOTE_ADDR`` unless the
    settings name trusted proxies or a function that finds it: no forwarding header is trusted by default. Once the
    response is ready, a session that was not saved records its new client or its activity, if either is due.
    """

    def process_request(self, request: HttpRequest) -> None:
        # Django's middleware runs this on the sync and the async path alike.
        resolve = conf.CLIENT_IP
        request.session = self.SessionStore(
            session_key=request.COOKIES.get(settings.SESSION_COOKIE_NAME),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            ip=request.META.get("REMOTE_ADDR") if resolve is None else resolve(request),
        )

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response = super().process_response(request, response)
        record_activity = getattr(getattr(request, "session", None), "record_activity", None)
        if record_activity is not None:
            record_activity()
        return response
