from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from qsessions import geoip
from qsessions.management.commands import download_geoip_db
from tests.geoip_fixtures import SWEDEN_IP, database_bytes, make_archive, write_city, write_country

pytestmark = pytest.mark.usefixtures("fresh_geoip")

KEY = "Ab12Cd_secretLicenseKey0123456789_mmk"
EDITIONS = ("GeoLite2-City", "GeoLite2-Country")


class FakeMaxMind:
    """What the download server answers: an archive, or an HTTP status, per edition."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.responses: dict[str, bytes | int] = {}
        self.requests: list[dict[str, list[str]]] = []


@pytest.fixture
def maxmind(tmp_path_factory) -> Iterator[FakeMaxMind]:
    build_dir = tmp_path_factory.mktemp("build")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            fake.requests.append(query)
            if query.get("license_key") != [KEY]:
                self.answer(401, b"Invalid license key\n")
                return
            response = fake.responses.get(query.get("edition_id", [""])[0], 404)
            if isinstance(response, int):
                self.answer(response, b"")
            else:
                self.answer(200, response)

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeMaxMind(f"http://127.0.0.1:{server.server_address[1]}/app/geoip_download")
    for edition in EDITIONS:
        fake.responses[edition] = make_archive(edition, database_bytes(edition, build_dir))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch):
    monkeypatch.delenv("MAXMIND_LICENSE_KEY", raising=False)


@pytest.fixture
def geoip_dir(tmp_path, settings, maxmind):
    """GEOIP_PATH, not created yet, with downloads coming from the fake server."""
    directory = tmp_path / "geoip"
    settings.GEOIP_PATH = str(directory)
    settings.QSESSIONS_GEOIP_DOWNLOAD_URL = maxmind.url
    return directory


def run(*args: str, verbosity: int = 1) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command("download_geoip_db", *args, verbosity=verbosity, stdout=stdout, stderr=stderr)
    finally:
        # Whatever happened, the key must not have been shown.
        assert KEY not in stdout.getvalue()
        assert KEY not in stderr.getvalue()
    return stdout.getvalue(), stderr.getvalue()


def fails(*args: str) -> str:
    with pytest.raises(CommandError) as error:
        run(*args)
    message = str(error.value)
    assert KEY not in message
    return message


def listing(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_downloads_both_databases(geoip_dir, maxmind):
    stdout, _ = run("-k", KEY, verbosity=2)
    assert listing(geoip_dir) == ["GeoLite2-City.mmdb", "GeoLite2-Country.mmdb"]
    assert str(geoip_dir / "GeoLite2-City.mmdb") in stdout
    assert str(geoip_dir / "GeoLite2-Country.mmdb") in stdout
    assert "license_key=REDACTED" in stdout
    assert [query["edition_id"] for query in maxmind.requests] == [["GeoLite2-City"], ["GeoLite2-Country"]]
    assert all(query["suffix"] == ["tar.gz"] for query in maxmind.requests)
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"


def test_databases_are_readable_by_others(geoip_dir):
    run("-k", KEY)
    assert (geoip_dir / "GeoLite2-City.mmdb").stat().st_mode & 0o777 == 0o644


def test_country_database_is_usable_alone(geoip_dir, settings):
    run("--maxmind-license-key", KEY)
    settings.GEOIP_PATH = str(geoip_dir / "GeoLite2-Country.mmdb")
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Sweden"


def test_file_names_follow_the_settings(geoip_dir, settings):
    settings.GEOIP_CITY = "city.mmdb"
    settings.GEOIP_COUNTRY = "country.mmdb"
    run("-k", KEY)
    assert listing(geoip_dir) == ["city.mmdb", "country.mmdb"]
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"


def test_replaces_installed_databases(geoip_dir):
    write_country(geoip_dir, "GeoLite2-City.mmdb")
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Sweden"
    run("-k", KEY)
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"


def test_verbosity(geoip_dir):
    assert run("-k", KEY, verbosity=0) == ("", "")
    stdout, _ = run("-k", KEY, verbosity=1)
    assert "Downloading GeoLite2-City" in stdout
    assert str(geoip_dir) in stdout
    assert "GeoLite2-City.mmdb" not in stdout


def test_key_from_the_environment(geoip_dir, monkeypatch, maxmind):
    monkeypatch.setenv("MAXMIND_LICENSE_KEY", KEY)
    run()
    assert listing(geoip_dir) == ["GeoLite2-City.mmdb", "GeoLite2-Country.mmdb"]
    assert maxmind.requests[0]["license_key"] == [KEY]


def test_option_wins_over_the_environment(geoip_dir, monkeypatch):
    monkeypatch.setenv("MAXMIND_LICENSE_KEY", "stale-key")
    run("-k", KEY)
    assert listing(geoip_dir) == ["GeoLite2-City.mmdb", "GeoLite2-Country.mmdb"]


def test_key_is_required(geoip_dir, maxmind):
    assert "--maxmind-license-key" in fails()
    assert "license key" in fails("-k", "")
    assert maxmind.requests == []


def test_bad_key(geoip_dir, maxmind):
    write_city(geoip_dir)
    before = (geoip_dir / "GeoLite2-City.mmdb").read_bytes()
    message = fails("-k", "wrong-key")
    assert "license key" in message
    assert "401" in message
    assert "wrong-key" not in message
    assert listing(geoip_dir) == ["GeoLite2-City.mmdb"]
    assert (geoip_dir / "GeoLite2-City.mmdb").read_bytes() == before


def test_forbidden(geoip_dir, maxmind):
    maxmind.responses["GeoLite2-City"] = 403
    assert "license key" in fails("-k", KEY)


def test_server_error(geoip_dir, maxmind):
    maxmind.responses["GeoLite2-Country"] = 500
    message = fails("-k", KEY)
    assert "HTTP 500" in message
    assert "license_key=REDACTED" in message
    # The city database was complete and checked, so it stays.
    assert listing(geoip_dir) == ["GeoLite2-City.mmdb"]


def test_bad_key_exits_non_zero(geoip_dir, capsys):
    """From the command line, the error is a message and exit status 1, not a traceback."""
    command = download_geoip_db.Command()
    with pytest.raises(SystemExit) as exit_info:
        command.run_from_argv(["manage.py", "download_geoip_db", "-k", KEY + "-wrong"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "CommandError: MaxMind refused the license key" in captured.err
    assert KEY not in captured.out + captured.err


def test_server_unreachable(geoip_dir, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    settings.QSESSIONS_GEOIP_DOWNLOAD_URL = f"http://127.0.0.1:{port}/app/geoip_download"
    message = fails("-k", KEY)
    assert "Cannot reach" in message
    assert listing(geoip_dir) == []


def test_server_does_not_answer(geoip_dir, settings, monkeypatch):
    monkeypatch.setattr(download_geoip_db, "TIMEOUT", 0.2)
    with socket.socket() as sock:
        # Connections are accepted by the kernel, but never answered.
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        settings.QSESSIONS_GEOIP_DOWNLOAD_URL = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        assert "timed out" in fails("-k", KEY)
    assert listing(geoip_dir) == []


def test_malformed_url(geoip_dir, settings):
    settings.QSESSIONS_GEOIP_DOWNLOAD_URL = "download.example/app"
    assert "REDACTED" in fails("-k", KEY)


def test_key_is_redacted_in_urls_too(geoip_dir, settings):
    key = "k+y/with=special&chars"
    settings.QSESSIONS_GEOIP_DOWNLOAD_URL = "download.example/app"
    with pytest.raises(CommandError) as error:
        call_command("download_geoip_db", "-k", key, stdout=StringIO())
    assert "REDACTED" in str(error.value)
    assert quote_plus(key) not in str(error.value)
    assert key not in str(error.value)


def test_geoip_path_not_set(settings, maxmind):
    if hasattr(settings, "GEOIP_PATH"):
        del settings.GEOIP_PATH
    settings.QSESSIONS_GEOIP_DOWNLOAD_URL = maxmind.url
    assert "GEOIP_PATH" in fails("-k", KEY)
    assert maxmind.requests == []


def test_geoip_path_is_a_file(geoip_dir, settings, maxmind):
    settings.GEOIP_PATH = str(write_city(geoip_dir))
    assert "GEOIP_PATH" in fails("-k", KEY)
    assert maxmind.requests == []


def _truncated(edition: str, tmp_path) -> bytes:
    archive = make_archive(edition, database_bytes(edition, tmp_path))
    return archive[: len(archive) // 2]


def _damaged_database(edition: str, tmp_path) -> bytes:
    return make_archive(edition, b"not a database")


def _wrong_edition(edition: str, tmp_path) -> bytes:
    return make_archive(edition, database_bytes("GeoLite2-Country", tmp_path))


@pytest.mark.parametrize(
    ("archive", "error"),
    [
        (lambda edition, tmp_path: b"<html>garbage</html>", "damaged"),
        (_truncated, "damaged"),
        (lambda edition, tmp_path: make_archive(edition, None), "no .mmdb"),
        (_damaged_database, "not a valid MaxMind database"),
        (_wrong_edition, "GeoLite2-Country database, not a City one"),
    ],
    ids=["garbage", "truncated", "no-mmdb", "damaged-database", "wrong-edition"],
)
def test_bad_archive_leaves_installed_database(geoip_dir, maxmind, tmp_path, archive, error):
    write_city(geoip_dir)
    write_country(geoip_dir)
    before = {name: (geoip_dir / name).read_bytes() for name in listing(geoip_dir)}
    maxmind.responses["GeoLite2-City"] = archive("GeoLite2-City", tmp_path)
    assert error in fails("-k", KEY)
    # The installed files are untouched, and no temporary file is left behind.
    assert {name: (geoip_dir / name).read_bytes() for name in listing(geoip_dir)} == before
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"
