"""The pages: listing one's sessions and signing them out, as a browser uses them."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any

import maxminddb
import pytest
from django.conf import settings as django_settings
from django.http import HttpResponse, HttpResponseRedirect
from django.test import Client
from django.utils import timezone

from qsessions import devices
from qsessions.models import Session, make_public_id
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX, saved
from tests.geoip_fixtures import SWEDEN_IP, write_city
from tests.key_leaks import Seen, leaked_keys, no_session_key_in_responses  # noqa: F401
from tests.signed_in import is_cached, row_of, session_revoked_sent, sign_in  # noqa: F401

pytestmark = pytest.mark.django_db

LIST = "/sessions/"
OTHERS = "/sessions/revoke-others/"


def revoke_url(session_id: str) -> str:
    return f"/sessions/{session_id}/revoke/"


def rows(html: str) -> dict[str, str]:
    """``data-session-id`` -> the rest of its ``<tr>``, in the page's order."""
    return dict(re.findall(r'<tr data-session-id="([^"]+)"(.*?)</tr>', html, re.S))


def test_list_shows_the_users_live_sessions_most_recently_active_first(engine, user, other_user):
    now = timezone.now()
    older, newer, legacy, expired = (saved(engine, user) for _ in range(4))
    theirs, anonymous = saved(engine, other_user), saved(engine)
    Session.objects.filter(pk=older.session_key).update(last_activity=now - timedelta(hours=2))
    Session.objects.filter(pk=newer.session_key).update(last_activity=now - timedelta(minutes=3))
    # Written by the published package: no sign-in time, no activity, only the last save.
    Session.objects.filter(pk=legacy.session_key).update(
        created_at=None, last_activity=None, updated_at=now - timedelta(days=1)
    )
    Session.objects.filter(pk=expired.session_key).update(expire_date=now - timedelta(seconds=1))
    client, current = sign_in()

    response = client.get(LIST)

    assert response.status_code == 200
    assert response.templates[0].name == "qsessions/session_list.html"
    page = rows(response.content.decode())
    expected = [current.public_id] + [row_of(store).public_id for store in (newer, older, legacy)]
    assert list(page) == expected
    assert row_of(theirs).public_id not in page
    assert row_of(anonymous).public_id not in page
    assert 'data-current aria-current="true"' in page[current.public_id]
    assert "This device" in page[current.public_id]
    assert "Firefox 120 on Linux" in page[current.public_id]
    assert "10.9.9.9" in page[current.public_id]
    newer_row = page[row_of(newer).public_id]
    assert "data-current" not in newer_row
    assert "aria-current" not in newer_row
    assert "This device" not in newer_row
    assert "Chrome Mobile 118 on Android 10" in newer_row
    assert "10.1.2.3" in newer_row
    assert "3\xa0minutes ago" in newer_row
    assert "2\xa0hours ago" in page[row_of(older).public_id]
    # No sign-in time is a dash; last activity falls back to the last save.
    legacy_row = page[row_of(legacy).public_id]
    assert "1\xa0day ago" in legacy_row
    assert legacy_row.count("—") == 2  # the location (no GeoIP here) and the sign-in time


def test_every_row_has_its_own_revoke_form_and_others_have_one_more(engine, user):
    other = saved(engine, user)
    client, current = sign_in()
    html = client.get(LIST).content.decode()
    page = rows(html)
    for session_id in (current.public_id, row_of(other).public_id):
        assert f'<form method="post" action="/sessions/{session_id}/revoke/">' in page[session_id]
        assert '<button type="submit">' in page[session_id]
        assert "csrfmiddlewaretoken" in page[session_id]
    assert '<form method="post" action="/sessions/revoke-others/" class="qsessions-revoke-others">' in html


def test_no_revoke_others_form_when_alone(engine, user):
    client, _ = sign_in()
    assert f'action="{OTHERS}"' not in client.get(LIST).content.decode()


