"""Settings for running Django's own ``sessions_tests`` against qsessions; ``run.py`` sets the environment.

Django's ``runtests.py`` replaces INSTALLED_APPS, MIDDLEWARE, ROOT_URLCONF and TEMPLATES with its own (its copy is
patched to install ``qsessions`` and use our middleware), so only the settings below matter. They mirror Django's
own ``tests/test_sqlite.py`` (``USE_TZ = False`` included, so the ``*WithTimeZoneTests`` classes mean something).

The database and cache are chosen as for our own suite (see ``tests/settings.py``).
``QSESSIONS_SUITE_ENGINE``: the SESSION_ENGINE the middleware tests use, ``qsessions.backends.db`` by default.
"""

import copy
import os

from tests import settings as test_settings

SECRET_KEY = "django-suite-not-secret"
USE_TZ = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_ENGINE = os.environ.get("QSESSIONS_SUITE_ENGINE", "qsessions.backends.db")
TEST_RUNNER = "tests.django_suite.recorder.RecordingRunner"

# The same servers as our own suite (``QSESSIONS_TEST_DB``, ``QSESSIONS_TEST_CACHE``), with a test database and
# cache keys of its own, so that it never meets a run of our suite.
DATABASES = copy.deepcopy(test_settings.DATABASES)
if DATABASES["default"]["NAME"] != ":memory:":
    DATABASES["default"].setdefault("TEST", {})["NAME"] = "test_qsessions_django_suite"
CACHES = copy.deepcopy(test_settings.CACHES)
if "KEY_PREFIX" in CACHES["default"]:
    # run.py deletes the keys under this prefix afterwards.
    CACHES["default"]["KEY_PREFIX"] = os.environ["QSESSIONS_SUITE_KEY_PREFIX"]
