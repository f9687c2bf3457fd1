from __future__ import annotations

import importlib.util
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from argparse import ArgumentParser
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from qsessions.conf import conf

#: Seconds to wait for the server to answer, and then between two pieces of the download.
TIMEOUT = 60
#: Each edition, with the setting naming its file and the word its database type must contain.
EDITIONS = (
    ("GeoLite2-City", "GEOIP_CITY", "GeoLite2-City.mmdb", "City"),
    ("GeoLite2-Country", "GEOIP_COUNTRY", "GeoLite2-Country.mmdb", "Country"),
)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


@contextmanager
def _temp_path(directory: Path, prefix: str, suffix: str) -> Iterator[Path]:
    """A new empty file, removed on the way out unless it has been moved away."""
    # In the target directory, so that moving the finished file into place is a rename on one file system.
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


class Command(BaseCommand):
    help = (
        "Download the GeoLite2 City and Country databases from MaxMind into GEOIP_PATH, replacing the files named "
        "by GEOIP_CITY and GEOIP_COUNTRY only once each new one has been checked. Needs a MaxMind license key: "
        "-k/--maxmind-license-key, or the MAXMIND_LICENSE_KEY environment variable. The QSESSIONS_GEOIP_DOWNLOAD_URL "
        "setting changes where the archives come from (default: MaxMind's download service); the edition_id, "
        "license_key and suffix query parameters are added to it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        key_from_env = os.environ.get("MAXMIND_LICENSE_KEY") or None
        # No "%(default)s" in the help: it would print the key taken from the environment.
        parser.add_argument(
            "-k",
            "--maxmind-license-key",
            default=key_from_env,
            required=key_from_env is None,
            help="MaxMind license key. Defaults to the MAXMIND_LICENSE_KEY environment variable.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key: str | None = options["maxmind_license_key"]
        if not key:
            raise CommandError(
                "A MaxMind license key is needed: pass -k/--maxmind-license-key or set MAXMIND_LICENSE_KEY."
            )
        location = getattr(settings, "GEOIP_PATH", None)
        if not location:
            raise CommandError("GEOIP_PATH is not set: set it to the directory the GeoIP databases go in.")
        directory = Path(location)
        if directory.is_file():
            raise CommandError(f"GEOIP_PATH ({directory}) is a file: set it to a directory to download into.")
        if importlib.util.find_spec("maxminddb") is None:
            raise CommandError("The geoip2 package is needed: pip install 'django-qsessions[geoip2]'.")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"Cannot create GEOIP_PATH {directory}: {exc}") from exc

        self.key = key
        base_url = conf.GEOIP_DOWNLOAD_URL
        verbosity: int = options["verbosity"]
        for edition, setting, default_name, kind in EDITIONS:
            target = directory / getattr(settings, setting, default_name)
            if verbosity >= 1:
                self.stdout.write(f"Downloading {edition}…")
            with (
                _temp_path(directory, f".{edition}.", ".tar.gz.part") as archive,
                _temp_path(directory, f".{edition}.", ".mmdb.part") as database,
            ):
                self.download(base_url, edition, archive, verbosity)
                self.extract(edition, archive, database)
                self.verify(edition, kind, database)
                # mkstemp makes the file private; the database is public data, and the web server may run as
                # another user than this command.
                database.chmod(0o644)
                os.replace(database, target)
            if verbosity >= 2:
                self.stdout.write(f"Wrote {target}")
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(f"GeoIP databases are up to date in {directory}."))

    def redact(self, text: str) -> str:
        # The key as typed, and as it appears in a URL.
        return text.replace(self.key, "REDACTED").replace(urllib.parse.quote_plus(self.key), "REDACTED")

    def download(self, base_url: str, edition: str, destination: Path, verbosity: int) -> None:
        separator = "&" if "?" in base_url else "?"
        query = {"edition_id": edition, "license_key": self.key, "suffix": "tar.gz"}
        url = f"{base_url}{separator}{urllib.parse.urlencode(query)}"
        shown = f"{base_url}{separator}{urllib.parse.urlencode({**query, 'license_key': 'REDACTED'})}"
        if verbosity >= 2:
            self.stdout.write(f"GET {shown}")
        # Errors are raised "from None", and their text redacted: some (a bad URL) would show the key otherwise.
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "django-qsessions"})
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response, destination.open("wb") as file:
                shutil.copyfileobj(response, file)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (401, 403):
                raise CommandError(
                    f"MaxMind refused the license key (HTTP {exc.code}) for {edition}: check -k/--maxmind-license-key"
                    " or MAXMIND_LICENSE_KEY, and that the key may download GeoLite2 databases."
                ) from None
            raise CommandError(f"Downloading {edition} from {shown} failed: HTTP {exc.code} {exc.reason}.") from None
        except urllib.error.URLError as exc:
            reason = self.redact(str(exc.reason))
            raise CommandError(f"Cannot reach {shown} to download {edition}: {reason}.") from None
        except (OSError, HTTPException, ValueError) as exc:
            # OSError includes timeouts while reading; ValueError comes from a malformed URL.
            reason = self.redact(_reason(exc))
            raise CommandError(f"Downloading {edition} from {shown} failed: {reason}.") from None

    def extract(self, edition: str, archive: Path, destination: Path) -> None:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                member = next((m for m in tar if m.isfile() and m.name.endswith(".mmdb")), None)
                if member is None:
                    raise CommandError(f"The {edition} archive holds no .mmdb database.")
                source = tar.extractfile(member)
                if source is None:
                    raise CommandError(f"The {edition} archive holds no .mmdb database.")
                with source, destination.open("wb") as file:
                    shutil.copyfileobj(source, file)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise CommandError(f"The {edition} archive is damaged: {_reason(exc)}.") from exc

    def verify(self, edition: str, kind: str, database: Path) -> None:
        import maxminddb

        try:
            with maxminddb.open_database(str(database), maxminddb.MODE_AUTO) as reader:
                database_type: str = reader.metadata().database_type
        except Exception as exc:
            raise CommandError(f"The {edition} download is not a valid MaxMind database: {_reason(exc)}.") from exc
        if kind not in database_type:
            raise CommandError(f"The {edition} download is a {database_type} database, not a {kind} one.")
