"""Every ``QSESSIONS_*`` setting with its default, read from ``django.conf.settings``.

A setting read on every request is kept once read, and forgotten when Django's ``setting_changed`` signal says it
changed (as ``override_settings`` and the ``settings`` fixture do): reading a setting that is not set costs an
exception inside ``django.conf``, about a microsecond a request.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

_kept: dict[str, Any] = {}


def _forget(*, setting: str, **kwargs: Any) -> None:
    _kept.pop(setting, None)


setting_changed.connect(_forget)


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
    def GEOIP_DOWNLOAD_URL(self) -> str:
        """``QSESSIONS_GEOIP_DOWNLOAD_URL``: where ``download_geoip_db`` fetches MaxMind's archives from.

        The ``edition_id``, ``license_key`` and ``suffix`` query parameters are added to it. Point it at a mirror,
        or at a local server in tests.
        """
        return str(getattr(settings, "QSESSIONS_GEOIP_DOWNLOAD_URL", "https://download.maxmind.com/app/geoip_download"))


conf = Settings()
