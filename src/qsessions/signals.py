"""Signals a site can connect to, for example to email a user about a sign-in from a new device.

Every signal is sent with ``sender=qsessions.models.Session``. Receivers get keyword arguments only; none of them
is a session key (a key is a credential): a session is named by its ``public_id``.
"""

from django.dispatch import Signal

#: A user signed in, which gave them a new session. Arguments: ``user``, ``request``, and ``session``: an unsaved
#: ``Session`` describing it (``public_id``, ``ip``, ``user_agent``, ``device``, ``location``, ``created_at``,
#: ``expire_date``). Sent from Django's ``user_logged_in``, so it runs when ``login()``/``alogin()`` does.
session_created = Signal()

#: A session was used from another IP address or user agent than the one recorded, and the new one is now recorded.
#: Arguments: ``session_id`` (the ``public_id``), ``user_id`` (``None`` for an anonymous session), ``old_ip``,
#: ``old_user_agent``, ``ip``, ``user_agent``. Sent once the response is ready, outside the view's transaction.
session_client_changed = Signal()

#: Sessions were ended by the functions of ``qsessions.revoke`` (the pages, the API and the policies use them).
#: Arguments: ``user``, ``session_ids`` (their ``public_id`` values), ``reason`` (``"revoked"``, ``"others"``,
#: ``"all"``, ``"limit"``, ``"password_change"`` or ``"user_deleted"``) and ``request`` (``None`` outside a request).
session_revoked = Signal()
