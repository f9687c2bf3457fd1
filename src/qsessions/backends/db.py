from django.contrib.sessions.backends.db import SessionStore as DjangoDBStore

from qsessions.backends.base import QSessionStoreMixin


class SessionStore(QSessionStoreMixin, DjangoDBStore):
    """Database-backed sessions that know their user, IP, user agent and creation time."""
