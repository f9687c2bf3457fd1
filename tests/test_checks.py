from __future__ import annotations

import pytest
from django.core.management import call_command

from qsessions.checks import check_settings


def _ids() -> list[str]:
    return [message.id for message in check_settings()]


def test_test_settings_are_clean():
    assert _ids() == []
    call_command("check", "--fail-level", "WARNING")


@pytest.mark.parametrize(
    "engine",
    ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cache", "no.such.engine"],
)
def test_engine_must_be_ours(settings, engine):
    settings.SESSION_ENGINE = engine
    assert "qsessions.E001" in _ids()


@pytest.mark.parametrize("engine", ["qsessions.backends.db", "qsessions.backends.cached_db"])
def test_our_engines_pass(settings, engine):
    settings.SESSION_ENGINE = engine
    assert "qsessions.E001" not in _ids()


def test_middleware_must_be_ours(settings):
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware" if "SessionMiddleware" in path else path
        for path in settings.MIDDLEWARE
    ]
    assert _ids() == ["qsessions.E002"]


def test_subclassed_middleware_passes(settings):
    settings.MIDDLEWARE = ["tests.testapp.middleware.CustomSessionMiddleware"]
    assert _ids() == []


def test_missing_session_cache(settings):
    settings.SESSION_CACHE_ALIAS = "sessions"
    assert _ids() == ["qsessions.E003"]
    settings.SESSION_ENGINE = "qsessions.backends.db"
    assert _ids() == []


def test_dummy_session_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert _ids() == ["qsessions.W002"]


def test_contrib_sessions_installed_alongside(settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "django.contrib.sessions"]
    assert _ids() == ["qsessions.W001"]


def test_every_message_has_a_hint(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.MIDDLEWARE = []
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "django.contrib.sessions"]
    settings.QSESSIONS_TRUSTED_PROXIES = ["proxy.internal"]
    settings.QSESSIONS_CLIENT_IP = "no.such.function"
    messages = check_settings()
    assert {message.id for message in messages} == {
        "qsessions.E001",
        "qsessions.E002",
        "qsessions.E004",
        "qsessions.E005",
        "qsessions.W001",
    }
    assert all(message.hint for message in messages)


@pytest.mark.parametrize("proxies", [[], ["10.0.0.0/8", "10.1.2.3", "2001:db8::/32", "::ffff:10.0.0.0/104"]])
def test_trusted_proxies_pass(settings, proxies):
    settings.QSESSIONS_TRUSTED_PROXIES = proxies
    assert _ids() == []


@pytest.mark.parametrize(
    ("proxies", "errors"),
    [
        (["10.0.0.0/8", "proxy.internal", "10.0.0.0/33", None], 3),
        ("10.0.0.0/8", 1),
        (None, 1),
    ],
)
def test_trusted_proxies_must_be_networks(settings, proxies, errors):
    settings.QSESSIONS_TRUSTED_PROXIES = proxies
    assert _ids() == ["qsessions.E004"] * errors


def test_client_ip_function_passes(settings):
    settings.QSESSIONS_CLIENT_IP = "tests.testapp.client_ip.cf_connecting_ip"
    assert _ids() == []


@pytest.mark.parametrize(
    "path",
    [
        "tests.testapp.client_ip.missing",
        "no.such.module.function",
        "nodots",
        "tests.testapp.client_ip.NOT_CALLABLE",
        42,
    ],
)
def test_client_ip_function_must_be_importable_and_callable(settings, path):
    settings.QSESSIONS_CLIENT_IP = path
    assert _ids() == ["qsessions.E005"]
