"""Sessions for Django Channels consumers that know their client and record their activity.

Channels' ``SessionMiddleware`` builds ``scope["session"]`` from the cookie alone, so a session used only over a
websocket would never record its IP, user agent or activity. The middleware here is a drop-in replacement for it:

- The store is given the connection's client, found as the HTTP middleware finds it: ``scope["client"]`` is the
  peer (Django's ``REMOTE_ADDR``), read through ``QSESSIONS_TRUSTED_PROXIES``, or passed to ``QSESSIONS_CLIENT_IP``
  as a request built from the scope, whose ``META`` holds ``REMOTE_ADDR`` and the ``HTTP_*`` headers.
- A websocket's activity is recorded when the consumer receives the connect message, then at most once per
  ``QSESSIONS_ACTIVITY_INTERVAL`` as it receives messages: a socket that stays open for hours keeps its session
  shown as active, at one small UPDATE per interval at most.
- An HTTP consumer records its activity once its response has started, after the session is saved.

It needs Channels (``pip install django-qsessions[channels]``); nothing else in qsessions imports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

from qsessions.conf import conf

try:
    from channels.auth import AuthMiddleware  # type: ignore[import-untyped]
    from channels.sessions import CookieMiddleware, InstanceSessionWrapper  # type: ignore[import-untyped]
except ImportError as error:
    raise ImportError("qsessions.channels needs Django Channels: pip install 'django-qsessions[channels]'") from error

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["AuthMiddlewareStack", "SessionMiddleware", "SessionMiddlewareStack", "scope_client"]

#: Messages that are the client's activity on a websocket.
_ACTIVITY_MESSAGES = frozenset({"websocket.connect", "websocket.receive"})


def _meta(scope: Scope) -> dict[str, str]:
    """The scope's peer and headers as Django's ASGI handler puts them in ``request.META``."""
    meta: dict[str, str] = {}
    client = scope.get("client")
    if client:
        meta["REMOTE_ADDR"] = client[0]
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            name = "HTTP_" + name
        value = raw_value.decode("latin-1")
        # A header sent more than once reads as one, its values joined, as Django does.
        meta[name] = f"{meta[name]},{value}" if name in meta else value
    return meta


def _request(scope: Scope, meta: dict[str, str]) -> HttpRequest:
    """A request that carries what a ``QSESSIONS_CLIENT_IP`` function reads: ``META``, the path and method."""
    request = HttpRequest()
    request.META = meta
    request.path = request.path_info = scope.get("path", "")
    # A websocket opens with a GET.
    request.method = scope.get("method", "GET")
    return request


def scope_client(scope: Scope) -> tuple[object, str]:
    """The ``(ip, user_agent)`` a connection gives its session store, before the store validates them."""
    meta = _meta(scope)
    resolve = conf.CLIENT_IP
    ip = meta.get("REMOTE_ADDR") if resolve is None else resolve(_request(scope, meta))
    return ip, meta.get("HTTP_USER_AGENT", "")


class _SessionWrapper(InstanceSessionWrapper):  # type: ignore[misc]
    """Channels' per-connection session holder, with a store that knows the client."""

    async def resolve_session(self) -> None:
        # Serves InstanceSessionWrapper.resolve_session.
        self.client = ip, user_agent = scope_client(self.scope)
        self.scope["session"]._wrapped = self.session_store(
            session_key=self.scope["cookies"].get(self.cookie_name), user_agent=user_agent, ip=ip
        )

    async def send(self, message: Message) -> None:
        # Serves InstanceSessionWrapper.send, which saves a changed session as an HTTP response starts.
        await super().send(message)
        if self.activated and message["type"] == "http.response.start":
            arecord_activity = getattr(self.scope["session"], "arecord_activity", None)
            if arecord_activity is not None:
                await arecord_activity()


class _WebsocketActivity:
    """The consumer's ``receive``, which records the session's activity on the connect and then once per interval."""

    def __init__(self, wrapper: _SessionWrapper, receive: Receive) -> None:
        self._scope: Scope = wrapper.scope
        self._receive = receive
        self._store_class: Callable[..., SessionBase] = wrapper.session_store
        self._client: tuple[object, str] = wrapper.client
        #: When the next message counts as activity (``time.monotonic()``); the first one always does.
        self._due_at = -math.inf

    async def __call__(self) -> Message:
        message = await self._receive()
        if message.get("type") in _ACTIVITY_MESSAGES and time.monotonic() >= self._due_at:
            await self._record()
        return message

    async def _record(self) -> None:
        first = self._due_at == -math.inf
        interval = conf.ACTIVITY_INTERVAL
        # With activity tracking off (0), only the connect records the client.
        self._due_at = time.monotonic() + interval if interval > 0 else math.inf
        session = self._scope["session"]
        key = session.session_key
        if key is None:
            # No session yet: nothing to record.
            return
        # On the connect, the consumer's own store: usually loaded already by the auth middleware, so this costs no
        # query. Later, a store of its own, loaded afresh: it sees the activity other connections recorded meanwhile,
        # and leaves alone whatever the consumer holds or has changed in its session.
        store = session if first else self._store_class(session_key=key, user_agent=self._client[1], ip=self._client[0])
        arecord_activity = getattr(store, "arecord_activity", None)
        if arecord_activity is not None:
            # The load notes whether the row's client or activity is out of date.
            await store.akeys()
            await arecord_activity()


class SessionMiddleware:
    """Puts a qsessions store in ``scope["session"]``, as Channels' ``SessionMiddleware`` puts Django's.

    It must run inside ``CookieMiddleware`` (``SessionMiddlewareStack`` does both). Saving a changed session works as
    in Channels: on an HTTP response, or, on a websocket, when the consumer calls ``scope["session"].asave()``.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wrapper = _SessionWrapper(scope, send)
        await wrapper.resolve_session()
        if wrapper.activated and scope["type"] == "websocket":
            receive = _WebsocketActivity(wrapper, receive)
        await self.inner(wrapper.scope, receive, wrapper.send)


def SessionMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Cookies, then qsessions sessions: in place of Channels' ``SessionMiddlewareStack``."""
    return CookieMiddleware(SessionMiddleware(inner))  # type: ignore[no-any-return]


def AuthMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Cookies, qsessions sessions, then ``scope["user"]``: in place of Channels' ``AuthMiddlewareStack``."""
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))  # type: ignore[no-any-return]
