"""Ending sessions on purpose: one, all of a user's, or all but the current one.

Each is one SELECT or ``DELETE … RETURNING`` for the keys, at most one DELETE, and on ``cached_db`` one cache
``set_many`` of tombstones per 500 sessions, and sends ``session_revoked``. Only the given user's sessions are ever
touched. Once it returns (or its transaction commits), no request can use a revoked session again.
"""

from __future__ import annotations

from typing import Any

from django.contrib import auth
from django.db.models import F
from django.http import HttpRequest

from qsessions.models import Session, SessionQuerySet, delete_sessions
from qsessions.public_id import make_public_id
from qsessions.signals import session_revoked


def revoke_session(user: Any, session_id: str, *, request: HttpRequest | None = None) -> bool:
    """End the session of ``user`` whose ``public_id`` is ``session_id``; ``False`` if the user has none such.

    When it is the request's own session, the request's user is logged out.
    """
    keys = Session.objects.filter(user=user).values_list("pk", flat=True)
    key = next((key for key in keys if make_public_id(key) == session_id), None)
    if key is None:
        return False
    delete_sessions([key])
    _signal_revoked(user, [key], "revoked", request)
    return True


def revoke_all_sessions(user: Any, *, request: HttpRequest | None = None, reason: str = "all") -> int:
    """End every session of ``user``; returns how many. The request's user, if it is one of them, is logged out."""
    return _delete_and_signal(Session.objects.filter(user=user), user, reason, request)


def revoke_other_sessions(
    user: Any, current_session_key: str | None, *, request: HttpRequest | None = None, reason: str = "others"
) -> int:
    """End every session of ``user`` but the one with ``current_session_key``; returns how many."""
    return _delete_and_signal(Session.objects.filter(user=user).exclude(pk=current_session_key), user, reason, request)


def revoke_oldest_sessions(
    user: Any, limit: int, current_session_key: str | None, *, request: HttpRequest | None = None
) -> int:
    """End the oldest sessions of ``user``, so that ``limit`` remain with the current one; returns how many.

    Expired sessions are not counted. Sessions whose creation time is unknown (copied from another engine) count as
    the oldest.
    """
    others = Session.objects.active().filter(user=user).exclude(pk=current_session_key)
    newest_first = others.order_by(F("created_at").desc(nulls_last=True), "-pk").values_list("pk", flat=True)
    # Evaluated here: MySQL/MariaDB reject a LIMIT inside an IN subquery.
    extra = list(newest_first[max(limit - 1, 0) :])
    return _delete_and_signal(Session.objects.filter(pk__in=extra), user, "limit", request) if extra else 0


def _delete_and_signal(sessions: SessionQuerySet, user: Any, reason: str, request: HttpRequest | None) -> int:
    keys = sessions.delete_keys()
    if keys:
        _signal_revoked(user, keys, reason, request)
    return len(keys)


def _signal_revoked(user: Any, keys: list[str], reason: str, request: HttpRequest | None) -> None:
    session_revoked.send(
        sender=Session, user=user, session_ids=[make_public_id(key) for key in keys], reason=reason, request=request
    )
    if request is not None and getattr(request, "session", None) is not None and request.session.session_key in keys:
        # Its row is gone already; logout() also clears what this request holds, and its cookie.
        auth.logout(request)
