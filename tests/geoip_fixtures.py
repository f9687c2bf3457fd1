"""Small GeoLite2-like databases, written with ``mmdb_writer``, for the GeoIP tests.

The records follow the layout of MaxMind's City and Country databases, so ``geoip2.database.Reader`` reads them as
it reads the real ones. Only a few networks are in them:

* ``81.2.69.0/24``: Linköping, Sweden, with every field filled in;
* ``2.16.0.0/16``: France, without a city;
* ``2001:db8::/32``: Tehran, Iran (the IPv6 documentation prefix).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

SWEDEN_IP = "81.2.69.1"
FRANCE_IP = "2.16.1.1"
IRAN_IP = "2001:db8::1"
UNKNOWN_IP = "10.0.0.1"

EUROPE = {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe", "de": "Europa"}}
ASIA = {"code": "AS", "geoname_id": 6255147, "names": {"en": "Asia", "de": "Asien"}}
SWEDEN = {"geoname_id": 2661886, "is_in_european_union": True, "iso_code": "SE", "names": {"en": "Sweden"}}
FRANCE = {"geoname_id": 3017382, "is_in_european_union": True, "iso_code": "FR", "names": {"en": "France"}}
IRAN = {"geoname_id": 130758, "iso_code": "IR", "names": {"en": "Iran"}}

COUNTRY_RECORDS: dict[str, dict[str, Any]] = {
    "81.2.69.0/24": {"continent": EUROPE, "country": SWEDEN, "registered_country": SWEDEN},
    "2.16.0.0/16": {"continent": EUROPE, "country": FRANCE, "registered_country": FRANCE},
    "2001:db8::/32": {"continent": ASIA, "country": IRAN, "registered_country": IRAN},
}

CITY_RECORDS: dict[str, dict[str, Any]] = {
    "81.2.69.0/24": {
        **COUNTRY_RECORDS["81.2.69.0/24"],
        "city": {"geoname_id": 2694762, "names": {"en": "Linköping", "de": "Linköping"}},
        "location": {
            "accuracy_radius": 20,
            "latitude": 58.4167,
            "longitude": 15.6167,
            "time_zone": "Europe/Stockholm",
        },
        "postal": {"code": "582 22"},
        "subdivisions": [{"geoname_id": 2685867, "iso_code": "E", "names": {"en": "Östergötland County"}}],
    },
    "2.16.0.0/16": {
        **COUNTRY_RECORDS["2.16.0.0/16"],
        "location": {"accuracy_radius": 500, "latitude": 48.8582, "longitude": 2.3387, "time_zone": "Europe/Paris"},
    },
    "2001:db8::/32": {
        **COUNTRY_RECORDS["2001:db8::/32"],
        "city": {"geoname_id": 112931, "names": {"en": "Tehran"}},
        "location": {"accuracy_radius": 100, "latitude": 35.6944, "longitude": 51.4215, "time_zone": "Asia/Tehran"},
        "subdivisions": [{"geoname_id": 110791, "iso_code": "23", "names": {"en": "Tehran"}}],
    },
}


def write_database(path: Path, database_type: str, records: dict[str, dict[str, Any]]) -> Path:
    """An IPv6 database holding IPv4 networks too, as MaxMind's are."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description="qsessions test data",
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path


def write_city(directory: Path, name: str = "GeoLite2-City.mmdb") -> Path:
    return write_database(directory / name, "GeoLite2-City", CITY_RECORDS)


def write_country(directory: Path, name: str = "GeoLite2-Country.mmdb") -> Path:
    return write_database(directory / name, "GeoLite2-Country", COUNTRY_RECORDS)


def database_bytes(edition: str, tmp_dir: Path) -> bytes:
    """The test database of an edition (``GeoLite2-City`` or ``GeoLite2-Country``), as bytes."""
    write = write_city if edition == "GeoLite2-City" else write_country
    return write(tmp_dir, f"{edition}.build.mmdb").read_bytes()


def make_archive(edition: str, database: bytes | None, date: str = "20260101") -> bytes:
    """A ``.tar.gz`` laid out like MaxMind's: ``GeoLite2-City_20260101/GeoLite2-City.mmdb`` and its text files.

    Without ``database``, the archive holds only the text files.
    """
    files = {"COPYRIGHT.txt": b"Test data.\n", "LICENSE.txt": b"Test data, no license.\n"}
    if database is not None:
        files[f"{edition}.mmdb"] = database
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        folder = tarfile.TarInfo(f"{edition}_{date}")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        archive.addfile(folder)
        for name, content in files.items():
            member = tarfile.TarInfo(f"{edition}_{date}/{name}")
            member.size = len(content)
            member.mode = 0o644
            archive.addfile(member, io.BytesIO(content))
    return buffer.getvalue()
