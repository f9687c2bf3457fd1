"""``qsessions.revoke``: one, all, all but the current and the oldest sessions of a user, and nobody else's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import caches
from django.test import Client
from django.utils import timezone

from qsessions.models import Session, make_public_id
from qsessions.revoke import revoke_all_sessions, revoke_oldest_sessions, revoke_other_sessions, revoke_session
from qsessions.signals import session_revoked
from tests.conftest import CHROME_ANDROID, saved

pytestmark = pytest.mark.django_db


@pytest.fixture
def revoked() -> Any:
    """The ``session_revoked`` signals sent during the test, as dicts of their arguments."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, signal: Any, **kwargs: Any) -> None:
        sent.append({"sender": sender, **kwargs})

    session_revoked.connect(receiver)
    yield sent
    session_revoked.disconnect(receiver)


def _cached(engine: Any, key: str) -> bool:
    prefix = getattr(engine, "cache_key_prefix", None)
    return prefix is not None and caches["default"].get(prefix + key) is not None


def _signed_in_client() -> tuple[Client, str]:
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    assert client.post("/login/", {"username": "alice", "password": "secret"}).status_code == 200
    return client, client.cookies[django_settings.SESSION_COOKIE_NAME].value


def test_public_id_is_stable_and_tells_nothing_of_the_key(engine, user):
    store = saved(engine, user)
    row = Session.objects.get(pk=store.session_key)
    assert row.public_id == make_public_id(store.session_key) == make_public_id(store.session_key)
    assert store.session_key not in row.public_id
    assert len(row.public_id) == 20
    assert make_public_id(saved(engine, user).session_key) != row.public_id


def test_revoke_one_session(engine, user, other_user, revoked, statements):
    mine, kept = saved(engine, user), saved(engine, user)
    theirs = saved(engine, other_user)
    with statements() as run:
        assert revoke_session(user, make_public_id(mine.session_key)) is True
    # The user's keys, then one DELETE.
    assert run.kinds == ["SELECT", "DELETE"]
    assert set(Session.objects.values_list("pk", flat=True)) == {kept.session_key, theirs.session_key}
    assert not _cached(engine, mine.session_key)
    assert revoked == [
        {
            "sender": Session,
            "user": user,
            "session_ids": [make_public_id(mine.session_key)],
            "reason": "revoked",
            "request": None,
        }
    ]


def test_another_users_session_cannot_be_revoked(engine, user, other_user, revoked):
    theirs = saved(engine, other_user)
    assert revoke_session(user, make_public_id(theirs.session_key)) is False
    assert revoke_session(user, "0" * 20) is False
    assert Session.objects.filter(pk=theirs.session_key).exists()
    assert engine(theirs.session_key).get("a") == 1
    assert revoked == []


def test_revoke_all_and_others(engine, user, other_user, revoked, statements):
    current, *others = (saved(engine, user) for _ in range(3))
    theirs = saved(engine, other_user)

    with statements() as run:
        assert revoke_other_sessions(user, current.session_key) == 2
    assert len(run.kinds) <= 2
    assert run.kinds[-1] == "DELETE"
    assert set(Session.objects.values_list("pk", flat=True)) == {current.session_key, theirs.session_key}
    assert not any(_cached(engine, other.session_key) for other in others)
    assert sorted(revoked[0]["session_ids"]) == sorted(make_public_id(other.session_key) for other in others)
    assert revoked[0]["reason"] == "others"

    assert revoke_all_sessions(user) == 1
    assert list(Session.objects.values_list("pk", flat=True)) == [theirs.session_key]
    assert revoked[1]["reason"] == "all"
    # Nothing left: no signal.
    assert revoke_all_sessions(user) == 0
    assert len(revoked) == 2


def test_revoking_the_requests_own_session_logs_it_out(engine, user, rf):
    _, key = _signed_in_client()
    request = rf.get("/")
    request.session = engine(key)
    request.user = user
    assert revoke_session(user, make_public_id(key), request=request) is True
    assert isinstance(request.user, AnonymousUser)
    assert request.session.session_key is None
    assert not Session.objects.filter(pk=key).exists()


def test_revoked_session_is_signed_out_on_its_next_request(engine, user):
    client, key = _signed_in_client()
    revoke_other_sessions(user, None)
    assert client.get("/read/").json()["user"] == ""
    assert not _cached(engine, key)


