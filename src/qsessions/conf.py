"""Every ``QSESSIONS_*`` setting with its default, read from ``django.conf.settings`` each time it is used."""

from __future__ import annotations

from django.conf import settings


class Settings:
    @property
    def GEOIP_DOWNLOAD_URL(self) -> str:
        """``QSESSIONS_GEOIP_DOWNLOAD_URL``: where ``download_geoip_db`` fetches MaxMind's archives from.

        The ``edition_id``, ``license_key`` and ``suffix`` query parameters are added to it. Point it at a mirror,
        or at a local server in tests.
        """
        return str(getattr(settings, "QSESSIONS_GEOIP_DOWNLOAD_URL", "https://download.maxmind.com/app/geoip_download"))


conf = Settings()
