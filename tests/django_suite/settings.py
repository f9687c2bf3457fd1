"""Settings for running Django's own ``sessions_tests`` against qsessions; ``run.py`` sets the environment.

Django's ``runtests.py`` replaces INSTALLED_APPS, MIDDLEWARE, ROOT_URLCONF and TEMPLATES with its own (its copy is
patched to install ``qsessions`` and use our middleware), so only the settings below matter. They mirror Django's
own ``tests/test_sqlite.py`` (``USE_TZ = False`` included, so the ``*WithTimeZoneTests`` classes mean something).

``QSESSIONS_SUITE_DB``: ``sqlite`` (in memory, default), ``postgresql`` or ``mariadb``.
``QSESSIONS_SUITE_CACHE``: ``locmem`` (default) or ``redis``.
``QSESSIONS_SUITE_ENGINE``: the SESSION_ENGINE the middleware tests use, ``qsessions.backends.db`` by default.
"""

import os

SECRET_KEY = "django-suite-not-secret"
USE_TZ = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_ENGINE = os.environ.get("QSESSIONS_SUITE_ENGINE", "qsessions.backends.db")
TEST_RUNNER = "tests.django_suite.recorder.RecordingRunner"

_TEST_DB_NAME = "test_qsessions_django_suite"
_db = os.environ.get("QSESSIONS_SUITE_DB", "sqlite")
_cache = os.environ.get("QSESSIONS_SUITE_CACHE", "locmem")

if _db == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
elif _db == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": os.environ.get("QSESSIONS_SUITE_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("QSESSIONS_SUITE_PG_PORT", "5432"),
            "TEST": {"NAME": _TEST_DB_NAME},
        }
    }
elif _db == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "test",
            "USER": "root",
            "HOST": os.environ.get("QSESSIONS_SUITE_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("QSESSIONS_SUITE_MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": _TEST_DB_NAME, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
else:
    raise ValueError(f"QSESSIONS_SUITE_DB must be sqlite, postgresql or mariadb, not {_db!r}")

if _cache == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif _cache == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("QSESSIONS_SUITE_REDIS_URL", "redis://127.0.0.1:6379/14"),
            # A prefix of its own per run, so concurrent runs don't see each other's keys; run.py deletes them after.
            "KEY_PREFIX": os.environ.get("QSESSIONS_SUITE_KEY_PREFIX", f"qsessions-django-suite-{os.getpid()}"),
        }
    }
else:
    raise ValueError(f"QSESSIONS_SUITE_CACHE must be locmem or redis, not {_cache!r}")
