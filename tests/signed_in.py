"""What the page and API tests share: a signed-in client, and what to look at afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import caches
from django.test import Client

from qsessions.models import Session
from qsessions.signals import session_revoked
from tests.conftest import FIREFOX_LINUX


def sign_in(client: Client | None = None) -> tuple[Client, Session]:
    """A Firefox client signed in as alice through the login view, and its session row."""
    client = client or Client(HTTP_USER_AGENT=FIREFOX_LINUX, REMOTE_ADDR="10.9.9.9")
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    return client, Session.objects.get(pk=client.cookies[django_settings.SESSION_COOKIE_NAME].value)


def row_of(store: SessionBase) -> Session:
    return Session.objects.get(pk=store.session_key)


def is_cached(engine: type[SessionBase], key: str) -> bool:
    return caches["default"].get(engine.cache_key_prefix + key) is not None  # type: ignore[attr-defined]


@pytest.fixture(name="revoked")
def session_revoked_sent() -> Iterator[list[dict[str, Any]]]:
    """The ``session_revoked`` signals sent during the test, as dicts of their arguments."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        sent.append(kwargs)

    session_revoked.connect(receiver, sender=Session)
    yield sent
    session_revoked.disconnect(receiver, sender=Session)
