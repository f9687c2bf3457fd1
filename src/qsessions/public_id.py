"""The non-secret names of sessions: what pages, the API and signals show instead of session keys."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.crypto import salted_hmac


def make_public_id(session_key: str) -> str:
    """A non-secret name for the session with this key, for pages, the API and signals.

    A session key is a credential, so it never leaves the server; this keyed hash of it names the session instead.
    It is stable for the key's life (a login gives the session a new key, hence a new id) and tells nothing of the
    key without ``SECRET_KEY``.
    """
    return salted_hmac("qsessions.public_id", session_key, algorithm="sha256").hexdigest()[:20]


def current_session_id(request: HttpRequest) -> str | None:
    """The ``public_id`` of the request's own session, or ``None`` if it has none yet."""
    key = request.session.session_key
    return None if key is None else make_public_id(key)
