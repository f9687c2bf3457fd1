"""What both qsessions stores add to Django's: the session's user, client and creation time in its row."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.db import DatabaseError, IntegrityError, models, router, transaction
from django.utils import timezone

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY
from qsessions.client import clean_ip, clean_user_agent

if TYPE_CHECKING:
    from django.contrib.sessions.backends.db import SessionStore as DBStore

    from qsessions.models import Session

    _Base = DBStore
else:
    _Base = object

#: Columns an UPDATE writes: ``created_at`` is written once, by the INSERT, and never read back first.
_UPDATE_FIELDS = ("session_data", "expire_date", "user_id", "user_agent", "ip")

Client = tuple[str | None, str | None]


class QSessionStoreMixin(_Base):
    """Keeps the client (IP and user agent) beside the session data, and the user, client and timing in the row.

    The client travels inside the stored payload under ``IP_SESSION_KEY``/``USER_AGENT_SESSION_KEY`` (as the
    published package always did), so a cached session notices a new client without touching the database.
    Those two keys are taken out when the session is loaded and put back when it is written: the application's
    view of the session holds only its own data.

    Only a store that was given a client (by the middleware) records it. A store opened elsewhere keeps the
    client it loaded, so a shell or a task never erases the IP and user agent of a session it touches.
    """

    model: type[Session]

    def __init__(self, session_key: str | None = None, user_agent: str | None = None, ip: str | None = None) -> None:
        self.tracks_client = user_agent is not None or ip is not None
        # Validated on first use, so that a request that never touches its session pays nothing for them.
        self._given_client = (ip, user_agent)
        self._stored_client: Client = (None, None)
        super().__init__(session_key)

    @cached_property
    def ip(self) -> str | None:
        """The client's address as given, if it is a valid IP address (else ``None``)."""
        return clean_ip(self._given_client[0])

    @cached_property
    def user_agent(self) -> str | None:
        """The client's user agent as given, cut to the column's length."""
        return clean_user_agent(self._given_client[1])

    @classmethod
    def get_model_class(cls) -> type[Session]:
        # Serves DBStore.get_model_class.
        from qsessions.models import Session

        return Session

    def _validate_session_key(self, key: str | None) -> bool:
        # Serves SessionBase._validate_session_key: a cookie that cannot name a row (longer than the column, or
        # not made of the characters keys are made of) is no key at all, and costs no lookup.
        return bool(super()._validate_session_key(key)) and len(key) <= 40 and key.isascii() and key.isalnum()  # type: ignore[arg-type]

    @property
    def client(self) -> Client:
        """The ``(ip, user_agent)`` the next write stores."""
        return (self.ip, self.user_agent) if self.tracks_client else self._stored_client

    def _take_client(self, data: dict[str, Any]) -> dict[str, Any]:
        """Move the client out of freshly loaded data; mark the session modified if the client changed."""
        stored = (data.pop(IP_SESSION_KEY, None), data.pop(USER_AGENT_SESSION_KEY, None))
        if stored != self.client:
            # Only a client that differs needs a second look: it may have been stored unnormalised (an empty user
            # agent, by the published package) and be the same client after all.
            stored = (clean_ip(stored[0]), clean_user_agent(stored[1]))
            if self.tracks_client and self.session_key is not None and stored != self.client:
                self.modified = True
        self._stored_client = stored
        return data

    def _payload(self, data: dict[str, Any]) -> dict[str, Any]:
        """The data as it is stored: the application's keys plus the client's."""
        ip, user_agent = self.client
        return {**data, IP_SESSION_KEY: ip, USER_AGENT_SESSION_KEY: user_agent}

    def _live_row(self) -> models.QuerySet[Any]:
        """The two columns a load reads (the row has eight, and building a model instance is most of a load)."""
        return self.model.objects.filter(session_key=self.session_key, expire_date__gt=timezone.now()).values_list(
            "session_data", "expire_date", named=True
        )

    def _get_session_from_db(self) -> Any:
        # Serves DBStore._get_session_from_db: returns what Django's does, minus the columns nobody reads.
        try:
            return self._live_row().get()
        except (self.model.DoesNotExist, SuspiciousOperation) as exc:
            self._forget_key(exc)
            return None

    async def _aget_session_from_db(self) -> Any:
        # Serves DBStore._aget_session_from_db.
        try:
            return await self._live_row().aget()
        except (self.model.DoesNotExist, SuspiciousOperation) as exc:
            self._forget_key(exc)
            return None

    def _forget_key(self, exc: Exception) -> None:
        if isinstance(exc, SuspiciousOperation):
            logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
        self._session_key = None

    def load(self) -> dict[str, Any]:
        # Serves SessionBase.load.
        return self._take_client(super().load())

    async def aload(self) -> dict[str, Any]:
        # Serves SessionBase.aload.
        return self._take_client(await super().aload())

    def _user_id(self, data: dict[str, Any]) -> Any:
        """The signed-in user's primary key from ``auth.SESSION_KEY``, or ``None`` if there is none or it is bad."""
        value = data.get(auth.SESSION_KEY)
        if value is None:
            return None
        try:
            return auth.get_user_model()._meta.pk.to_python(value)
        except (ValidationError, TypeError, ValueError):
            return None

    def _model_instance(self, session_key: str, data: dict[str, Any], expire_date: Any) -> Session:
        ip, user_agent = self.client
        return self.model(
            session_key=session_key,
            session_data=self.encode(self._payload(data)),
            expire_date=expire_date,
            user_id=self._user_id(data),
            user_agent=user_agent,
            ip=ip,
            created_at=timezone.now(),
        )

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        # Serves DBStore.create_model_instance.
        return self._model_instance(self._get_or_create_session_key(), data, self.get_expiry_date())

    async def acreate_model_instance(self, data: dict[str, Any]) -> Session:
        # Serves DBStore.acreate_model_instance.
        return self._model_instance(await self._aget_or_create_session_key(), data, await self.aget_expiry_date())

    def _write(self, obj: Session, must_create: bool) -> None:
        """One INSERT (``must_create``) or one UPDATE, failing as Django's store does: ``CreateError``/``UpdateError``.

        A row whose user was deleted meanwhile fails its foreign key; it is written again without the user, so
        the request goes on and the session is simply no longer signed in.
        """
        using = router.db_for_write(self.model, instance=obj)
        try:
            if must_create:
                # A savepoint, so that a taken key (create() retries) leaves an outer transaction usable.
                with transaction.atomic(using=using):
                    obj.save(force_insert=True, using=using)
            elif not self._update(obj, using):
                raise UpdateError
        except IntegrityError:
            if obj.user_id is not None and not self._user_exists(obj.user_id, using):
                obj.user_id = None
                return self._write(obj, must_create)
            if must_create:
                raise CreateError from None
            raise
        except DatabaseError:
            if not must_create:
                raise UpdateError from None
            raise
        return None

    def _update(self, obj: Session, using: str) -> bool:
        """One UPDATE statement, without a transaction of its own: a vanished row is 0 rows, not an error."""
        fields = {name: getattr(obj, name) for name in _UPDATE_FIELDS}
        fields["updated_at"] = timezone.now()
        return self.model._base_manager.using(using).filter(pk=obj.pk).update(**fields) == 1

    def _user_exists(self, user_id: Any, using: str) -> bool:
        return auth.get_user_model()._default_manager.using(using).filter(pk=user_id).exists()

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
        # Serves DBStore.clear_expired: one DELETE. Cache entries of expired sessions expire with them (their
        # timeout is the session's age), so there is nothing to fetch or delete from the cache.
        expired = cls.get_model_class()._base_manager.filter(expire_date__lt=timezone.now())
        models.QuerySet.delete(expired)

    @classmethod
    async def aclear_expired(cls) -> None:
        # Serves DBStore.aclear_expired.
        await sync_to_async(cls.clear_expired)()
