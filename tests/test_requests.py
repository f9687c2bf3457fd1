"""Whole requests through the middleware stack, sync and async, as a browser makes them."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.http import HttpResponse
from django.test import AsyncClient, Client

from qsessions.middleware import SessionMiddleware
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID, FIREFOX_LINUX


def _login(client: Any, path: str = "/login/") -> Session:
    response = client.post(path, {"username": "alice", "password": "secret"})
    assert response.status_code == 200
    return Session.objects.get(pk=client.cookies[django_settings.SESSION_COOKIE_NAME].value)


def _session_key(client: Any) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


@pytest.mark.django_db
def test_login_records_user_ip_and_user_agent(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    row = _login(client)
    assert (row.user, row.ip, row.user_agent) == (user, "10.1.2.3", CHROME_ANDROID)
    assert row.created_at is not None
    assert row.device == "K / Android 10 / Chrome Mobile 118.0.0.0"

    response = client.get("/read/")
    assert response.json()["user"] == "alice"
    # The application sees only its own keys: auth's, not the client's.
    assert set(response.json()["data"]) == {"_auth_user_id", "_auth_user_backend", "_auth_user_hash"}


@pytest.mark.django_db
def test_logout_deletes_the_session(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    row = _login(client)
    client.get("/logout/")
    assert not Session.objects.filter(pk=row.pk).exists()
    assert client.get("/read/").json()["user"] == ""


@pytest.mark.django_db
def test_hot_path_reads_the_session_as_djangos_engine_does(engine, user, django_assert_num_queries):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    _login(client)
    # Loading the signed-in user costs its usual query; the session costs one SELECT on db, none on cached_db.
    session_queries = 0 if hasattr(engine, "cache_key_prefix") else 1
    with django_assert_num_queries(1 + session_queries) as captured:
        assert client.get("/read/").json()["user"] == "alice"
    session_sql = [query["sql"] for query in captured.captured_queries if "qsessions_session" in query["sql"]]
    assert len(session_sql) == session_queries
    assert all(sql.startswith("SELECT") for sql in session_sql)


@pytest.mark.django_db
def test_write_request_is_one_update(engine, user, statements):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    _login(client)
    client.get("/write/")
    with statements() as run:
        assert client.get("/write/").json() == {"counter": 2}
    session_statements = [sql for sql in run.sql if "qsessions_session" in sql]
    expected = ["UPDATE"] if engine.__module__.endswith("cached_db") else ["SELECT", "UPDATE"]
    assert [sql.split()[0] for sql in session_statements] == expected


@pytest.mark.django_db
def test_new_ip_and_user_agent_are_recorded(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    row = _login(client)
    client.defaults.update(HTTP_USER_AGENT=FIREFOX_LINUX, REMOTE_ADDR="2001:db8::7")
    assert client.get("/read/").json()["user"] == "alice"
    row.refresh_from_db()
    assert (row.ip, row.user_agent) == ("2001:db8::7", FIREFOX_LINUX)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("HTTP_X_FORWARDED_FOR", "6.6.6.6"),
        ("HTTP_X_REAL_IP", "6.6.6.6"),
        ("HTTP_FORWARDED", "for=6.6.6.6"),
        ("HTTP_CF_CONNECTING_IP", "6.6.6.6"),
        ("HTTP_TRUE_CLIENT_IP", "6.6.6.6"),
    ],
)
def test_forwarding_headers_are_not_trusted(engine, user, header, value):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3", **{header: value})
    row = _login(client)
    assert row.ip == "10.1.2.3"
    # Nor on a later request of the session, with another value.
    assert client.get("/read/", **{header: value.replace("6.6.6.6", "7.7.7.7")}).json()["user"] == "alice"
    row.refresh_from_db()
    assert row.ip == "10.1.2.3"


@pytest.mark.django_db
@pytest.mark.parametrize("remote_addr", ["", "unix:/run/app.sock", "fe80::1%eth0", "garbage", "1.2.3.4, 5.6.7.8"])
def test_bad_remote_addr_is_stored_as_null(engine, user, remote_addr):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR=remote_addr)
    assert _login(client).ip is None
    assert client.get("/read/").json()["user"] == "alice"


@pytest.mark.django_db
def test_missing_user_agent_and_address(engine, user, rf):
    request = rf.get("/")
    del request.META["REMOTE_ADDR"]
    SessionMiddleware(lambda request: HttpResponse()).process_request(request)
    request.session["a"] = 1
    request.session.save()
    row = Session.objects.get(pk=request.session.session_key)
    assert (row.ip, row.user_agent, row.device) == (None, None, "")


@pytest.mark.django_db
def test_huge_user_agent(engine, user):
    client = Client(HTTP_USER_AGENT="x" * 100_000)
    assert len(_login(client).user_agent) == 300


@pytest.mark.django_db
def test_malformed_cookie_is_a_new_anonymous_session(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    for value in ["", "short", "x" * 4000, "ключ-сессии-ключ", "../../etc/passwd", "A" * 40, "a" * 41]:
        # As a WSGI server passes it: the cookie header's bytes, decoded as latin-1.
        cookie = f"{django_settings.SESSION_COOKIE_NAME}={value}".encode().decode("latin-1")
        response = client.get("/write/", HTTP_COOKIE=cookie)
        assert response.status_code == 200
        assert response.json() == {"counter": 1}


@pytest.mark.django_db
def test_revoked_session_is_signed_out(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    row = _login(client)
    user.session_set.all().delete()
    assert not Session.objects.filter(pk=row.pk).exists()
    assert client.get("/read/").json()["user"] == ""


@pytest.mark.django_db
def test_session_deleted_by_instance_is_signed_out(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    _login(client).delete()
    assert client.get("/read/").json()["user"] == ""


@pytest.mark.django_db
def test_deleted_user_does_not_crash_the_request(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID)
    _login(client)
    user.delete()
    assert client.get("/read/").json()["user"] == ""
    assert client.get("/write/").status_code in (200, 400)


@pytest.mark.django_db
def test_deleting_a_user_leaves_nothing_of_their_sessions(engine, user):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3")
    _login(client)
    user.delete()
    assert client.get("/read/").json() == {"user": "", "data": {}}


# The async path: the middleware under an async handler, and views that use the async session API.


class AsyncClientAt(AsyncClient):
    """An ASGI test client whose connection comes from ``address``, sending ``user_agent``."""

    def __init__(self, address: str, user_agent: str) -> None:
        super().__init__()
        self.address, self.user_agent = address, user_agent

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        scope: dict[str, Any] = super()._base_scope(**request)
        scope["client"] = [self.address, 40000]
        scope["headers"].append((b"user-agent", self.user_agent.encode()))
        return scope


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_login_records_user_ip_and_user_agent(engine, user):
    client = AsyncClientAt("10.7.7.7", CHROME_ANDROID)
    response = await client.post("/async/login/", {"username": "alice", "password": "secret"})
    assert response.status_code == 200
    row = await Session.objects.select_related("user").aget(pk=_session_key(client))
    assert (row.user, row.ip, row.user_agent) == (user, "10.7.7.7", CHROME_ANDROID)

    response = await client.get("/async/read/")
    assert response.json()["user"] == "alice"
    assert all(not key.startswith("_qsessions") for key in response.json()["data"])

    response = await client.get("/async/write/")
    assert response.json() == {"counter": 1}
    row = await Session.objects.aget(pk=_session_key(client))
    assert row.get_decoded()["counter"] == 1
    assert row.created_at is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_new_client_is_recorded(engine, user):
    client = AsyncClientAt("10.7.7.7", CHROME_ANDROID)
    await client.post("/async/login/", {"username": "alice", "password": "secret"})
    elsewhere = AsyncClientAt("10.8.8.8", FIREFOX_LINUX)
    elsewhere.cookies = client.cookies
    assert (await elsewhere.get("/async/read/")).json()["user"] == "alice"
    row = await Session.objects.aget(pk=_session_key(client))
    assert (row.ip, row.user_agent) == ("10.8.8.8", FIREFOX_LINUX)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
@pytest.mark.parametrize("header", ["x-forwarded-for", "x-real-ip", "forwarded", "cf-connecting-ip", "true-client-ip"])
async def test_async_forwarding_headers_are_not_trusted(engine, user, header):
    client = AsyncClientAt("10.7.7.7", CHROME_ANDROID)
    value = "for=6.6.6.6" if header == "forwarded" else "6.6.6.6"
    response = await client.post("/async/login/", {"username": "alice", "password": "secret"}, headers={header: value})
    assert response.status_code == 200
    assert (await client.get("/async/read/", headers={header: value})).json()["user"] == "alice"
    row = await Session.objects.aget(pk=_session_key(client))
    assert row.ip == "10.7.7.7"


# The client's address behind proxies, and anonymised.


@pytest.mark.django_db
def test_forwarded_for_from_a_trusted_proxy(engine, user, settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 81.2.69.160")
    row = _login(client)
    assert row.ip == "81.2.69.160"
    # The client moves: the proxy reports its new address, which is recorded.
    assert client.get("/read/", HTTP_X_FORWARDED_FOR="2001:db8::9").json()["user"] == "alice"
    row.refresh_from_db()
    assert row.ip == "2001:db8::9"


@pytest.mark.django_db
def test_forwarded_for_from_elsewhere_is_ignored(engine, user, settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="81.2.69.160", HTTP_X_FORWARDED_FOR="10.0.0.2")
    assert _login(client).ip == "81.2.69.160"


@pytest.mark.django_db
def test_forwarded_for_through_layers_of_ipv6_proxies(engine, user, settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["2001:db8:ff::/48", "10.0.0.5"]
    client = Client(
        HTTP_USER_AGENT=CHROME_ANDROID,
        REMOTE_ADDR="2001:db8:ff::1",
        HTTP_X_FORWARDED_FOR="10.0.0.9, 2001:db8:1::7, 10.0.0.5, 2001:db8:ff::2",
    )
    assert _login(client).ip == "2001:db8:1::7"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "forwarded_for", ["", "garbage", "81.2.69.160, ", "x" * 100_000, ",".join(["10.0.0.2"] * 5000)]
)
def test_bad_forwarded_for_is_stored_as_null(engine, user, settings, forwarded_for):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded_for)
    assert _login(client).ip is None
    assert client.get("/read/").json()["user"] == "alice"


@pytest.mark.django_db
def test_client_ip_function_wins(engine, user, settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.QSESSIONS_CLIENT_IP = "tests.testapp.client_ip.cf_connecting_ip"
    client = Client(
        HTTP_USER_AGENT=CHROME_ANDROID,
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="6.6.6.6",
        HTTP_CF_CONNECTING_IP="2001:DB8::1",
    )
    assert _login(client).ip == "2001:db8::1"


@pytest.mark.django_db
@pytest.mark.parametrize("value", [None, "", "garbage", "81.2.69.160, 6.6.6.6", "fe80::1%eth0"])
def test_client_ip_function_output_is_cleaned(engine, user, settings, value):
    settings.QSESSIONS_CLIENT_IP = "tests.testapp.client_ip.not_an_address"
    meta = {} if value is None else {"HTTP_X_TEST_VALUE": value}
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="10.1.2.3", **meta)
    assert _login(client).ip is None
    assert client.get("/read/").json()["user"] == "alice"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("remote_addr", "stored"),
    [("81.2.69.160", "81.2.69.0"), ("2001:db8:1:2::7", "2001:db8:1::"), ("::ffff:81.2.69.160", "81.2.69.0")],
)
def test_anonymized_ip_costs_no_update_per_request(
    engine, user, settings, django_assert_num_queries, remote_addr, stored
):
    settings.QSESSIONS_IP_ANONYMIZE = True
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR=remote_addr)
    row = _login(client)
    assert row.ip == stored
    # The user's SELECT, and the session's on db; no UPDATE although the given address is not the stored one.
    with django_assert_num_queries(1 if hasattr(engine, "cache_key_prefix") else 2):
        assert client.get("/read/").json()["user"] == "alice"


@pytest.mark.django_db
def test_anonymized_session_records_a_new_network_only(engine, user, settings, statements):
    settings.QSESSIONS_IP_ANONYMIZE = True
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="81.2.69.160")
    row = _login(client)
    client.defaults.update(REMOTE_ADDR="81.2.69.7")
    with statements() as run:
        client.get("/read/")
    assert "UPDATE" not in run.kinds
    client.defaults.update(REMOTE_ADDR="81.2.70.7")
    with statements() as run:
        client.get("/read/")
    assert run.kinds.count("UPDATE") == 1
    row.refresh_from_db()
    assert row.ip == "81.2.70.0"


@pytest.mark.django_db
def test_turning_anonymization_on_rewrites_a_full_address(engine, user, settings):
    client = Client(HTTP_USER_AGENT=CHROME_ANDROID, REMOTE_ADDR="81.2.69.160")
    row = _login(client)
    settings.QSESSIONS_IP_ANONYMIZE = True
    client.get("/read/")
    row.refresh_from_db()
    assert row.ip == "81.2.69.0"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_async_path_resolves_the_address_as_the_sync_one(engine, user, settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.QSESSIONS_IP_ANONYMIZE = True
    client = AsyncClientAt("10.0.0.1", CHROME_ANDROID)
    headers = {"x-forwarded-for": "6.6.6.6, 81.2.69.160"}
    response = await client.post("/async/login/", {"username": "alice", "password": "secret"}, headers=headers)
    assert response.status_code == 200
    row = await Session.objects.aget(pk=_session_key(client))
    assert row.ip == "81.2.69.0"

    client.address = "81.2.69.99"
    assert (await client.get("/async/read/", headers=headers)).json()["user"] == "alice"
    row = await Session.objects.aget(pk=_session_key(client))
    assert row.ip == "81.2.69.0"
