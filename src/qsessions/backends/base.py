"""What both qsessions stores add to Django's: the session's user, client and timing in its row."""

from __future__ import annotations

import time
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone

from qsessions.backends.payload import Client, RowTimes, pop_extras, with_client
from qsessions.backends.sql import Row, select_live_row
from qsessions.client import anonymize_ip, clean_ip, clean_user_agent
from qsessions.conf import conf
from qsessions.signals import session_client_changed

if TYPE_CHECKING:
    from django.contrib.sessions.backends.db import SessionStore as DBStore

    from qsessions.models import Session

    class _Base(DBStore["Session"]):
        """What the mixin uses of the store it is mixed into: Django's, plus the private hooks of ``SessionBase``
        that it overrides or calls, which django-stubs leaves out."""

        _session: dict[str, Any]

        def _validate_session_key(self, key: str | None) -> bool: ...
        def _get_or_create_session_key(self) -> str: ...
        async def _aget_or_create_session_key(self) -> str: ...
        def _get_session(self, no_load: bool = False) -> dict[str, Any]: ...
        async def _aget_session(self, no_load: bool = False) -> dict[str, Any]: ...

else:
    _Base = object

#: Columns an UPDATE writes: ``created_at`` is written once, by the INSERT, and never read back first.
_UPDATE_FIELDS = ("session_data", "expire_date", "user_id", "user_agent", "ip", "last_activity")


