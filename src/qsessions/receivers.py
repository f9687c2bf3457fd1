"""What qsessions does when Django signs a user in or saves a user: its signals and its opt-in policies."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from qsessions.conf import conf
from qsessions.models import Session
from qsessions.revoke import revoke_all_sessions, revoke_oldest_sessions
from qsessions.signals import session_created


def user_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Send ``session_created`` and apply ``QSESSIONS_MAX_SESSIONS_PER_USER``; connected to ``user_logged_in``."""
    store = getattr(request, "session", None)
    if request is None or store is None:
        return
    limit = conf.MAX_SESSIONS_PER_USER
    if limit is not None:
        revoke_oldest_sessions(user, limit, store.session_key, request=request)
    if session_created.has_listeners(Session):
        ip, user_agent = getattr(store, "client", (None, None))
        now = timezone.now()
        session = Session(
            session_key=store.session_key,
            user=user,
            ip=ip,
            user_agent=user_agent,
            # The session may be older than this sign-in: cycle_key() kept its creation time.
            created_at=getattr(store, "created_at", None) or now,
            last_activity=now,
            expire_date=store.get_expiry_date(),
        )
        session_created.send(sender=Session, user=user, request=request, session=session)


def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """End the user's sessions, cache entries included; connected to the user model's ``pre_delete``.

    The database's cascade would delete the rows alone, leaving ``cached_db`` entries that still read as the session.
    """
    revoke_all_sessions(instance, reason="user_deleted")


def user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Apply ``QSESSIONS_REVOKE_ON_PASSWORD_CHANGE``; connected to the user model's ``post_save``."""
    # set_password() keeps the new raw password in _password until save() has run, which is after post_save.
    if not created and getattr(instance, "_password", None) is not None and conf.REVOKE_ON_PASSWORD_CHANGE:
        revoke_all_sessions(instance, reason="password_change")