def test_list_is_one_query_for_the_sessions(engine, user, django_assert_num_queries):
    for _ in range(5):
        saved(engine, user)
    client, _ = sign_in()
    # Auth loads the user; the db engine also reads the session by key, cached_db reads the cache instead.
    session_load = 0 if hasattr(engine, "cache_key_prefix") else 1
    with django_assert_num_queries(2 + session_load) as captured:
        assert len(rows(client.get(LIST).content.decode())) == 6
    listing = [query["sql"] for query in captured.captured_queries if "ORDER BY" in query["sql"]]
    assert len(listing) == 1
    # Nothing shown needs the session data, the largest column.
    assert "session_data" not in listing[0]


def test_list_parses_each_user_agent_once_and_opens_geoip_once(
    engine, user, settings, tmp_path, monkeypatch, fresh_geoip
):
    write_city(tmp_path)
    settings.GEOIP_PATH = str(tmp_path)
    opened: list[str] = []
    open_database = maxminddb.open_database

    def spy_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(path))
        return open_database(path, *args, **kwargs)

    parsed: list[str] = []
    parse = devices.parse

    def spy_parse(user_agent: str | None) -> Any:
        parsed.append(user_agent)
        return parse(user_agent)

    monkeypatch.setattr(maxminddb, "open_database", spy_open)
    monkeypatch.setattr(devices, "parse", spy_parse)
    for _ in range(3):
        Session.objects.filter(pk=saved(engine, user).session_key).update(ip=SWEDEN_IP)
    client, _ = sign_in()

    html = client.get(LIST).content.decode()

    assert html.count("Linköping, Sweden") == 3
    assert len(opened) == 1
    # One parse per row: the summary, the badge and the forms all reuse it; ua-parser caches equal strings.
    assert sorted(parsed) == sorted([CHROME_ANDROID] * 3 + [FIREFOX_LINUX])


def test_list_needs_a_signed_in_user(engine, settings):
    settings.LOGIN_URL = "/login/"
    response = Client().get(LIST)
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/sessions/"


def test_revoke_one_session(engine, user, revoked):
    other = saved(engine, user)
    other_id = row_of(other).public_id
    client, current = sign_in()
    if hasattr(engine, "cache_key_prefix"):
        assert is_cached(engine, other.session_key)

    response = client.post(revoke_url(other_id))

    assert response.status_code == 302
    assert response["Location"] == LIST
    assert not Session.objects.filter(pk=other.session_key).exists()
    if hasattr(engine, "cache_key_prefix"):
        assert not is_cached(engine, other.session_key)
    assert Session.objects.filter(pk=current.pk).exists()
    assert revoked == [{"user": user, "session_ids": [other_id], "reason": "revoked", "request": revoked[0]["request"]}]
    page = client.get(LIST).content.decode()
    assert "The session has been signed out." in page
    assert list(rows(page)) == [current.public_id]


def test_revoke_the_current_session_signs_out(engine, user, settings, revoked):
    settings.LOGIN_URL = "/login/"
    client, current = sign_in()

    response = client.post(revoke_url(current.public_id))

    assert response.status_code == 302
    assert response["Location"] == LIST
    assert not Session.objects.filter(pk=current.pk).exists()
    assert revoked[0]["session_ids"] == [current.public_id]
    assert client.get("/read/").json()["user"] == ""
    assert client.get(LIST)["Location"] == "/login/?next=/sessions/"


def test_revoke_others_keeps_the_current_session(engine, user, other_user, revoked):
    mine = [saved(engine, user) for _ in range(2)]
    theirs = saved(engine, other_user)
    mine_ids = sorted(row_of(store).public_id for store in mine)
    client, current = sign_in()

    response = client.post(OTHERS)

    assert response.status_code == 302
    assert response["Location"] == LIST
    assert list(Session.objects.filter(user=user).values_list("pk", flat=True)) == [current.pk]
    assert Session.objects.filter(pk=theirs.session_key).exists()
    if hasattr(engine, "cache_key_prefix"):
        assert not any(is_cached(engine, store.session_key) for store in mine)
        assert is_cached(engine, theirs.session_key)
    assert [(sent["reason"], sorted(sent["session_ids"])) for sent in revoked] == [("others", mine_ids)]
    assert "2 other sessions have been signed out." in client.get(LIST).content.decode()


