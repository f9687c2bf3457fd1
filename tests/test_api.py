"""The JSON API: the same listing and revocation as the pages, for scripts and front ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from qsessions import devices
from qsessions.models import Session, make_public_id
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, saved
from tests.key_leaks import no_session_key_in_responses  # noqa: F401
from tests.signed_in import is_cached, row_of, session_revoked_sent, sign_in  # noqa: F401

pytestmark = pytest.mark.django_db

LIST = "/sessions/api/"
OTHERS = "/sessions/api/revoke-others/"
FIELDS = {"id", "current", "device", "browser", "os", "ip", "location", "created_at", "last_activity", "expire_date"}


def revoke_url(session_id: str) -> str:
    return f"/sessions/api/{session_id}/"


def test_list(engine, user, other_user):
    now = timezone.now()
    older, legacy, expired = (saved(engine, user) for _ in range(3))
    saved(engine, other_user)
    saved(engine)
    Session.objects.filter(pk=older.session_key).update(last_activity=now - timedelta(hours=2))
    Session.objects.filter(pk=legacy.session_key).update(
        created_at=None, last_activity=None, updated_at=now - timedelta(days=1)
    )
    Session.objects.filter(pk=expired.session_key).update(expire_date=now - timedelta(seconds=1))
    client, current = sign_in()

    response = client.get(LIST)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    sessions = response.json()["sessions"]
    assert [session["id"] for session in sessions] == [
        current.public_id,
        row_of(older).public_id,
        row_of(legacy).public_id,
    ]
    assert all(set(session) == FIELDS for session in sessions)
    first, second, third = sessions
    current.refresh_from_db()
    assert first == {
        "id": current.public_id,
        "current": True,
        "device": "Firefox 120 on Linux",
        "browser": "Firefox 120",
        "os": "Linux",
        "ip": "10.9.9.9",
        "location": None,
        "created_at": current.created_at.isoformat(),
        "last_activity": current.last_activity.isoformat(),
        "expire_date": current.expire_date.isoformat(),
    }
    assert (second["current"], second["device"], second["ip"]) == (False, "Chrome Mobile 118 on Android 10", "10.1.2.3")
    assert datetime.fromisoformat(second["last_activity"]) == row_of(older).last_activity
    # A row from the published package: no sign-in time; its last save stands for its last activity.
    assert third["created_at"] is None
    assert datetime.fromisoformat(third["last_activity"]) == row_of(legacy).updated_at


def test_list_is_one_query_and_one_parse_per_row(engine, user, django_assert_num_queries, monkeypatch):
    for _ in range(3):
        saved(engine, user)
    client, _ = sign_in()
    parsed: list[str | None] = []
    parse = devices.parse

    def spy(user_agent: str | None) -> Any:
        parsed.append(user_agent)
        return parse(user_agent)

    monkeypatch.setattr(devices, "parse", spy)
    session_load = 0 if hasattr(engine, "cache_key_prefix") else 1
    with django_assert_num_queries(2 + session_load):
        assert len(client.get(LIST).json()["sessions"]) == 4
    # "device", "browser" and "os" come from one parse of each row's user agent.
    assert sorted(parsed) == sorted([CHROME_ANDROID] * 3 + [FIREFOX_LINUX])


@pytest.mark.parametrize(("method", "url"), [("get", LIST), ("delete", "revoke"), ("post", "revoke"), ("post", OTHERS)])
def test_anonymous_is_401(engine, user, method, url):
    other = saved(engine, user)
    url = revoke_url(row_of(other).public_id) if url == "revoke" else url
    response = getattr(Client(), method)(url)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}
    assert Session.objects.filter(pk=other.session_key).exists()


@pytest.mark.parametrize("method", ["delete", "post"])
def test_revoke_one(engine, user, method, revoked):
    other = saved(engine, user)
    other_id = row_of(other).public_id
    client, current = sign_in()

    response = getattr(client, method)(revoke_url(other_id))

    assert response.status_code == 200
    assert response.json() == {"revoked": 1, "current": False}
    assert not Session.objects.filter(pk=other.session_key).exists()
    if hasattr(engine, "cache_key_prefix"):
        assert not is_cached(engine, other.session_key)
    assert Session.objects.filter(pk=current.pk).exists()
    assert [(sent["session_ids"], sent["reason"]) for sent in revoked] == [([other_id], "revoked")]


def test_revoke_current_signs_out(engine, user, revoked):
    client, current = sign_in()

    response = client.delete(revoke_url(current.public_id))

    assert response.json() == {"revoked": 1, "current": True}
    assert response.cookies[django_settings.SESSION_COOKIE_NAME].value == ""
    assert not Session.objects.filter(pk=current.pk).exists()
    assert [(sent["session_ids"], sent["reason"]) for sent in revoked] == [([current.public_id], "revoked")]
    assert client.get(LIST).status_code == 401


def test_revoke_others(engine, user, other_user, revoked):
    mine = [saved(engine, user) for _ in range(3)]
    theirs = saved(engine, other_user)
    client, current = sign_in()

    response = client.post(OTHERS)

    assert response.json() == {"revoked": 3}
    assert [session["id"] for session in client.get(LIST).json()["sessions"]] == [current.public_id]
    assert Session.objects.filter(pk=theirs.session_key).exists()
    if hasattr(engine, "cache_key_prefix"):
        assert not any(is_cached(engine, store.session_key) for store in mine)
    assert [sent["reason"] for sent in revoked] == ["others"]
    assert sorted(revoked[0]["session_ids"]) == sorted(make_public_id(store.session_key) for store in mine)
    assert client.post(OTHERS).json() == {"revoked": 0}


@pytest.mark.parametrize("owner", ["other user", "nobody", "unknown"])
def test_another_users_session_is_404(engine, user, other_user, owner, revoked):
    theirs = None if owner == "unknown" else saved(engine, other_user if owner == "other user" else None)
    client, _ = sign_in()

    response = client.delete(revoke_url(make_public_id(theirs.session_key) if theirs else "0123456789abcdef0123"))

    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    if theirs is not None:
        assert Session.objects.filter(pk=theirs.session_key).exists()
        if hasattr(engine, "cache_key_prefix"):
            assert is_cached(engine, theirs.session_key)
    assert revoked == []


@pytest.mark.parametrize(
    ("method", "url"),
    [("post", LIST), ("delete", LIST), ("get", "revoke"), ("put", "revoke"), ("get", OTHERS), ("delete", OTHERS)],
)
def test_wrong_method_is_405(engine, user, method, url):
    other = saved(engine, user)
    client, _ = sign_in()
    url = revoke_url(row_of(other).public_id) if url == "revoke" else url
    assert getattr(client, method)(url).status_code == 405
    assert Session.objects.filter(pk=other.session_key).exists()


@pytest.mark.parametrize("csrf_middleware", [True, False])
@pytest.mark.parametrize(("method", "url"), [("delete", "revoke"), ("post", "revoke"), ("post", OTHERS)])
def test_writes_need_the_csrf_token(engine, user, settings, csrf_middleware, method, url):
    if not csrf_middleware:
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("CsrfViewMiddleware")]
    other = saved(engine, user)
    url = revoke_url(row_of(other).public_id) if url == "revoke" else url
    client, _ = sign_in(Client(enforce_csrf_checks=True, HTTP_USER_AGENT=FIREFOX_LINUX))
    # The token a front end gets from the page it is served with.
    client.get("/sessions/")
    token = client.cookies[django_settings.CSRF_COOKIE_NAME].value

    assert getattr(client, method)(url).status_code == 403
    assert Session.objects.filter(pk=other.session_key).exists()
    assert getattr(client, method)(url, headers={"X-CSRFToken": token}).status_code == 200
    assert not Session.objects.filter(pk=other.session_key).exists()
