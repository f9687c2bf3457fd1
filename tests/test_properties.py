"""Bad input never becomes a 500 or bad data: random client input and damaged stored sessions, through the whole stack.

Each example runs real requests through the test settings' middleware (sessions, auth, CSRF, messages), sync and
async, on both engines, and then checks every stored row: its ``ip`` is a valid address or NULL and its
``user_agent`` fits its column. ``QSESSIONS_HYPOTHESIS_EXAMPLES`` sets how many examples each test runs (40).

The examples share the test's database transaction (hypothesis runs them inside one call of the test function), so
each starts from a known state: the rows of the ones before are deleted, the user created once.
"""

from __future__ import annotations

import ipaddress
import os
import pickle
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core import signing
from django.core.cache import caches
from django.db.models import UUIDField
from django.test import AsyncClient, Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY
from qsessions.backends.payload import ROW_TIMES_KEY
from qsessions.client import USER_AGENT_MAX_LENGTH
from qsessions.models import Session
from tests.conftest import CHROME_ANDROID

examples = hypothesis_settings(
    max_examples=int(os.environ.get("QSESSIONS_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    # The fixtures (the engine, the user) hold for every example; the state examples change is reset in the body.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # Nothing written into the working tree; a failure prints the example and the @reproduce_failure blob.
    database=None,
)

COOKIE = django_settings.SESSION_COOKIE_NAME
LOGIN = {"username": "alice", "password": "secret"}

# Client input. Header values are what a WSGI server puts in the environ: the header's bytes decoded as latin-1.

_latin1 = st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))
_huge = st.builds(str.__mul__, st.sampled_from(["1", "a", ":", "\xff", "\x00"]), st.integers(1_000, 100_000))

remote_addrs = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.ip_addresses(v=6).map(lambda ip: f"{ip}%eth0"),
    st.sampled_from(["", " ", "unix:/run/app.sock", "fe80::1%25eth0", "1.2.3.4, 5.6.7.8", "[::1]", "1.2.3.4:80"]),
    st.text(max_size=60),
    _latin1,
    _huge,
)

user_agents = st.one_of(
    st.just(CHROME_ANDROID),
    st.text(max_size=400),
    # Lone surrogates: the WSGI test client passes them through as they are.
    st.text(st.characters(exclude_categories=()), max_size=400),
    _latin1,
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map("\x00".join),
    _huge,
)

_cookie_values = st.one_of(
    st.text(st.characters(codec="latin-1", exclude_characters=";,"), max_size=60),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=32, max_size=40),
    st.sampled_from(["", '""', '"quoted"', "ключ".encode().decode("latin-1"), "=", "a=b"]),
    _huge,
)