@pytest.mark.parametrize("owner", ["other user", "nobody"])
def test_another_users_session_is_not_found(engine, user, other_user, owner, revoked):
    theirs = saved(engine, other_user if owner == "other user" else None)
    client, _ = sign_in()

    assert client.post(revoke_url(make_public_id(theirs.session_key))).status_code == 404

    assert Session.objects.filter(pk=theirs.session_key).exists()
    if hasattr(engine, "cache_key_prefix"):
        assert is_cached(engine, theirs.session_key)
    assert revoked == []


def test_an_unknown_id_is_not_found(engine, user):
    client, _ = sign_in()
    assert client.post(revoke_url("0123456789abcdef0123")).status_code == 404
    assert client.post(revoke_url("not-an-id")).status_code == 404


@pytest.mark.parametrize("method", ["get", "put", "delete"])
@pytest.mark.parametrize("path", ["revoke", OTHERS])
def test_revoking_is_post_only(engine, user, method, path):
    other = saved(engine, user)
    client, _ = sign_in()
    url = revoke_url(row_of(other).public_id) if path == "revoke" else path
    response = getattr(client, method)(url)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert Session.objects.filter(user=user).count() == 2


def test_the_list_is_get_only(engine, user):
    client, _ = sign_in()
    assert client.post(LIST).status_code == 405


@pytest.mark.parametrize("path", ["revoke", OTHERS])
def test_revoking_needs_a_signed_in_user(engine, user, settings, path):
    settings.LOGIN_URL = "/login/"
    other = saved(engine, user)
    url = revoke_url(row_of(other).public_id) if path == "revoke" else path
    response = Client().post(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
    assert Session.objects.filter(pk=other.session_key).exists()


@pytest.mark.parametrize("csrf_middleware", [True, False])
@pytest.mark.parametrize("path", ["revoke", OTHERS])
def test_revoking_needs_the_csrf_token(engine, user, settings, csrf_middleware, path):
    if not csrf_middleware:
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("CsrfViewMiddleware")]
    other = saved(engine, user)
    url = revoke_url(row_of(other).public_id) if path == "revoke" else path
    client, _ = sign_in(Client(enforce_csrf_checks=True, HTTP_USER_AGENT=FIREFOX_LINUX))

    assert client.post(url).status_code == 403
    assert Session.objects.filter(pk=other.session_key).exists()

    # The page sets the cookie its forms' tokens are checked against, with or without the middleware.
    assert client.get(LIST).status_code == 200
    token = client.cookies[django_settings.CSRF_COOKIE_NAME].value
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert not Session.objects.filter(pk=other.session_key).exists()


def test_revoking_works_without_the_messages_framework(engine, user, settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "messages" not in m]
    other = saved(engine, user)
    client, _ = sign_in()
    assert client.post(revoke_url(row_of(other).public_id)).status_code == 302
    assert client.post(OTHERS).status_code == 302
    assert not Session.objects.filter(pk=other.session_key).exists()
    assert client.get(LIST).status_code == 200


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        (CHROME_ANDROID, "Chrome Mobile 118 on Android 10"),
        (FIREFOX_LINUX, "Firefox 120 on Linux"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.1 Safari/605.1.15",
            "Safari 17 on Mac OS X 10.15",
        ),
        ("curl/8.4.0", "curl 8"),
        ("garbage", ""),
        (None, ""),
    ],
)
def test_device_summary(user_agent, summary):
    assert Session(user_agent=user_agent).device_summary == summary


def test_device_keeps_its_published_format():
    session = Session(user_agent=CHROME_ANDROID)
    assert (session.device, session.device_summary) == (
        "K / Android 10 / Chrome Mobile 118.0.0.0",
        "Chrome Mobile 118 on Android 10",
    )


def test_the_key_scan_sees_every_key_and_response(engine, user, seen: Seen):
    client, current = sign_in()
    client.get(LIST)
    assert set(Session.objects.values_list("pk", flat=True)) <= seen.keys
    assert len(seen.responses) == 2
    assert not leaked_keys(seen.responses, seen.keys)
    assert leaked_keys([HttpResponse(f"<p>{current.pk}</p>")], seen.keys) == {current.pk}
    assert leaked_keys([HttpResponseRedirect(f"/?k={current.pk}")], seen.keys) == {current.pk}
