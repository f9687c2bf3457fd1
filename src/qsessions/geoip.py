"""Where an IP address is, from MaxMind's GeoIP2 / GeoLite2 databases.

The ``geoip2`` package is an optional extra, so it is imported only when a lookup needs it. The database is found
with Django's own settings (``GEOIP_PATH``, ``GEOIP_CITY``, ``GEOIP_COUNTRY``) and the rules of
``django.contrib.gis.geoip2.GeoIP2``, but each file is opened once and its reader shared by every call and thread.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qsessions.conf import geoip_files

if TYPE_CHECKING:
    from maxminddb.reader import Reader

logger = logging.getLogger(__name__)

#: One version of a file: ``os.replace`` gives it a new inode, a rewrite in place a new mtime or size.
Stamp = tuple[int, int, int]


@dataclass(frozen=True)
class _Database:
    path: str
    stamp: Stamp
    #: ``None`` when the file cannot be used, so that it is not tried again until it changes.
    reader: Reader | None
    is_city: bool = False


# Reentrant, because warnings are given while the lock is held to open a database.
_lock = threading.RLock()
#: File path -> that file, opened.
_databases: dict[str, _Database] = {}
#: ``(GEOIP_PATH, GEOIP_CITY, GEOIP_COUNTRY)`` -> the file they led to last time.
_resolved: dict[tuple[str, str, str], str] = {}
_warned: set[str] = set()


def location_info(ip: str | None) -> dict[str, Any] | None:
    """What the GeoIP database knows of ``ip``, with the keys of Django's ``GeoIP2.city()``.

    From a country database, the keys it cannot know (city, coordinates, region…) are ``None``. ``None`` without an
    address, a usable database, or an entry for the address; problems with the setup are logged, never raised.
    """
    if not ip:
        return None
    database = _database()
    if database is None or database.reader is None:
        return None

    try:
        # The raw record, not geoip2's model objects: building those took most of a lookup's time.
        record = database.reader.get(ip)
    except ValueError:
        # Not an address (the reader never resolves a host name, unlike Django's GeoIP2), or an IPv6 address looked
        # up in an IPv4-only database: as good as not found.
        return None
    except Exception as exc:
        # A database can be damaged beyond its header, which only shows when a lookup reaches the bad part.
        _warn_once(f"lookup:{database.path}:{database.stamp}", "GeoIP lookup in %s failed: %s", database.path, exc)
        return None
    if not isinstance(record, dict):
        return None
    return _city_dict(record) if database.is_city else _country_dict(record)


def describe(info: dict[str, Any] | None) -> str | None:
    """``"City, Country"``, ``"Country"`` or ``None``, from what ``location_info`` returned."""
    if not info or not info.get("country_name"):
        return None
    if info.get("city"):
        return f"{info['city']}, {info['country_name']}"
    return str(info["country_name"])


def _name(record: dict[str, Any]) -> str | None:
    # English names, as geoip2's models and Django's GeoIP2 give by default.
    return record.get("names", {}).get("en")  # type: ignore[no-any-return]


def _country_dict(record: dict[str, Any]) -> dict[str, Any]:
    continent, country = record.get("continent", {}), record.get("country", {})
    return {
        "accuracy_radius": None,
        "city": None,
        "continent_code": continent.get("code"),
        "continent_name": _name(continent),
        "country_code": country.get("iso_code"),
        "country_name": _name(country),
        "is_in_european_union": bool(country.get("is_in_european_union", False)),
        "latitude": None,
        "longitude": None,
        "metro_code": None,
        "postal_code": None,
        "region_code": None,
        "region_name": None,
        "time_zone": None,
        "dma_code": None,
        "region": None,
    }


def _city_dict(record: dict[str, Any]) -> dict[str, Any]:
    location = record.get("location", {})
    # The first subdivision is the largest one (a state, not a county), which is the one Django reports.
    region = (record.get("subdivisions") or [{}])[0]
    return {
        **_country_dict(record),
        "accuracy_radius": location.get("accuracy_radius"),
        "city": _name(record.get("city", {})),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "metro_code": location.get("metro_code"),
        "postal_code": record.get("postal", {}).get("code"),
        "region_code": region.get("iso_code"),
        "region_name": _name(region),
        "time_zone": location.get("time_zone"),
        "dma_code": location.get("metro_code"),
        "region": region.get("iso_code"),
    }


def _warn_once(problem: str, message: str, *args: object) -> None:
    # Lookups run for every session shown: a broken setup must not flood the logs.
    with _lock:
        if problem in _warned:
            return
        _warned.add(problem)
    logger.warning(message, *args)


def _stamp(path: str) -> Stamp | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _database() -> _Database | None:
    """The database the settings lead to, opened again when the file has changed since it was opened."""
    try:
        # geoip2 is the extra that brings maxminddb, whose reader is used directly.
        import geoip2  # noqa: F401
        from maxminddb import MODE_AUTO, open_database
    except ImportError:
        _warn_once("no-geoip2", "The geoip2 package is not installed: sessions have no location.")
        return None

    key = geoip_files()
    if key is None:
        _warn_once("no-path", "GEOIP_PATH is not set: sessions have no location.")
        return None

    # The usual case costs one stat: the file found last time is still the same file.
    path = _resolved.get(key)
    if path is not None:
        database = _databases.get(path)
        if database is not None and _stamp(path) == database.stamp:
            return database

    with _lock:
        # Look again from the start, as a download may have put a city database next to a country one.
        base, city, country = key
        for path in (base, os.path.join(base, city), os.path.join(base, country)):
            stamp = _stamp(path)
            if stamp is not None:
                break
        else:
            _resolved.pop(key, None)
            _warn_once(f"missing:{base}", "No GeoIP database at GEOIP_PATH %s: sessions have no location.", base)
            return None
        _resolved[key] = path
        database = _databases.get(path)
        if database is None or database.stamp != stamp:
            # The previous reader is not closed: another thread may be in the middle of a lookup with it. It closes
            # by itself once nothing refers to it.
            database = _databases[path] = _open(open_database, MODE_AUTO, path, stamp)
        return database


def _open(open_database: Callable[..., Reader], mode: int, path: str, stamp: Stamp) -> _Database:
    try:
        reader = open_database(path, mode=mode)
    except Exception as exc:
        _warn_once(f"unreadable:{path}:{stamp}", "Cannot read the GeoIP database %s: %s", path, exc)
        return _Database(path, stamp, None)
    database_type = reader.metadata().database_type
    if "City" not in database_type and "Country" not in database_type:
        reader.close()
        _warn_once(
            f"unsupported:{path}:{stamp}", "%s is a %s database, not a city or country one.", path, database_type
        )
        return _Database(path, stamp, None)
    return _Database(path, stamp, reader, is_city="City" in database_type)
