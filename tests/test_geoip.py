from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import maxminddb
import pytest
from django.contrib.gis.geoip2 import GeoIP2

from qsessions import geoip
from qsessions.models import Session
from tests.geoip_fixtures import (
    FRANCE_IP,
    IRAN_IP,
    SWEDEN_IP,
    UNKNOWN_IP,
    write_city,
    write_country,
    write_database,
)

pytestmark = pytest.mark.usefixtures("fresh_geoip")

CITY_KEYS = {
    "accuracy_radius",
    "city",
    "continent_code",
    "continent_name",
    "country_code",
    "country_name",
    "is_in_european_union",
    "latitude",
    "longitude",
    "metro_code",
    "postal_code",
    "region_code",
    "region_name",
    "time_zone",
    "dma_code",
    "region",
}
CITY_LEVEL_KEYS = CITY_KEYS - {
    "continent_code",
    "continent_name",
    "country_code",
    "country_name",
    "is_in_european_union",
}


@pytest.fixture
def geoip_dir(tmp_path, settings):
    directory = tmp_path / "geoip"
    write_city(directory)
    write_country(directory)
    settings.GEOIP_PATH = str(directory)
    return directory


@pytest.fixture
def opened(monkeypatch):
    """The paths of the databases opened, one entry per reader created."""
    paths: list[str] = []
    open_database = maxminddb.open_database

    def spy(path, *args, **kwargs):
        paths.append(os.fspath(path))
        return open_database(path, *args, **kwargs)

    monkeypatch.setattr(maxminddb, "open_database", spy)
    return paths


def warnings_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "qsessions.geoip" and r.levelno == logging.WARNING]


def test_city(geoip_dir):
    info = geoip.location_info(SWEDEN_IP)
    assert info == GeoIP2(geoip_dir).city(SWEDEN_IP)
    assert set(info) == CITY_KEYS
    assert info["city"] == "Linköping"
    assert info["country_code"] == "SE"
    assert info["continent_code"] == "EU"
    assert info["time_zone"] == "Europe/Stockholm"
    assert (info["latitude"], info["longitude"]) == (58.4167, 15.6167)
    assert info["region_name"] == "Östergötland County"
    assert info["is_in_european_union"] is True
    assert geoip.describe(info) == "Linköping, Sweden"


def test_country_only_entry(geoip_dir):
    info = geoip.location_info(FRANCE_IP)
    assert info is not None
    assert info["city"] is None
    assert info["country_name"] == "France"
    assert geoip.describe(info) == "France"


def test_ipv6(geoip_dir):
    info = geoip.location_info(IRAN_IP)
    assert info is not None
    assert info["country_code"] == "IR"
    assert info["time_zone"] == "Asia/Tehran"
    assert info["is_in_european_union"] is False
    assert geoip.describe(info) == "Tehran, Iran"


def test_unknown_address(geoip_dir, caplog):
    assert geoip.location_info(UNKNOWN_IP) is None
    assert geoip.location_info("2001:4860::1") is None
    assert warnings_logged(caplog) == []


@pytest.mark.parametrize("ip", [None, "", "not-an-ip", "999.1.1.1", "example.com", "81.2.69"])
def test_no_or_invalid_address(geoip_dir, caplog, ip):
    assert geoip.location_info(ip) is None
    assert warnings_logged(caplog) == []


def test_country_database_only(tmp_path, settings):
    write_country(tmp_path)
    settings.GEOIP_PATH = tmp_path
    info = geoip.location_info(SWEDEN_IP)
    assert info is not None
    assert set(info) == CITY_KEYS
    assert {key: info[key] for key in CITY_LEVEL_KEYS} == dict.fromkeys(CITY_LEVEL_KEYS)
    assert info["country_code"] == "SE"
    assert info["continent_name"] == "Europe"
    assert info["is_in_european_union"] is True
    assert geoip.describe(info) == "Sweden"


@pytest.mark.parametrize(
    ("name", "expected"), [("GeoLite2-City.mmdb", "Linköping, Sweden"), ("GeoLite2-Country.mmdb", "Sweden")]
)
def test_path_to_a_file(geoip_dir, settings, name, expected):
    """As with Django, the database type, not the file name, says whether it is a city database."""
    settings.GEOIP_PATH = geoip_dir / name
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == expected


def test_custom_file_names(tmp_path, settings):
    write_city(tmp_path, "cities.mmdb")
    settings.GEOIP_PATH = str(tmp_path)
    settings.GEOIP_CITY = "cities.mmdb"
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"


def test_path_not_set(settings, caplog):
    if hasattr(settings, "GEOIP_PATH"):
        del settings.GEOIP_PATH
    for _ in range(3):
        assert geoip.location_info(SWEDEN_IP) is None
    assert warnings_logged(caplog) == ["GEOIP_PATH is not set: sessions have no location."]


def test_no_database_at_path(tmp_path, settings, caplog):
    settings.GEOIP_PATH = str(tmp_path / "missing")
    for _ in range(3):
        assert geoip.location_info(SWEDEN_IP) is None
    assert len(warnings_logged(caplog)) == 1
    assert "missing" in warnings_logged(caplog)[0]