@st.composite
def cookie_headers(draw: st.DrawFn, valid_key: str) -> str:
    """A ``Cookie`` header: several session cookies (the valid one maybe among them), other cookies, odd separators."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from([COOKIE, COOKIE, "csrftoken", " " + COOKIE, COOKIE.upper(), "", "x y"]))
        value = valid_key if draw(st.booleans()) and draw(st.booleans()) else draw(_cookie_values)
        parts.append(f"{name}={value}" if name or draw(st.booleans()) else value)
    separator = draw(st.sampled_from(["; ", ";", ", ", " ;", ";;", "\t; "]))
    return separator.join(parts)


# Damaged stored sessions.


def _sign(value: Any, key: str | None = None) -> str:
    return signing.dumps(
        value, key=key, salt="django.contrib.sessions.SessionStore", serializer=signing.JSONSerializer, compress=True
    )


_garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=50),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    _huge,
)


def _convertible_user_ids() -> st.SearchStrategy[Any]:
    """Stored user ids the user model's primary key converts, of any value and type it converts from.

    An id it cannot convert (``None``, a list, ``"abc"``) makes ``django.contrib.auth.get_user()`` raise
    ``ValidationError`` (a 500) with any session engine, Django's own included: the application's data is not the
    store's to mend. The store's own use of it (the row's ``user``) is tested with any value in the "extras".
    """
    if isinstance(get_user_model()._meta.pk, UUIDField):
        # Strings only: a session is stored as JSON, which holds no UUID object.
        return st.one_of(st.uuids().map(str), st.uuids().map(lambda value: value.hex))
    return st.one_of(st.integers(), st.integers().map(str), st.integers(2**63, 2**80).map(str))


_user_ids = st.deferred(_convertible_user_ids)


@st.composite
def payloads(draw: st.DrawFn, session_data: str) -> str:
    """What a row's ``session_data`` might become: damaged, signed with another key, or signed but ill-shaped."""
    kind = draw(st.sampled_from(["truncated", "flipped", "other-key", "shape", "extras"]))
    if kind == "truncated":
        return session_data[: draw(st.integers(0, max(len(session_data) - 1, 0)))]
    if kind == "flipped":
        index = draw(st.integers(0, len(session_data) - 1))
        flipped = chr(ord(session_data[index]) ^ (1 << draw(st.integers(0, 6))))
        return session_data[:index] + flipped + session_data[index + 1 :]
    if kind == "other-key":
        return _sign({SESSION_KEY: "1"}, key="another secret")
    if kind == "shape":
        return _sign(draw(st.one_of(_garbage, st.builds(lambda v: {SESSION_KEY: v}, _user_ids))))
    extras = draw(
        st.fixed_dictionaries(
            {},
            optional={
                IP_SESSION_KEY: _garbage,
                USER_AGENT_SESSION_KEY: _garbage,
                ROW_TIMES_KEY: st.one_of(_garbage, st.lists(st.one_of(_garbage, st.floats()), max_size=3)),
                SESSION_KEY: _user_ids,
                "_auth_user_hash": _garbage,
            },
        )
    )
    return _sign({**signing.loads(session_data, salt="django.contrib.sessions.SessionStore"), **extras})


_ENTRY = {"counter": 1, IP_SESSION_KEY: "10.1.2.3", USER_AGENT_SESSION_KEY: CHROME_ANDROID, ROW_TIMES_KEY: None}

#: What a cached_db entry might hold: its keys with values of any type. (An entry that is not a dict at all is
#: test_cache_entry_that_is_not_a_dict_is_no_crash's.)
cache_entries = st.fixed_dictionaries(
    {},
    optional={
        IP_SESSION_KEY: _garbage,
        USER_AGENT_SESSION_KEY: _garbage,
        ROW_TIMES_KEY: st.one_of(_garbage, st.lists(st.one_of(_garbage, st.floats()), max_size=3)),
        SESSION_KEY: _user_ids,
    },
).map(lambda bad: {**_ENTRY, **bad})


# Checks.


def _assert_rows_are_clean() -> None:
    for ip, user_agent in Session.objects.values_list("ip", "user_agent"):
        assert ip is None or str(ipaddress.ip_address(ip)) == ip, ip
        if user_agent is not None:
            assert 0 < len(user_agent) <= USER_AGENT_MAX_LENGTH
            assert "\x00" not in user_agent
            user_agent.encode("utf-8")


def _fresh_state() -> None:
    """No row, and on cached_db no cache entry, left by the examples before (the cache is shared: never cleared);
    a cache taken to work, whatever an example before did to it."""
    from qsessions.backends import cache_guard

    Session.objects.all().delete()
    cache_guard.reset()


def _ok(response: Any) -> Any:
    assert response.status_code < 500, response
    return response


# Client input through the sync stack.


@pytest.mark.django_db
@examples
@given(data=st.data(), remote_addr=remote_addrs, user_agent=user_agents)
def test_any_client_input_is_stored_clean(engine, user, data, remote_addr, user_agent):
    _fresh_state()
    client = Client(REMOTE_ADDR=remote_addr, HTTP_USER_AGENT=user_agent)

    _ok(client.post("/login/", LOGIN))
    key = client.cookies[COOKIE].value
    _ok(client.get("/write/"))
    # The same session from elsewhere, then under an arbitrary Cookie header.
    other_addr, other_agent = data.draw(remote_addrs), data.draw(user_agents)
    _ok(client.get("/read/", REMOTE_ADDR=other_addr, HTTP_USER_AGENT=other_agent))
    _ok(client.get("/write/", HTTP_COOKIE=data.draw(cookie_headers(key))))
    _ok(client.get("/read/", HTTP_COOKIE=data.draw(cookie_headers(key))))

    _assert_rows_are_clean()


# And through the async stack: an ASGI server passes raw header bytes, which Django decodes as latin-1.


class _RawAsyncClient(AsyncClient):
    def __init__(self, address: str, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        self.address, self.raw_headers = address, headers

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        scope: dict[str, Any] = super()._base_scope(**request)
        scope["client"] = [self.address, 40000]
        scope["headers"] += self.raw_headers
        return scope


@pytest.mark.django_db
@examples
@given(
    data=st.data(),
    remote_addr=remote_addrs,
    user_agent=st.one_of(st.binary(max_size=400), user_agents.map(lambda ua: ua.encode("utf-8", "surrogatepass"))),
)
def test_any_client_input_is_stored_clean_async(engine, user, data, remote_addr, user_agent):
    _fresh_state()
    # Drawn here: hypothesis draws only in the test's own thread. The session's key is put in once it is known.
    cookie = data.draw(cookie_headers("KEY")).encode("latin-1", "replace")

    @async_to_sync
    async def requests() -> None:
        # The ASGI handler runs here in its own loop; the ORM's sync_to_async calls come back to the test's thread,
        # so the requests see the test's transaction.
        client = _RawAsyncClient(remote_addr, [(b"user-agent", user_agent)])
        _ok(await client.post("/async/login/", LOGIN))
        key = client.cookies[COOKIE].value
        _ok(await client.get("/async/write/"))
        client.raw_headers.append((b"cookie", cookie.replace(b"KEY", key.encode())))
        _ok(await client.get("/async/read/"))
        _ok(await client.get("/read/"))

    requests()
    _assert_rows_are_clean()


# Damaged stored sessions: the row's payload, and on cached_db the cache entry.


@pytest.mark.django_db
@examples
@given(data=st.data(), in_cache=st.booleans())
def test_damaged_stored_session_is_no_crash(engine, user, data, in_cache):
    _fresh_state()
    client = Client(REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT=CHROME_ANDROID)
    _ok(client.post("/login/", LOGIN))
    _ok(client.get("/write/"))
    key = client.cookies[COOKIE].value
    row = Session.objects.get(pk=key)
    damaged = data.draw(payloads(row.session_data))
    Session.objects.filter(pk=key).update(session_data=damaged)
    prefix = getattr(engine, "cache_key_prefix", None)
    if prefix is not None:
        cache = caches["default"]
        if in_cache:
            cache.set(prefix + key, data.draw(cache_entries))
        else:
            cache.delete(prefix + key)

    # A different client too, so that the stored client is compared with it.
    _ok(client.get("/write/", REMOTE_ADDR="2001:db8::1", HTTP_USER_AGENT="curl/8.0"))
    _ok(client.get("/read/"))
    _ok(client.post("/login/", LOGIN))
    _ok(client.get("/logout/"))

    _assert_rows_are_clean()


@pytest.mark.django_db
@examples
@given(data=st.data())
def test_corrupt_cache_bytes_fall_back_to_the_row(settings, user, data):
    """A cache entry whose pickled bytes are damaged reads as a miss, and the row is used instead."""
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    _fresh_state()
    client = Client(REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT=CHROME_ANDROID)
    _ok(client.post("/login/", LOGIN))
    assert _ok(client.get("/write/")).json() == {"counter": 1}
    key = client.cookies[COOKIE].value
    cache = caches["default"]
    stored = pickle.dumps(cache.get("qsessions.q_cached_db" + key), pickle.HIGHEST_PROTOCOL)
    cut = data.draw(st.integers(0, len(stored) - 1))
    _set_raw(cache, "qsessions.q_cached_db" + key, stored[:cut] + bytes([stored[cut] ^ 0xFF]))

    response = _ok(client.get("/write/"))

    if response.status_code == 200:
        assert response.json()["counter"] >= 1
    _assert_rows_are_clean()


def _set_raw(cache: Any, key: str, raw: bytes) -> None:
    """Store ``raw`` as the pickled bytes of ``key``'s entry, under whichever cache the tests run with."""
    if hasattr(cache, "_expire_info"):
        cache._cache[cache.make_and_validate_key(key)] = raw
    elif hasattr(cache, "client") and hasattr(cache.client, "get_client"):
        # django-redis: its own key maker and client; a value that is not an integer is read as a pickle.
        cache.client.get_client(write=True).set(cache.client.make_key(key), raw)
    elif type(cache).__name__ == "PyMemcacheCache":
        # Memcached: the bytes go in flagged as a pickle, as pymemcache stores a dict.
        from pymemcache import serde
        from pymemcache.client.base import Client as MemcacheClient

        class _AsPickle:
            def serialize(self, key: str, value: bytes) -> tuple[bytes, int]:
                return value, serde.FLAG_PICKLE

            def deserialize(self, key: str, value: bytes, flags: int) -> bytes:
                return value

        host, port = cache._servers[0].rsplit(":", 1)
        raw_client = MemcacheClient((host, int(port)), serde=_AsPickle(), allow_unicode_keys=True)
        raw_client.set(cache.make_and_validate_key(key), raw)
        raw_client.close()
    else:
        made = cache.make_and_validate_key(key)
        cache._cache.get_client(made, write=True).set(made, raw)


@pytest.mark.django_db
@pytest.mark.parametrize("entry", [[1, 2], "session", 42, ("10.1.2.3", None)], ids=repr)
def test_cache_entry_that_is_not_a_dict_is_no_crash(settings, user, entry):
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"
    client = Client(REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT=CHROME_ANDROID)
    _ok(client.post("/login/", LOGIN))
    key = client.cookies[COOKIE].value
    caches["default"].set("qsessions.q_cached_db" + key, entry)
    assert _ok(client.get("/read/")).json()["user"] == "alice"