def test_revoke_oldest_keeps_the_newest_and_the_current(engine, user, other_user):
    stores = [saved(engine, user) for _ in range(4)]
    now = timezone.now()
    for age, store in enumerate(reversed(stores)):
        Session.objects.filter(pk=store.session_key).update(created_at=now - timedelta(hours=age))
    # Copied from another engine: no creation time, so the oldest of all.
    Session.objects.filter(pk=stores[3].session_key).update(created_at=None)
    theirs = saved(engine, other_user)
    current = stores[0]

    assert revoke_oldest_sessions(user, 3, current.session_key) == 1
    assert set(Session.objects.filter(user=user).values_list("pk", flat=True)) == {
        current.session_key,
        stores[1].session_key,
        stores[2].session_key,
    }
    assert Session.objects.filter(pk=theirs.session_key).exists()
    assert revoke_oldest_sessions(user, 3, current.session_key) == 0


def test_max_sessions_per_user_on_login(engine, user, settings, revoked):
    settings.QSESSIONS_MAX_SESSIONS_PER_USER = 2
    old, newer = saved(engine, user), saved(engine, user)
    Session.objects.filter(pk=old.session_key).update(created_at=timezone.now() - timedelta(days=1))

    _, key = _signed_in_client()
    assert set(Session.objects.filter(user=user).values_list("pk", flat=True)) == {newer.session_key, key}
    assert revoked[0]["reason"] == "limit"
    assert revoked[0]["session_ids"] == [make_public_id(old.session_key)]


def test_no_limit_by_default(engine, user, revoked):
    for _ in range(3):
        saved(engine, user)
    _signed_in_client()
    assert Session.objects.filter(user=user).count() == 4
    assert revoked == []


def test_password_change_deletes_the_other_sessions(engine, user, settings, revoked):
    settings.QSESSIONS_REVOKE_ON_PASSWORD_CHANGE = True
    others = [saved(engine, user) for _ in range(2)]
    client, _key = _signed_in_client()

    response = client.post("/change-password/", {"password": "new-secret"})
    assert response.status_code == 200
    # The session the password was changed in moved to a new key and is still signed in.
    assert client.get("/read/").json()["user"] == "alice"
    new_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert list(Session.objects.filter(user=user).values_list("pk", flat=True)) == [new_key]
    assert not any(_cached(engine, other.session_key) for other in others)
    assert revoked[0]["reason"] == "password_change"
    assert len(revoked[0]["session_ids"]) == 3


def test_password_change_leaves_sessions_by_default(engine, user, revoked):
    others = [saved(engine, user) for _ in range(2)]
    user.set_password("new-secret")
    user.save()
    assert Session.objects.filter(pk__in=[other.session_key for other in others]).count() == 2
    assert revoked == []


def test_saving_a_user_without_a_new_password_revokes_nothing(engine, user, settings, revoked):
    settings.QSESSIONS_REVOKE_ON_PASSWORD_CHANGE = True
    store = saved(engine, user)
    user.email = "alice@example.org"
    user.save()
    assert Session.objects.filter(pk=store.session_key).exists()
    assert revoked == []


def test_a_revocation_inside_a_transaction_is_final_once_it_commits(user, settings, django_capture_on_commit_callbacks):
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    from qsessions.backends.cached_db import KEY_PREFIX, SessionStore

    store = saved(SessionStore, user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert revoke_all_sessions(user) == 1
        # Deleted at once; nothing final yet, since a rollback would bring the row back.
        assert caches["default"].get(KEY_PREFIX + store.session_key) is None
        # A request that missed the cache before the commit, and cached the row it could still see.
        caches["default"].set(KEY_PREFIX + store.session_key, {"a": 1}, 60)
    assert len(callbacks) == 1
    reloaded = SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3")
    assert reloaded.load() == {}
    assert reloaded.session_key is None


def test_a_rolled_back_revocation_leaves_the_session(user, settings, django_capture_on_commit_callbacks):
    from django.db import transaction

    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    from qsessions.backends.cached_db import SessionStore

    def revoke_then_fail() -> None:
        with transaction.atomic():
            revoke_all_sessions(user)
            raise RuntimeError

    store = saved(SessionStore, user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        revoke_then_fail()
    assert callbacks == []
    assert SessionStore(store.session_key, user_agent=CHROME_ANDROID, ip="10.1.2.3").load()["a"] == 1
