from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest

from qsessions.client import client_ip


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, with a store that knows the request's client.

    Building the store touches neither the database nor the cache; the session is loaded on first access.
    """

    def process_request(self, request: HttpRequest) -> None:
        request.session = self.SessionStore(
            session_key=request.COOKIES.get(settings.SESSION_COOKIE_NAME),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            ip=client_ip(request),
        )
