"""System checks: a misconfiguration is reported by ``manage.py check``, not discovered in production."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.cache.backends.dummy import DummyCache
from django.utils.module_loading import import_string

from qsessions.backends.base import QSessionStoreMixin
from qsessions.client import parse_network

_ENGINES = ("qsessions.backends.db", "qsessions.backends.cached_db")


def _engine_store() -> type | None:
    try:
        store = import_module(settings.SESSION_ENGINE).SessionStore
    except (ImportError, AttributeError):
        return None
    return store if isinstance(store, type) else None


def _uses_our_middleware() -> bool:
    from qsessions.middleware import SessionMiddleware

    for path in settings.MIDDLEWARE:
        try:
            middleware = import_string(path)
        except ImportError:
            continue
        if isinstance(middleware, type) and issubclass(middleware, SessionMiddleware):
            return True
    return False


@checks.register(checks.Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    store = _engine_store()
    if store is None or not issubclass(store, QSessionStoreMixin):
        errors.append(
            checks.Error(
                f"SESSION_ENGINE is {settings.SESSION_ENGINE!r}, which is not a qsessions engine: sessions will "
                "not record their user, IP or user agent.",
                hint=f"Set SESSION_ENGINE to one of {', '.join(map(repr, _ENGINES))}.",
                id="qsessions.E001",
            )
        )
    if not _uses_our_middleware():
        errors.append(
            checks.Error(
                "'qsessions.middleware.SessionMiddleware' is not in MIDDLEWARE: sessions will not record their IP "
                "or user agent.",
                hint="Replace 'django.contrib.sessions.middleware.SessionMiddleware' with "
                "'qsessions.middleware.SessionMiddleware' in MIDDLEWARE.",
                id="qsessions.E002",
            )
        )
    if store is not None and issubclass(store, QSessionStoreMixin) and store.caches_sessions:
        errors.extend(_check_session_cache())
    errors.extend(_check_client_ip())
    if "django.contrib.sessions" in settings.INSTALLED_APPS:
        errors.append(
            checks.Warning(
                "'django.contrib.sessions' is installed alongside 'qsessions': its table is no longer used for "
                "sessions.",
                hint="Remove 'django.contrib.sessions' from INSTALLED_APPS once its sessions are migrated.",
                id="qsessions.W001",
            )
        )
    return errors


def _check_session_cache() -> list[checks.CheckMessage]:
    alias = settings.SESSION_CACHE_ALIAS
    if alias not in settings.CACHES:
        return [
            checks.Error(
                f"SESSION_CACHE_ALIAS is {alias!r}, which is not in CACHES.",
                hint="Add that cache to CACHES or point SESSION_CACHE_ALIAS at one of its entries.",
                id="qsessions.E003",
            )
        ]
    backend = settings.CACHES[alias].get("BACKEND", "")
    try:
        is_dummy = issubclass(import_string(backend), DummyCache)
    except ImportError:
        is_dummy = False
    if is_dummy:
        return [
            checks.Warning(
                f"The session cache {alias!r} is a DummyCache: the cached_db engine reads the database on every "
                "request.",
                hint="Use a real cache for sessions, or SESSION_ENGINE = 'qsessions.backends.db'.",
                id="qsessions.W002",
            )
        ]
    return []


def _check_client_ip() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    proxies = getattr(settings, "QSESSIONS_TRUSTED_PROXIES", ())
    if not isinstance(proxies, (list, tuple)):
        errors.append(
            checks.Error(
                f"QSESSIONS_TRUSTED_PROXIES is {proxies!r}, which is not a list: no proxy is trusted.",
                hint="Set QSESSIONS_TRUSTED_PROXIES to a list of addresses or networks, e.g. ['10.0.0.0/8'].",
                id="qsessions.E004",
            )
        )
    else:
        errors.extend(
            checks.Error(
                f"QSESSIONS_TRUSTED_PROXIES holds {entry!r}, which is not an IP address or network: it is ignored.",
                hint="Write each proxy as an address ('10.0.0.5', '2001:db8::5') or a network ('10.0.0.0/8').",
                id="qsessions.E004",
            )
            for entry in proxies
            if parse_network(entry) is None
        )
    path = getattr(settings, "QSESSIONS_CLIENT_IP", None)
    if path:
        try:
            function = import_string(path)
        # import_string() raises AttributeError for a path that is not a string.
        except (ImportError, AttributeError):
            function = None
        if not callable(function):
            errors.append(
                checks.Error(
                    f"QSESSIONS_CLIENT_IP is {path!r}, which is not an importable function.",
                    hint="Set QSESSIONS_CLIENT_IP to the dotted path of a function that takes the request and returns "
                    "the client's IP address or None.",
                    id="qsessions.E005",
                )
            )
    return errors
