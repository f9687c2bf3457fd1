"""The admin: a read-only, searchable, filterable list of sessions that can be deleted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from qsessions.models import Session
from tests.conftest import CHROME_ANDROID

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:qsessions_session_changelist"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser(username="root", email="root@example.com", password="secret")


@pytest.fixture
def admin_client_with_session(engine, staff):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.0.0.1")
    assert client.login(username="root", password="secret")
    return client


def _session_for(engine, user, ip):
    store = engine(user_agent=CHROME_ANDROID, ip=ip)
    store["_auth_user_id"] = str(user.pk)
    store.save()
    return Session.objects.get(pk=store.session_key)


def _listed_keys(response) -> set[str]:
    return {session.pk for session in response.context["cl"].result_list}


def test_changelist_shows_sessions_without_n_plus_one(
    engine, admin_client_with_session, user, other_user, django_assert_max_num_queries
):
    for index in range(3):
        _session_for(engine, user, f"10.0.1.{index}")
        _session_for(engine, other_user, f"10.0.2.{index}")
    url = reverse(CHANGELIST)
    admin_client_with_session.get(url)
    with django_assert_max_num_queries(10) as few:
        response = admin_client_with_session.get(url)
    for index in range(3, 30):
        _session_for(engine, user, f"10.0.3.{index}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client_with_session.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "10.0.3.29" in content
    assert "K / Android 10 / Chrome Mobile 118.0.0.0" in content
    user_url = reverse(f"admin:{user._meta.app_label}_{user._meta.model_name}_change", args=[user.pk])
    assert f'href="{user_url}"' in content


def test_filters(engine, admin_client_with_session, staff, user):
    live = _session_for(engine, user, "10.0.0.2")
    expired = _session_for(engine, user, "10.0.0.3")
    Session.objects.filter(pk=expired.pk).update(expire_date=timezone.now() - timedelta(days=1))
    own = Session.objects.get(user=staff)
    url = reverse(CHANGELIST)

    assert _listed_keys(admin_client_with_session.get(url, {"active": "1"})) == {live.pk, own.pk}
    assert _listed_keys(admin_client_with_session.get(url, {"active": "0"})) == {expired.pk}
    assert _listed_keys(admin_client_with_session.get(url, {"owner": "my"})) == {own.pk}


@pytest.mark.parametrize(("term", "expected"), [("10.0.0.7", "bob"), ("alice", "alice"), ("bob@example.com", "bob")])
def test_search(engine, admin_client_with_session, user, other_user, term, expected):
    by_name = {"alice": _session_for(engine, user, "10.0.0.6"), "bob": _session_for(engine, other_user, "10.0.0.7")}
    response = admin_client_with_session.get(reverse(CHANGELIST), {"q": term})
    assert response.status_code == 200
    assert _listed_keys(response) == {by_name[expected].pk}


def test_search_with_text_that_is_no_address(engine, admin_client_with_session, user):
    _session_for(engine, user, "10.0.0.6")
    response = admin_client_with_session.get(reverse(CHANGELIST), {"q": "no such thing ' %"})
    assert response.status_code == 200
    assert _listed_keys(response) == set()


def test_detail_is_read_only_and_shows_decoded_data(engine, admin_client_with_session, user):
    store = engine(user_agent=CHROME_ANDROID, ip="10.0.0.8")
    store["_auth_user_id"] = str(user.pk)
    store["favourite"] = "pistachio"
    store.save()
    url = reverse("admin:qsessions_session_change", args=[store.session_key])
    response = admin_client_with_session.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "pistachio" in content
    assert "_qsessions_ip" not in content
    assert 'name="ip"' not in content
    assert 'name="user_agent"' not in content

    response = admin_client_with_session.post(url, {"ip": "6.6.6.6"})
    assert response.status_code == 403
    assert Session.objects.get(pk=store.session_key).ip == "10.0.0.8"
    assert admin_client_with_session.get(reverse("admin:qsessions_session_add")).status_code == 403


def test_delete_signs_the_session_out(engine, admin_client_with_session, user):
    victim = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    assert victim.login(username="alice", password="secret")
    key = victim.cookies["sessionid"].value

    url = reverse("admin:qsessions_session_delete", args=[key])
    assert admin_client_with_session.post(url, {"post": "yes"}).status_code == 302
    assert not Session.objects.filter(pk=key).exists()
    assert victim.get("/read/").json()["user"] == ""


def test_bulk_delete_action(engine, admin_client_with_session, user):
    keys = [_session_for(engine, user, "10.0.0.9").pk for _ in range(3)]
    response = admin_client_with_session.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": keys, "post": "yes"}
    )
    assert response.status_code == 302
    assert not Session.objects.filter(pk__in=keys).exists()
    for key in keys:
        assert engine(key, user_agent=CHROME_ANDROID, ip="10.0.0.9").load() == {}


def test_user_model_search_fields():
    from django.contrib.admin import site

    model_admin = site._registry[Session]
    user_model = get_user_model()
    assert model_admin.get_search_fields(None) == [
        "ip",
        f"user__{user_model.USERNAME_FIELD}",
        f"user__{user_model.get_email_field_name()}",
    ]


def test_user_without_admin_page_is_shown_as_text(engine, user, monkeypatch):
    from django.contrib.admin import site
    from django.urls import NoReverseMatch

    def no_admin_page(*args, **kwargs):
        raise NoReverseMatch

    monkeypatch.setattr("qsessions.admin.reverse", no_admin_page)
    model_admin = site._registry[Session]
    assert model_admin.linked_user(_session_for(engine, user, "10.0.0.10")) == str(user)
    assert model_admin.linked_user(Session(user=None)) == "-"