def test_database_added_later(tmp_path, settings):
    settings.GEOIP_PATH = str(tmp_path)
    assert geoip.location_info(SWEDEN_IP) is None
    write_city(tmp_path)
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"


def test_geoip2_not_installed(geoip_dir, monkeypatch, caplog):
    # A None entry in sys.modules makes the import raise ImportError, as if the package were not there.
    for name in [name for name in sys.modules if name == "geoip2" or name.startswith("geoip2.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for _ in range(3):
        assert geoip.location_info(SWEDEN_IP) is None
    assert warnings_logged(caplog) == ["The geoip2 package is not installed: sessions have no location."]


@pytest.mark.parametrize("content", [b"", b"not a database", b"\xab\xcd\xefMaxMind.com" + b"\x00" * 64])
def test_corrupt_database(tmp_path, settings, caplog, content):
    (tmp_path / "GeoLite2-City.mmdb").write_bytes(content)
    settings.GEOIP_PATH = str(tmp_path)
    for _ in range(3):
        assert geoip.location_info(SWEDEN_IP) is None
    assert len(warnings_logged(caplog)) == 1


def test_damaged_search_tree(geoip_dir, caplog):
    """A database can open fine and fail only on lookups: still no exception, and one warning."""
    city = geoip_dir / "GeoLite2-City.mmdb"
    with maxminddb.open_database(str(city)) as reader:
        metadata = reader.metadata()
    tree_size = metadata.node_count * metadata.record_size * 2 // 8
    data = city.read_bytes()
    city.write_bytes(b"\xff" * tree_size + data[tree_size:])
    for _ in range(3):
        assert geoip.location_info(SWEDEN_IP) is None
    [warning] = warnings_logged(caplog)
    assert warning.startswith("GeoIP lookup in ")


def test_unsupported_database_type(tmp_path, settings, caplog):
    write_database(tmp_path / "GeoLite2-City.mmdb", "GeoLite2-ASN", {"81.2.69.0/24": {"autonomous_system_number": 1}})
    settings.GEOIP_PATH = str(tmp_path)
    for _ in range(3):
        assert geoip.location_info(SWEDEN_IP) is None
    assert warnings_logged(caplog) == [
        f"{tmp_path / 'GeoLite2-City.mmdb'} is a GeoLite2-ASN database, not a city or country one."
    ]


def test_reader_is_reused(geoip_dir, opened):
    for ip in [SWEDEN_IP, FRANCE_IP, IRAN_IP, UNKNOWN_IP, SWEDEN_IP]:
        geoip.location_info(ip)
    assert opened == [str(geoip_dir / "GeoLite2-City.mmdb")]
    assert geoip._database() is geoip._database()


def test_reader_is_shared_between_threads(geoip_dir, opened):
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(geoip.location_info, [SWEDEN_IP] * 200))
    assert all(geoip.describe(result) == "Linköping, Sweden" for result in results)
    assert len(opened) == 1


def test_reader_is_reopened_when_the_file_is_replaced(geoip_dir, opened):
    city = geoip_dir / "GeoLite2-City.mmdb"
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"
    before = geoip._database()

    # What download_geoip_db does: a new file moved over the old one.
    os.replace(write_country(geoip_dir, "new.mmdb"), city)
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Sweden"
    assert geoip._database() is not before
    assert opened == [str(city), str(city)]
    # ...and then not again.
    geoip.location_info(SWEDEN_IP)
    assert len(opened) == 2


def test_settings_changes_are_seen(geoip_dir, settings, tmp_path):
    # The settings are kept once read, and forgotten on Django's setting_changed signal, which override_settings and
    # the settings fixture send when they set a value (not when pytest-django deletes one).
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Linköping, Sweden"
    settings.GEOIP_PATH = str(write_country(tmp_path / "other").parent)
    assert geoip.describe(geoip.location_info(SWEDEN_IP)) == "Sweden"
    settings.GEOIP_COUNTRY = "missing.mmdb"
    assert geoip.location_info(SWEDEN_IP) is None
    settings.GEOIP_PATH = None
    assert geoip.location_info(SWEDEN_IP) is None


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (None, None),
        ({}, None),
        ({"city": "Linköping", "country_name": "Sweden"}, "Linköping, Sweden"),
        ({"city": None, "country_name": "Sweden"}, "Sweden"),
        ({"city": "", "country_name": "Sweden"}, "Sweden"),
        ({"city": "Linköping", "country_name": None}, None),
    ],
)
def test_describe(info, expected):
    assert geoip.describe(info) == expected


def test_session_location(geoip_dir):
    session = Session(ip=SWEDEN_IP)
    assert session.location == "Linköping, Sweden"
    assert session.location_info is not None
    assert session.location_info["country_code"] == "SE"


def test_session_without_ip(geoip_dir):
    session = Session(ip=None)
    assert session.location is None
    assert session.location_info is None
