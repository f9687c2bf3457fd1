"""The published django-qsessions 2.1.0 itself, from PyPI, serving the same database and cache as this package: what
a rolling deploy or a rollback does. A session this package ended stays ended when 2.1.0 reads its cookie, and a live
session reads and saves there as 2.1.0 always did.

The published package has this one's import name, so it runs in a child process, with its wheel first on the path.
The child needs the database and the cache the suite uses, so these tests run where the cache is a server (not on
local memory) and the database a server or a file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.core import signing
from django.test import Client

from qsessions.backends.cached_db import SessionStore
from qsessions.models import Session, make_public_id
from qsessions.revoke import revoke_session
from tests.conftest import FIREFOX_LINUX, saved
from tests.processes import SETUP, environment, needs_a_cache_server
from tests.signed_in import sign_in

PUBLISHED = "2.1.0"
#: Django's salt for session payloads, which both packages sign with.
SALT = "django.contrib.sessions.SessionStore"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    needs_a_cache_server,
]

#: Run by the child: loads the sessions named on stdin with 2.1.0's cached_db store, saves some, prints what it saw.
CHILD = """
import sys
import qsessions
from qsessions.backends.cached_db import SessionStore
asked = json.load(sys.stdin)
seen = {}
for key in asked["load"]:
    store = SessionStore(key, user_agent=asked["user_agent"], ip=asked["ip"])
    seen[key] = sorted(store.load())
for key, cart in asked["save"].items():
    store = SessionStore(key, user_agent=asked["user_agent"], ip=asked["ip"])
    store["cart"] = cart
    store.save()
print(json.dumps({"package": qsessions.__file__, "seen": seen}))
"""


@pytest.fixture(autouse=True)
def _cached_db(settings: Any) -> None:
    settings.SESSION_ENGINE = "qsessions.backends.cached_db"


@pytest.fixture(scope="session")
def published_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the published package alone (its dependencies are this suite's)."""
    target = tmp_path_factory.mktemp("published")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "--target", str(target), f"django-qsessions=={PUBLISHED}"], check=True)
    return target


def _published(path: Path, load: list[str], save: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """What 2.1.0's store finds in each session of ``load`` (its keys), after saving ``save`` (key -> cart)."""
    asked = {"load": load, "save": save or {}, "user_agent": FIREFOX_LINUX, "ip": "10.9.9.9"}
    done = subprocess.run(
        [sys.executable, "-c", SETUP + CHILD],
        input=json.dumps(asked),
        env=environment(path=path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    # The published package, not this one, answered.
    assert Path(answer["package"]).is_relative_to(path)
    return answer["seen"]


def _api_revoke(key: str, user: Any) -> None:
    client, _ = sign_in()
    assert client.post(f"/sessions/api/{make_public_id(key)}/").json()["revoked"] == 1


def _logout(key: str, user: Any) -> None:
    client = Client(HTTP_USER_AGENT=FIREFOX_LINUX, REMOTE_ADDR="10.9.9.9")
    client.cookies[django_settings.SESSION_COOKIE_NAME] = key
    assert client.get("/logout/").status_code == 200


ENDINGS = {
    "logout": _logout,
    "revoke_session": lambda key, user: revoke_session(user, make_public_id(key)),
    "JSON API": _api_revoke,
    "QuerySet.delete": lambda key, user: Session.objects.filter(pk=key).delete(),
}


def test_sessions_ended_here_stay_ended_for_the_published_package(user, published_path):
    keys = {}
    for name in ENDINGS:
        client, row = sign_in()
        # Read once, so that its entry is in the cache, as a busy session's is.
        assert client.get("/read/").json()["user"] == "alice"
        keys[name] = row.session_key
    # Before: 2.1.0 serves them, signed in.
    assert all(SESSION_KEY in seen for seen in _published(published_path, list(keys.values())).values())

    for name, key in keys.items():
        ENDINGS[name](key, user)

    seen = _published(published_path, list(keys.values()))
    assert {name: seen[key] for name, key in keys.items()} == {name: [] for name in ENDINGS}


def test_what_the_published_package_sees_of_a_live_session_and_saves(user, published_path):
    store = saved(SessionStore, user, cart=[1])
    key = store.session_key
    # Cached by this package: the entry holds the client and the row's times besides the application's keys.
    assert SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9").load()["cart"] == [1]
    seen = _published(published_path, [key], save={key: [1, 2]})[key]
    assert seen == sorted([SESSION_KEY, "cart", "_qsessions_ip", "_qsessions_user_agent", "_qsessions_row"])

    # 2.1.0 wrote the extra key into the row and the entry; this package takes it out again on every load.
    payload = signing.loads(Session.objects.get(pk=key).session_data, salt=SALT, serializer=signing.JSONSerializer)
    assert payload["cart"] == [1, 2]
    assert "_qsessions_row" in payload
    again = SessionStore(key, user_agent=FIREFOX_LINUX, ip="10.9.9.9")
    assert again.load()["cart"] == [1, 2]
    assert "_qsessions_row" not in again.load()
    assert "_qsessions_row" not in Session.objects.get(pk=key).get_decoded()
