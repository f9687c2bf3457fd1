"""Every ``QSESSIONS_*`` setting with its default, and Django's ``GEOIP_*`` ones, read from ``django.conf.settings``.

A setting read on every request (or every GeoIP lookup) is kept once read, and forgotten when Django's
``setting_changed`` signal says it changed (as ``override_settings`` and the ``settings`` fixture do): reading a
setting that is not set raises and catches an exception inside ``django.conf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from qsessions.client import Network, forwarded_ip, parse_networks

if TYPE_CHECKING:
    from django.http import HttpRequest

_kept: dict[str, Any] = {}

#: Kept values that derive from another setting as well as their own.
_DERIVED = {
    "QSESSIONS_TRUSTED_PROXIES": "QSESSIONS_CLIENT_IP",
    "GEOIP_CITY": "GEOIP_PATH",
    "GEOIP_COUNTRY": "GEOIP_PATH",
}


def _forget(*, setting: str, **kwargs: Any) -> None:
    _kept.pop(setting, None)
    _kept.pop(_DERIVED.get(setting, ""), None)


setting_changed.connect(_forget)


def geoip_files() -> tuple[str, str, str] | None:
    """Django's ``(GEOIP_PATH, GEOIP_CITY, GEOIP_COUNTRY)``, with their defaults; ``None`` without ``GEOIP_PATH``.

    Read for every session whose location is shown: an unset setting costs more than the lookup itself. Not a
    ``Settings`` property, which are the ``QSESSIONS_*`` settings, but kept and forgotten as those are.
    """
    try:
        return _kept["GEOIP_PATH"]  # type: ignore[no-any-return]
    except KeyError:
        location = getattr(settings, "GEOIP_PATH", None)
        files = None
        if location:
            city = getattr(settings, "GEOIP_CITY", "GeoLite2-City.mmdb")
            country = getattr(settings, "GEOIP_COUNTRY", "GeoLite2-Country.mmdb")
            files = (os.fspath(location), os.fspath(city), os.fspath(country))
        _kept["GEOIP_PATH"] = files
        return files


class Settings:
    @property
    def ACTIVITY_INTERVAL(self) -> float:
        """``QSESSIONS_ACTIVITY_INTERVAL``: seconds between two writes of a session's ``last_activity`` (default 60).

        A request refreshes ``last_activity`` only once this much time has passed since the last refresh, so a busy
        session costs one small UPDATE a minute, not one per request. ``0`` turns activity tracking off.
        """
        try:
            return _kept["QSESSIONS_ACTIVITY_INTERVAL"]  # type: ignore[no-any-return]
        except KeyError:
            value = _kept["QSESSIONS_ACTIVITY_INTERVAL"] = float(getattr(settings, "QSESSIONS_ACTIVITY_INTERVAL", 60))
            return value

    @property
    def MAX_SESSIONS_PER_USER(self) -> int | None:
        """``QSESSIONS_MAX_SESSIONS_PER_USER``: how many sessions a user may have at once (default ``None``: no limit).

        When a user signs in and would have more, their oldest sessions are revoked (``reason="limit"``).
        """
        value = getattr(settings, "QSESSIONS_MAX_SESSIONS_PER_USER", None)
        return None if value is None else int(value)

    @property
    def REVOKE_ON_PASSWORD_CHANGE(self) -> bool:
        """``QSESSIONS_REVOKE_ON_PASSWORD_CHANGE``: delete a user's sessions when their password changes (default off).

        Django already invalidates them (their stored password hash no longer matches), but leaves them in the
        database and cache, listed as signed in. With this on they are deleted when the user is saved with a new
        password (``reason="password_change"``). The session the password was changed in stays signed in when the
        view calls ``update_session_auth_hash()``, as Django's ``PasswordChangeView`` does: it moves that session to a
        new key.
        """
        return bool(getattr(settings, "QSESSIONS_REVOKE_ON_PASSWORD_CHANGE", False))

    @property
    def CLIENT_IP(self) -> Callable[[HttpRequest], object] | None:
        """How the middleware finds a request's client address; ``None`` means ``REMOTE_ADDR`` as it is (the default).

        ``QSESSIONS_CLIENT_IP`` is the dotted path of a function ``(request) -> str | None``, imported once; it wins
        over ``QSESSIONS_TRUSTED_PROXIES``. Without it, ``QSESSIONS_TRUSTED_PROXIES`` gives a function that reads
        ``X-Forwarded-For`` behind those proxies. Whatever the function returns is validated like ``REMOTE_ADDR``.
        """
        try:
            return _kept["QSESSIONS_CLIENT_IP"]  # type: ignore[no-any-return]
        except KeyError:
            path = getattr(settings, "QSESSIONS_CLIENT_IP", None)
            if path:
                resolve = import_string(path)
            else:
                networks = self.TRUSTED_PROXIES
                resolve = partial(forwarded_ip, networks=networks) if networks else None
            _kept["QSESSIONS_CLIENT_IP"] = resolve
            return resolve  # type: ignore[no-any-return]

    @property
    def TRUSTED_PROXIES(self) -> tuple[Network, ...]:
        """``QSESSIONS_TRUSTED_PROXIES``: the addresses and networks of the site's own proxies (default none).

        Only a request whose ``REMOTE_ADDR`` is one of them has its ``X-Forwarded-For`` read. Entries that are not an
        address or network are left out, so a typo trusts less, never more (``manage.py check`` reports it).
        """
        value = getattr(settings, "QSESSIONS_TRUSTED_PROXIES", ())
        return parse_networks(value if isinstance(value, (list, tuple)) else ())

    @property
    def IP_ANONYMIZE(self) -> bool:
        """``QSESSIONS_IP_ANONYMIZE``: store IPv4 addresses cut to /24 and IPv6 ones to /48 (default ``False``)."""
        try:
            return _kept["QSESSIONS_IP_ANONYMIZE"]  # type: ignore[no-any-return]
        except KeyError:
            value = _kept["QSESSIONS_IP_ANONYMIZE"] = bool(getattr(settings, "QSESSIONS_IP_ANONYMIZE", False))
            return value

    @property
    def GEOIP_DOWNLOAD_URL(self) -> str:
        """``QSESSIONS_GEOIP_DOWNLOAD_URL``: where ``download_geoip_db`` fetches MaxMind's archives from.

        The ``edition_id``, ``license_key`` and ``suffix`` query parameters are added to it. Point it at a mirror,
        or at a local server in tests.
        """
        return str(getattr(settings, "QSESSIONS_GEOIP_DOWNLOAD_URL", "https://download.maxmind.com/app/geoip_download"))


conf = Settings()
