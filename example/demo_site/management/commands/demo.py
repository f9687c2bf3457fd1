"""``manage.py demo``: migrate, create the demo accounts and their sessions on first run, then serve."""

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from qsessions.backends.cached_db import SessionStore

ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
    "Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1"
)
WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.2478.51"
)
MACOS = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"
LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"

#: The demo's GeoIP database: network -> (city, country, ISO code, continent, continent code). The networks are the
#: ones reserved for documentation, so no real address is ever placed anywhere.
CITIES = {
    "192.0.2.0/24": ("Stockholm", "Sweden", "SE", "Europe", "EU"),
    "198.51.100.0/24": ("São Paulo", "Brazil", "BR", "South America", "SA"),
    "203.0.113.0/24": ("Tokyo", "Japan", "JP", "Asia", "AS"),
    "2001:db8:1::/48": ("Tehran", "Iran", "IR", "Asia", "AS"),
    "2001:db8:2::/48": ("Seattle", "United States", "US", "North America", "NA"),
}

#: (username, password, superuser) -> sessions they already have: (user agent, IP, days since sign-in, hours since
#: last use).
ACCOUNTS = {
    ("alice", "alice", False): [
        (IPHONE, "192.0.2.10", 1, 0.3),
        (ANDROID, "2001:db8:1::42", 3, 2),
        (LINUX, "2001:db8:2::7", 0.5, 5),
        (WINDOWS, "198.51.100.23", 6, 40),
        (MACOS, "203.0.113.5", 12, 120),
    ],
    ("bob", "bob", False): [
        (IPHONE, "203.0.113.80", 2, 1),
        (WINDOWS, "2001:db8:2::99", 9, 30),
        (ANDROID, "198.51.100.4", 4, 50),
    ],
    ("admin", "admin", True): [
        (LINUX, "192.0.2.200", 5, 3),
        (MACOS, "2001:db8:2::1", 10, 200),
    ],
}


class Command(BaseCommand):
    help = "Prepare the demo database on first run, then start the development server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="Prepare the database and stop.")

    def handle(self, *args: Any, addrport: str, no_serve: bool, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        self._write_geoip_database(Path(settings.GEOIP_PATH) / "GeoLite2-City.mmdb")
        user_model = get_user_model()
        if not user_model.objects.filter(username="alice").exists():
            for (username, password, superuser), sessions in ACCOUNTS.items():
                create = user_model.objects.create_superuser if superuser else user_model.objects.create_user
                user = create(username, f"{username}@example.com", password)
                for user_agent, ip, days, hours in sessions:
                    self._seed_session(user, user_agent, ip, timedelta(days=days), timedelta(hours=hours))
            self.stdout.write("Created the demo accounts alice/alice, bob/bob and admin/admin, with their sessions.")
        if not no_serve:
            call_command("runserver", addrport)

    def _write_geoip_database(self, path: Path) -> None:
        """A tiny GeoLite2-City look-alike, so that the seeded sessions show where they are."""
        if path.exists():
            return
        try:
            from mmdb_writer import MMDBWriter
            from netaddr import IPSet
        except ImportError:
            self.stderr.write("mmdb-writer is not installed (pip install --group demo): sessions have no location.")
            return
        writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City", languages=["en"])
        for network, (city, country, iso_code, continent, continent_code) in CITIES.items():
            record = {
                "city": {"names": {"en": city}},
                "country": {"iso_code": iso_code, "names": {"en": country}},
                "continent": {"code": continent_code, "names": {"en": continent}},
            }
            writer.insert_network(IPSet([network]), record)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer.to_db_file(str(path))

    def _seed_session(self, user: Any, user_agent: str, ip: str, age: timedelta, idle: timedelta) -> None:
        store = SessionStore(user_agent=user_agent, ip=ip)
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        now = timezone.now()
        store.model.objects.filter(pk=store.session_key).update(
            created_at=now - age, updated_at=now - idle, last_activity=now - idle
        )
