"""Test settings: the database and the cache come from the environment, so one suite runs everywhere.

``QSESSIONS_TEST_DB``: ``sqlite`` (default), ``postgresql`` or ``mariadb``.
``QSESSIONS_TEST_CACHE``: ``locmem`` (default), ``redis`` (Django's ``RedisCache``), ``django-redis`` (the
``django-redis`` package's client against the same server) or ``memcached`` (``PyMemcacheCache``, 127.0.0.1:11211).
Servers are reached on 127.0.0.1 with their default ports; ``QSESSIONS_TEST_*_HOST``/``_PORT`` override them.
``QSESSIONS_TEST_DB_NAME`` names the server database (default ``qsessions``; the tests use ``test_`` + it), so two
runs on one server need not share it.
"""

import os
import tempfile

SECRET_KEY = "qsessions-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The live server of the browser tests serves static files from it, and fails on every request without it.
STATIC_URL = "/static/"

_db = os.environ.get("QSESSIONS_TEST_DB", "sqlite")
_cache = os.environ.get("QSESSIONS_TEST_CACHE", "locmem")
_db_name = os.environ.get("QSESSIONS_TEST_DB_NAME", "qsessions")

if _db == "sqlite":
    # A file, not memory: connections of several threads then wait for each other's locks, as on a server, instead
    # of failing at once ("database table is locked"), so the concurrency tests run here too. One per process.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": "qsessions.sqlite3",
            "OPTIONS": {"timeout": 20},
            "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"qsessions-tests-{os.getpid()}.sqlite3")},
        }
    }
elif _db == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _db_name,
            "USER": os.environ.get("QSESSIONS_TEST_PG_USER", "postgres"),
            "HOST": os.environ.get("QSESSIONS_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("QSESSIONS_TEST_PG_PORT", "5432"),
        }
    }
elif _db == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": _db_name,
            "USER": "root",
            "HOST": os.environ.get("QSESSIONS_TEST_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("QSESSIONS_TEST_MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
else:
    raise ValueError(f"QSESSIONS_TEST_DB must be sqlite, postgresql or mariadb, not {_db!r}")

# Keys of their own for each process, so that runs sharing a server never read each other's sessions; conftest.py
# deletes them afterwards.
_key_prefix = f"qsessions-tests-{os.getpid()}"
if _cache == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif _cache == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("QSESSIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
            "KEY_PREFIX": _key_prefix,
        }
    }
elif _cache == "django-redis":
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": os.environ.get("QSESSIONS_TEST_DJANGO_REDIS_URL", "redis://127.0.0.1:6379/13"),
            "KEY_PREFIX": _key_prefix,
        }
    }
elif _cache == "memcached":
    _memcached = f"{os.environ.get('QSESSIONS_TEST_MEMCACHED_HOST', '127.0.0.1')}:"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": _memcached + os.environ.get("QSESSIONS_TEST_MEMCACHED_PORT", "11211"),
            "KEY_PREFIX": _key_prefix,
            # Memcached cannot list keys: this one records the keys it makes, so that they can be deleted.
            "KEY_FUNCTION": "tests.testapp.caches.recorded_key",
        }
    }
else:
    raise ValueError(f"QSESSIONS_TEST_CACHE must be locmem, redis, django-redis or memcached, not {_cache!r}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "qsessions",
    "tests.testapp",
]

MIDDLEWARE = [
    "qsessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

SESSION_ENGINE = "qsessions.backends.cached_db"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if os.environ.get("QSESSIONS_TEST_USER_MODEL", "default") == "uuid":
    AUTH_USER_MODEL = "testapp.UUIDUser"
