"""``manage.py demo``: migrate, create the demo accounts and their sessions on first run, then serve."""

from datetime import timedelta
from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from qsessions.backends.cached_db import SessionStore

#: Sessions alice already has when the demo starts: (user agent, IP, days since sign-in).
SEEDED_SESSIONS = [
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile "
        "Safari/537.36",
        "81.2.69.142",
        3,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1",
        "2001:db8::42",
        1,
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "89.160.20.112", 0),
]


class Command(BaseCommand):
    help = "Prepare the demo database on first run, then start the development server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="Prepare the database and stop.")

    def handle(self, *args: Any, addrport: str, no_serve: bool, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        user_model = get_user_model()
        if not user_model.objects.filter(username="alice").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", "admin")
            alice = user_model.objects.create_user("alice", "alice@example.com", "alice")
            for user_agent, ip, days in SEEDED_SESSIONS:
                self._seed_session(alice, user_agent, ip, days)
            self.stdout.write("Created the demo accounts alice/alice and admin/admin, and alice's other sessions.")
        if not no_serve:
            call_command("runserver", addrport)

    def _seed_session(self, user: Any, user_agent: str, ip: str, days: int) -> None:
        store = SessionStore(user_agent=user_agent, ip=ip)
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        created_at = timezone.now() - timedelta(days=days)
        store.model.objects.filter(pk=store.session_key).update(
            created_at=created_at, last_activity=created_at + timedelta(hours=days * 5)
        )
