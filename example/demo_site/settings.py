"""A small site that uses qsessions the way a real one would: SQLite, the local-memory cache, the admin.

The load test (``bench/load.py``) serves this site from PostgreSQL and Redis, through environment variables:

- ``QSESSIONS_DEMO_DB``: ``sqlite`` (default) or ``postgresql`` (on 127.0.0.1, user ``postgres``);
  ``QSESSIONS_DEMO_DB_NAME`` the database (the SQLite file, or the server database, default ``qsessions_demo``).
- ``QSESSIONS_DEMO_CACHE``: ``locmem`` (default) or ``redis`` (``QSESSIONS_DEMO_REDIS_URL``, default
  ``redis://127.0.0.1:6379/12``); ``QSESSIONS_DEMO_CACHE_PREFIX`` its ``KEY_PREFIX``, so that a run can delete
  exactly its own keys.
- ``QSESSIONS_DEMO_CONN_MAX_AGE``: the database's ``CONN_MAX_AGE`` (default 0).
- ``QSESSIONS_DEMO_LOAD=1``: the JSON views of ``demo_site/load.py`` under ``load/``, a fast password hasher for
  the accounts the load test makes, activity recorded every second, ``DEBUG`` off, and server errors logged to stderr.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOAD_TEST = os.environ.get("QSESSIONS_DEMO_LOAD") == "1"

SECRET_KEY = "demo-only-not-secret"  # a demo: never deploy these settings
DEBUG = not LOAD_TEST
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before qsessions, so that its qsessions/base.html puts the sessions page into the site's layout.
    "demo_site",
    "qsessions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "qsessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

SESSION_ENGINE = "qsessions.backends.cached_db"
_db = os.environ.get("QSESSIONS_DEMO_DB", "sqlite")
_db_name = os.environ.get("QSESSIONS_DEMO_DB_NAME")
if _db == "sqlite":
    # Immediate transactions and a lock timeout: several server processes write the file at once under load.
    _database = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _db_name or BASE_DIR / "db.sqlite3",
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
elif _db == "postgresql":
    _database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db_name or "qsessions_demo",
        "USER": "postgres",
        "HOST": "127.0.0.1",
    }
else:
    raise ValueError(f"QSESSIONS_DEMO_DB must be sqlite or postgresql, not {_db!r}")
# Persistent connections suit a WSGI server's threads; under ASGI, Django says to leave them off.
DATABASES = {"default": {**_database, "CONN_MAX_AGE": int(os.environ.get("QSESSIONS_DEMO_CONN_MAX_AGE", 0))}}

_cache = os.environ.get("QSESSIONS_DEMO_CACHE", "locmem")
if _cache == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif _cache == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("QSESSIONS_DEMO_REDIS_URL", "redis://127.0.0.1:6379/12"),
            "KEY_PREFIX": os.environ.get("QSESSIONS_DEMO_CACHE_PREFIX", "qsessions-demo"),
        }
    }
else:
    raise ValueError(f"QSESSIONS_DEMO_CACHE must be locmem or redis, not {_cache!r}")
GEOIP_PATH = BASE_DIR / "geoip"

ROOT_URLCONF = "demo_site.urls"
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

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "qsessions:session_list"
LOGOUT_REDIRECT_URL = "home"
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

if LOAD_TEST:
    # The load test signs in hundreds of times a second; a slow hasher would be all it measures.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Every session refreshes its activity every second, so that path runs under load too, beside reads and writes.
    QSESSIONS_ACTIVITY_INTERVAL = 1
    # With DEBUG off, Django logs server errors and interrupted sessions nowhere by default: the load test wants
    # them in the server's log.
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {
            "django.request": {"handlers": ["stderr"], "level": "ERROR"},
            "django.security": {"handlers": ["stderr"], "level": "ERROR"},
        },
    }
