"""Other processes on the suite's database and cache: other app servers, a task worker or a management command, each
with its own memory, as in production. Threads would share this process's module state (the cache breaker, what it
owes), which is exactly what must not be relied on.

A process needs the database and the cache the suite uses: tests that start one run where the cache is a server (not
local memory) and the database a server or a file (``transaction=True``, so that it sees what the test wrote).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

needs_a_cache_server = pytest.mark.skipif(
    django_settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"),
    reason="other processes share the cache only through a server (QSESSIONS_TEST_CACHE)",
)


def environment(caches: dict[str, Any] | None = None, path: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a process that configures Django as ``settings_from_environment()`` in it says: this
    suite's database, ``caches`` (default: the suite's) and the ``cached_db`` engine. ``path``: a directory to import
    from before anything else; ``extra``: more variables."""
    database = {name: value for name, value in connection.settings_dict.items() if name != "TEST"}
    configured = {
        "SECRET_KEY": django_settings.SECRET_KEY,
        "USE_TZ": True,
        "INSTALLED_APPS": ["django.contrib.auth", "django.contrib.contenttypes", "qsessions", "tests.testapp"],
        "AUTH_USER_MODEL": django_settings.AUTH_USER_MODEL,
        "DATABASES": {"default": database},
        "CACHES": caches or django_settings.CACHES,
        "SESSION_ENGINE": "qsessions.backends.cached_db",
    }
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(entry) for entry in (path, ROOT) if entry is not None),
        "QSESSIONS_CHILD_SETTINGS": json.dumps(configured, default=str),
        **extra,
    }


#: What each process runs first.
SETUP = """
import json, os
import django
from django.conf import settings
settings.configure(**json.loads(os.environ["QSESSIONS_CHILD_SETTINGS"]))
django.setup()
"""

#: An app process: answers one JSON line per JSON line asked, until its input ends.
APP = """
import sys
from django.contrib.auth import SESSION_KEY, get_user_model
from qsessions.backends import cache_guard
from qsessions.backends.cached_db import SessionStore
from qsessions.revoke import revoke_all_sessions

cache_guard.RETRY_AFTER = float(os.environ["QSESSIONS_CHILD_RETRY_AFTER"])
for line in sys.stdin:
    asked = json.loads(line)
    if asked["do"] == "load":
        answer = SESSION_KEY in SessionStore(asked["key"], user_agent="child", ip="10.7.7.7").load()
    elif asked["do"] == "revoke_all":
        answer = revoke_all_sessions(get_user_model().objects.get(pk=asked["user"]))
    print(json.dumps(answer), flush=True)
"""


class AppProcess:
    """Another process using this package on the suite's database and ``caches``; its cache breaker waits
    ``retry_after`` seconds after a failure."""

    def __init__(self, caches: dict[str, Any] | None = None, retry_after: float = 5.0) -> None:
        # Not a pipe, which a chatty process could fill and block on; kill() closes it.
        self._errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-c", SETUP + APP],
            env=environment(caches, QSESSIONS_CHILD_RETRY_AFTER=str(retry_after)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )

    def signed_in(self, key: str) -> bool:
        """Whether a request with the session cookie ``key`` is signed in here."""
        return bool(self._ask(do="load", key=key))

    def revoke_all_sessions(self, user: Any) -> int:
        return int(self._ask(do="revoke_all", user=str(user.pk)))

    def exit(self) -> None:
        """End the process as a server or a command ends: its memory, and whatever it still owed there, goes."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0, self._stderr()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self._errors):
            if stream is not None:
                stream.close()

    def _ask(self, **asked: Any) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(asked) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 300)
        line = self.process.stdout.readline() if ready else ""
        assert line, f"no answer to {asked}:\n{self._stderr()}"
        return json.loads(line)

    def _stderr(self) -> str:
        self._errors.seek(0)
        return self._errors.read()[-4000:]