class QSessionStoreMixin(_Base):
    """Keeps the client (IP and user agent) beside the session data, and the user, client and timing in the row.

    The client travels inside the stored payload under ``IP_SESSION_KEY``/``USER_AGENT_SESSION_KEY`` (as the
    published package always did), so a cached session notices a new client without touching the database.
    Those two keys are taken out when the session is loaded and put back when it is written: the application's
    view of the session holds only its own data.

    A load notes whether the row's client or ``last_activity`` is out of date; the middleware then calls
    ``record_activity()``, which writes just those, without extending the session or rewriting its data.

    Only a store that was given a client (by the middleware) records client and activity. A store opened elsewhere
    keeps the client it loaded, so a shell or a task never erases the IP and user agent of a session it touches.
    """

    model: type[Session]
    #: Whether the store keeps sessions in a cache as well, which an ending must then reach.
    caches_sessions: ClassVar[bool] = False

    def __init__(self, session_key: str | None = None, user_agent: str | None = None, ip: str | None = None) -> None:
        self.tracks_client = user_agent is not None or ip is not None
        # Validated on first use, so that a request that never touches its session pays nothing for them.
        self._given_client = (ip, user_agent)
        self._stored_client: Client = (None, None)
        self._row_times: RowTimes = (None, None)
        #: Whether the loaded row's client or activity is out of date, for record_activity().
        self._stale = False
        #: The loaded row's client and this request's, when they differ: for session_client_changed.
        self._client_change: tuple[Client, Client] | None = None
        #: The loaded row's ``created_at``, if it was read from the row (not on a cache hit).
        self._loaded_created_at: datetime | None = None
        #: What the next INSERT writes as ``created_at`` instead of now: the old row's, while cycle_key() runs.
        self._kept_created_at: datetime | None = None
        super().__init__(session_key)

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
    def created_at(self) -> datetime | None:
        """When the session's row was created, where this store knows it: read from the row, or kept by
        ``cycle_key()``; ``None`` otherwise (a session loaded from the cache, or new)."""
        return self._loaded_created_at

    @classmethod
    def get_model_class(cls) -> type[Session]:
        # Serves DBStore.get_model_class.
        from qsessions.models import Session

        return Session

    def _validate_session_key(self, key: str | None) -> bool:
        # Serves SessionBase._validate_session_key: a cookie that cannot name a row (longer than the column, or
        # not made of the characters keys are made of) is no key at all, and costs no lookup.
        return (
            key is not None
            and bool(super()._validate_session_key(key))
            and len(key) <= 40
            and key.isascii()
            and key.isalnum()
        )

    @property
    def client(self) -> Client:
        """The ``(ip, user_agent)`` the next write stores."""
        return (self.ip, self.user_agent) if self.tracks_client else self._stored_client

    def _note_row(self, stored: Client, times: RowTimes) -> None:
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
            self._stale = changed or (interval > 0 and (last is None or time.time() - last >= interval))
            if changed:
                self._client_change = (stored, self.client)

    def _from_row(self, row: Row | None) -> dict[str, Any]:
        """The application's data in a loaded row (or ``{}``, and no key, without one)."""
        if row is None:
            self._session_key = None
            self._loaded_created_at = None
            return {}
        self._loaded_created_at = row.created_at
        data = self.decode(row.session_data)
        pop_extras(data)
        last_activity = row.last_activity.timestamp() if row.last_activity is not None else None
        # The columns, not the payload, tell the row's client: record_activity() updates them alone.
        self._note_row((row.ip, row.user_agent), (row.expire_date.timestamp(), last_activity))
        return data

    def load(self) -> dict[str, Any]:
        # Serves DBStore.load: one SELECT of six columns.
        return self._from_row(select_live_row(self.model, self.session_key))

    async def aload(self) -> dict[str, Any]:
        # Serves DBStore.aload.
        return self._from_row(await sync_to_async(select_live_row)(self.model, self.session_key))

    def decode(self, session_data: bytes | str) -> dict[str, Any]:
        # Serves SessionBase.decode: a payload that is not a dict (signed, so written by a bug or another program) is
        # an empty session, as an unsigned one is, not a crash of every request that carries its cookie.
        data = super().decode(session_data)
        return data if isinstance(data, dict) else {}

    def _user_id(self, data: dict[str, Any]) -> Any:
        """The signed-in user's primary key from ``auth.SESSION_KEY``, or ``None`` if there is none or it is bad."""
        value = data.get(auth.SESSION_KEY)
        if value is None:
            return None
        pk = auth.get_user_model()._meta.pk
        try:
            user_id = pk.to_python(value)
            # An integer outside the column's range fails the write (SQLite, PostgreSQL) or is clamped (MySQL), and
            # MySQL takes no 0 for an AutoField. Only that check, not get_db_prep_value(): for a UUID it asks MySQL
            # for its version on a new connection, a query that an async caller must not make.
            pk.run_validators(user_id)
            if isinstance(pk, AutoFieldMixin):
                connections[router.db_for_write(self.model)].ops.validate_autopk_value(user_id)
        except (ValidationError, TypeError, ValueError):
            return None
        return user_id

    def _model_instance(self, session_key: str, data: dict[str, Any], expire_date: datetime) -> Session:
        ip, user_agent = self.client
        now = timezone.now()
        return self.model(
            session_key=session_key,
            session_data=self.encode(with_client(data, self.client)),
            expire_date=expire_date,
            user_id=self._user_id(data),
            user_agent=user_agent,
            ip=ip,
            created_at=self._kept_created_at or now,
            last_activity=now,
        )

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        # Serves DBStore.create_model_instance.
        return self._model_instance(self._get_or_create_session_key(), data, self.get_expiry_date())

    async def acreate_model_instance(self, data: dict[str, Any]) -> Session:
        # Serves DBStore.acreate_model_instance.
        return self._model_instance(await self._aget_or_create_session_key(), data, await self.aget_expiry_date())

    def _write(self, obj: Session, must_create: bool) -> None:
        """One INSERT (``must_create``) or one UPDATE: ``CreateError`` if the key is taken, ``UpdateError`` if the row
        is gone, as Django's store; any other database error (an outage, a lock timeout) goes up as it is.

        Django's store also turns those into ``UpdateError`` on UPDATE, because its forced update reports a vanished
        row as a ``DatabaseError``. This one counts the rows updated instead, so a failing database is not mistaken
        for a session ended elsewhere: that would be a 400 that hides the error.

        A row whose user was deleted meanwhile fails its foreign key, and one whose user id the database refuses
        fails too; either is written again without the user, so the request goes on and the session is simply no
        longer signed in.
        """
        using = router.db_for_write(self.model, instance=obj)
        try:
            if must_create:
                # A savepoint, so that a taken key (create() retries) leaves an outer transaction usable.
                with transaction.atomic(using=using):
                    obj.save(force_insert=True, using=using)
            elif transaction.get_connection(using).in_atomic_block:
                # A savepoint, so that a failed foreign key (MySQL checks it at once) leaves the outer transaction
                # usable for the retry without the user. Outside one, the UPDATE is its own transaction.
                with transaction.atomic(using=using):
                    updated = self._update(obj, using)
                if not updated:
                    raise UpdateError
            elif not self._update(obj, using):
                raise UpdateError
        except DatabaseError as error:
            if obj.user_id is not None and not self._user_exists(obj.user_id, using):
                obj.user_id = None
                return self._write(obj, must_create)
            if must_create and isinstance(error, IntegrityError):
                raise CreateError from None
            raise
        # The row now holds this request's client and activity.
        self._row_times = (obj.expire_date.timestamp(), obj.last_activity.timestamp())  # type: ignore[union-attr]
        self._stale = False
        return None

    def _update(self, obj: Session, using: str) -> bool:
        """One UPDATE statement, without a transaction of its own: a vanished row is 0 rows, not an error."""
        fields = {name: getattr(obj, name) for name in _UPDATE_FIELDS}
        fields["updated_at"] = obj.last_activity
        updated: int = self.model._base_manager.using(using).filter(pk=obj.pk).update(**fields)
        return updated == 1

    def _user_exists(self, user_id: Any, using: str) -> bool:
        """Whether the user can be written: a value the database refuses to compare (MariaDB's UUID type rejects
        some that the ``uuid`` module takes) names no user. If the database is down, the write without the user
        fails again and that error goes up."""
        try:
            with transaction.atomic(using=using):
                exists: bool = auth.get_user_model()._default_manager.using(using).filter(pk=user_id).exists()
                return exists
        except DatabaseError:
            return False

    def save(self, must_create: bool = False) -> None:
        # Serves DBStore.save: never reads the row first, and an UPDATE leaves created_at alone.
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)
        self._write(self.create_model_instance(data), must_create)
        return None

    async def asave(self, must_create: bool = False) -> None:
        # Serves DBStore.asave.
        if self.session_key is None:
            return await self.acreate()
        data = await self._aget_session(no_load=must_create)
        obj = await self.acreate_model_instance(data)
        # transaction.atomic() has no async form yet.
        await sync_to_async(self._write)(obj, must_create)
        return None

    def cycle_key(self) -> None:
        # Serves SessionBase.cycle_key (what login() calls): the new row keeps the old one's created_at, as it keeps
        # its data, user and client; the old key is then deleted, row and cache entry.
        self._get_session()
        created_at = self._loaded_created_at
        if created_at is None and self.session_key is not None:
            created_at = self._read_created_at()
        self._kept_created_at = created_at
        try:
            super().cycle_key()
        finally:
            self._kept_created_at = None
        self._loaded_created_at = created_at

    async def acycle_key(self) -> None:
        # Serves SessionBase.acycle_key.
        await self._aget_session()
        created_at = self._loaded_created_at
        if created_at is None and self.session_key is not None:
            created_at = await sync_to_async(self._read_created_at)()
        self._kept_created_at = created_at
        try:
            await super().acycle_key()
        finally:
            self._kept_created_at = None
        self._loaded_created_at = created_at

    def _read_created_at(self) -> datetime | None:
        """The row's ``created_at``, for a session loaded from the cache, whose entry does not carry it."""
        rows = self.model._base_manager.using(router.db_for_read(self.model)).filter(pk=self.session_key)
        created_at: datetime | None = rows.values_list("created_at", flat=True).first()
        return created_at

    def record_activity(self) -> None:
        """Write the request's client and the time of this activity, if the loaded row is out of date on either.

        The middleware calls it once the response is ready. It writes nothing if the session was saved (a save
        records both), or was changed but not saved (Django skips saving on a server error). It never touches
        ``expire_date`` or the session data: activity does not extend a session, and a request that only read its
        session cannot overwrite what a concurrent request saved. Then, if a new client was recorded either way, it
        sends ``session_client_changed``.
        """
        if self._stale and not self.modified:
            self._stale = False
            found = self._touch_row()
            self._activity_recorded(found)
            self._client_change = self._client_change if found else None
        change = self._recorded_client_change()
        if change is not None:
            session_client_changed.send(sender=self.model, user_id=self._user_id(self._session), **change)

    async def arecord_activity(self) -> None:
        """The async twin of ``record_activity()``."""
        if self._stale and not self.modified:
            self._stale = False
            found = await sync_to_async(self._touch_row)()
            await self._aactivity_recorded(found)
            self._client_change = self._client_change if found else None
        change = self._recorded_client_change()
        if change is not None:
            # Not self._session: after a direct aload() it would load again, synchronously.
            user_id = self._user_id(await self._aget_session())
            await session_client_changed.asend(sender=self.model, user_id=user_id, **change)

    def _recorded_client_change(self) -> dict[str, Any] | None:
        """The arguments of ``session_client_changed`` but ``user_id``, once, if this request recorded a new client
        in the row."""
        change, self._client_change = self._client_change, None
        # Still stale: the session was changed but not saved. No key: it was flushed.
        if change is None or self._stale or self.session_key is None:
            return None
        from qsessions.models import make_public_id

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

    def delete(self, session_key: str | None = None) -> None:
        # Serves DBStore.delete: one DELETE, where Django's reads the row first.
        session_key = self.session_key if session_key is None else session_key
        if session_key is not None:
            self._delete_row(session_key)

    async def adelete(self, session_key: str | None = None) -> None:
        # Serves DBStore.adelete.
        session_key = self.session_key if session_key is None else session_key
        if session_key is not None:
            await sync_to_async(self._delete_row)(session_key)

    def _delete_row(self, session_key: str) -> None:
        models.QuerySet.delete(self.model._base_manager.filter(pk=session_key))

    @classmethod
    def clear_expired(cls) -> None:
        # Serves DBStore.clear_expired. Cache entries of expired sessions expire with them (their timeout is what
        # was left of the session), so there is nothing to fetch or delete from the cache.
        cls.get_model_class().objects.delete_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        # Serves DBStore.aclear_expired.
        await sync_to_async(cls.clear_expired)()
