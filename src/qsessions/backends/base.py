"""What both qsessions stores add to Django's: the session's user, client and timing in its row."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.db import DatabaseError, IntegrityError, router, transaction
from django.utils import timezone
from django.utils.crypto import get_random_string

from qsessions.backends import payload
from qsessions.backends.activity import ClientActivityMixin
from qsessions.backends.payload import pop_extras, with_client
from qsessions.backends.sql import Row, delete_rows, select_live_row, update_row

if TYPE_CHECKING:
    from qsessions.models import Session


class QSessionStoreMixin(ClientActivityMixin):
    """Keeps the client (IP and user agent) beside the session data, and the user, client and timing in the row.

    The client travels inside the stored payload (``payload.with_client()``), as the published package always did,
    and is taken out on load: the application's view of the session holds only its own data. A save is one UPDATE
    (or one INSERT for a new session), never a read first. Only a store that was given a client (by the middleware)
    records client and activity: a store opened elsewhere keeps the client it loaded, so a shell or a task never
    erases the IP and user agent of a session it touches.

    State, beside Django's:

    - ``tracks_client``: whether a client was given; ``_given_client``: it, raw (cleaned on first use by ``ip`` and
      ``user_agent``, so a request that never touches its session pays nothing for them).
    - ``_stored_client``, ``_row_times``: the loaded row's client, and its expiry and last activity as timestamps,
      from the row or the cache entry; what a cache entry written for the row carries.
    - ``_activity_due``: the loaded row's client or activity is out of date, so ``record_activity()`` has work;
      ``_client_change``: the old and new client then, for ``session_client_changed``.
    - ``_loaded_created_at``: the row's ``created_at`` when it was read from the row; ``_kept_created_at``: what
      the next INSERT writes instead of now, while ``cycle_key()`` moves the session to a new key.
    """

    #: Whether the store keeps sessions in a cache as well, which an ending must then reach.
    caches_sessions: ClassVar[bool] = False

    def __init__(self, session_key: str | None = None, user_agent: str | None = None, ip: str | None = None) -> None:
        self.tracks_client = user_agent is not None or ip is not None
        self._given_client = (ip, user_agent)
        self._stored_client = (None, None)
        self._row_times = (None, None)
        self._activity_due = False
        self._client_change = None
        self._loaded_created_at: datetime | None = None
        self._kept_created_at: datetime | None = None
        super().__init__(session_key)

    def _get_new_session_key(self) -> str:
        # Serves SessionBase._get_new_session_key, which looks the new key up first (a query, and on cached_db a cache
        # read, per sign-in). Every caller inserts the row next with must_create, and a taken key fails that INSERT
        # (CreateError), after which create() draws another: the INSERT is the check.
        return get_random_string(32, VALID_KEY_CHARS)

    async def _aget_new_session_key(self) -> str:
        # Serves SessionBase._aget_new_session_key.
        return get_random_string(32, VALID_KEY_CHARS)

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
        self._remember_row((row.ip, row.user_agent), (row.expire_date.timestamp(), last_activity))
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

    def _model_instance(self, session_key: str, data: dict[str, Any], expire_date: datetime) -> Session:
        ip, user_agent = self.client
        now = timezone.now()
        return self.model(
            session_key=session_key,
            session_data=self.encode(with_client(data, self.client)),
            expire_date=expire_date,
            user_id=payload.user_id(data, self.model),
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
                    updated = update_row(obj, using)
                if not updated:
                    raise UpdateError
            elif not update_row(obj, using):
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
        self._activity_due = False
        return None

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
        delete_rows(self.model._base_manager.filter(pk=session_key))

    @classmethod
    def clear_expired(cls) -> None:
        # Serves DBStore.clear_expired. Cache entries of expired sessions expire with them (their timeout is what
        # was left of the session), so there is nothing to fetch or delete from the cache.
        cls.get_model_class().objects.delete_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        # Serves DBStore.aclear_expired.
        await sync_to_async(cls.clear_expired)()
