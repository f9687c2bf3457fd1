"""The client (IP and user agent) a session was last used from, and when: noticed on load, written after the response.

A load compares the row's client and ``last_activity`` with this request's (``_remember_row()``); if either is out of
date, the middleware's call to ``record_activity()`` writes just those columns, without extending the session or
rewriting its data, and ``session_client_changed`` says so.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import router
from django.utils import timezone

from qsessions.backends import payload
from qsessions.backends.payload import Client, RowTimes
from qsessions.client import anonymize_ip, clean_ip, clean_user_agent
from qsessions.conf import conf
from qsessions.public_id import make_public_id
from qsessions.signals import session_client_changed

if TYPE_CHECKING:
    from django.contrib.sessions.backends.db import SessionStore as DBStore

    from qsessions.models import Session

    class _Base(DBStore["Session"]):
        """What the mixins use of the store they are mixed into: Django's, plus the private hooks of ``SessionBase``
        that they override or call, which django-stubs leaves out."""

        _session: dict[str, Any]

        def _validate_session_key(self, key: str | None) -> bool: ...
        def _get_or_create_session_key(self) -> str: ...
        async def _aget_or_create_session_key(self) -> str: ...
        def _get_session(self, no_load: bool = False) -> dict[str, Any]: ...
        async def _aget_session(self, no_load: bool = False) -> dict[str, Any]: ...

else:
    _Base = object


class ClientActivityMixin(_Base):
    """Tracks the session's client and activity. Its state is set by ``QSessionStoreMixin.__init__``, whose class
    docstring says what each piece is for."""

    model: type[Session]
    tracks_client: bool
    _given_client: Client
    _stored_client: Client
    _row_times: RowTimes
    _activity_due: bool
    _client_change: tuple[Client, Client] | None

    @cached_property
    def ip(self) -> str | None:
        """The client's address as given, if it is a valid IP address (else ``None``), anonymised if so configured."""
        ip = clean_ip(self._given_client[0])
        return anonymize_ip(ip) if ip is not None and conf.IP_ANONYMIZE else ip

    @cached_property
    def user_agent(self) -> str | None:
        """The client's user agent as given, cut to the column's length."""
        return clean_user_agent(self._given_client[1])

    @property
    def client(self) -> Client:
        """The ``(ip, user_agent)`` the next write stores."""
        return (self.ip, self.user_agent) if self.tracks_client else self._stored_client

    def _remember_row(self, stored: Client, times: RowTimes) -> None:
        """Remember the loaded row's client and times; note whether record_activity() has anything to write."""
        # A stored client is clean, so one equal to the raw client given needs no cleaning: the usual case. Otherwise
        # it may still be the same client, stored unnormalised (an empty user agent, by the published package).
        ip, user_agent = self._given_client
        if conf.IP_ANONYMIZE:
            # The same client is stored under its anonymised IP, never under the one given.
            ip = self.ip
        changed = stored != (ip, user_agent)
        if changed:
            stored = (clean_ip(stored[0]), clean_user_agent(stored[1]))
            changed = stored != self.client
        self._stored_client = stored
        self._row_times = times
        if self.tracks_client and self.session_key is not None:
            interval = conf.ACTIVITY_INTERVAL
            last = times[1]
            self._activity_due = changed or (interval > 0 and (last is None or time.time() - last >= interval))
            if changed:
                self._client_change = (stored, self.client)

    def record_activity(self) -> None:
        """Write the request's client and the time of this activity, if the loaded row is out of date on either.

        The middleware calls it once the response is ready. It writes nothing if the session was saved (a save
        records both), or was changed but not saved (Django skips saving on a server error). It never touches
        ``expire_date`` or the session data: activity does not extend a session, and a request that only read its
        session cannot overwrite what a concurrent request saved. Then, if a new client was recorded either way, it
        sends ``session_client_changed``.
        """
        if self._activity_due and not self.modified:
            self._activity_due = False
            found = self._touch_row()
            self._activity_recorded(found)
            self._client_change = self._client_change if found else None
        change = self._recorded_client_change()
        if change is not None:
            session_client_changed.send(sender=self.model, user_id=payload.user_id(self._session, self.model), **change)

    async def arecord_activity(self) -> None:
        """The async twin of ``record_activity()``."""
        if self._activity_due and not self.modified:
            self._activity_due = False
            found = await sync_to_async(self._touch_row)()
            await self._aactivity_recorded(found)
            self._client_change = self._client_change if found else None
        change = self._recorded_client_change()
        if change is not None:
            # Not self._session: after a direct aload() it would load again, synchronously.
            user_id = payload.user_id(await self._aget_session(), self.model)
            await session_client_changed.asend(sender=self.model, user_id=user_id, **change)

    def _recorded_client_change(self) -> dict[str, Any] | None:
        """The arguments of ``session_client_changed`` but ``user_id``, once, if this request recorded a new client
        in the row."""
        change = self._client_change
        if change is None:
            return None
        self._client_change = None
        # Still due: the session was changed but not saved. No key: it was flushed.
        if self._activity_due or self.session_key is None:
            return None
        (old_ip, old_user_agent), (ip, user_agent) = change
        return {
            "session_id": make_public_id(self.session_key),
            "old_ip": old_ip,
            "old_user_agent": old_user_agent,
            "ip": ip,
            "user_agent": user_agent,
        }

    def _touch_row(self) -> bool:
        """One UPDATE of the client and ``last_activity``; ``False`` if the row is gone."""
        now = timezone.now()
        ip, user_agent = self.client
        rows = self.model._base_manager.using(router.db_for_write(self.model)).filter(pk=self.session_key)
        found: bool = rows.update(last_activity=now, ip=ip, user_agent=user_agent) == 1
        self._row_times = (self._row_times[0], now.timestamp())
        return found

    def _activity_recorded(self, found: bool) -> None:
        """What else a store keeps up to date once the row's activity is written (nothing, here).

        ``found`` tells whether the row still exists.
        """

    async def _aactivity_recorded(self, found: bool) -> None:
        """The async twin of ``_activity_recorded()``."""
