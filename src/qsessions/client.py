"""What the session store is told about the client: a validated IP address and a bounded user agent."""

from __future__ import annotations

import ipaddress
import socket

#: Length of the ``user_agent`` column; longer user agents are cut to fit.
USER_AGENT_MAX_LENGTH = 300


def clean_ip(value: object) -> str | None:
    """Return ``value`` as a canonical IPv4/IPv6 address, or ``None`` when it is not one.

    Empty values, ``unix:`` socket paths, scoped addresses (``fe80::1%eth0``) and anything else that is not a
    plain address would either be rejected by the database or be meaningless, so they are dropped.
    """
    if not isinstance(value, str) or not value or len(value) > 45:
        return None
    if ":" not in value:
        # IPv4, the usual case on every request: the C library checks it in a fraction of ipaddress' time, and as
        # strictly (four decimal octets, no leading zeros).
        try:
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value))
        except (OSError, ValueError):
            return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        # An IPv4 client seen through a dual-stack socket: one client, one address, whichever socket it came in by.
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
    return str(address)


def clean_user_agent(value: object) -> str | None:
    """Return ``value`` cut to the column's length, with anything the database cannot hold removed."""
    if not isinstance(value, str) or not value:
        return None
    # NUL bytes are rejected by PostgreSQL, lone surrogates by every driver's encoder.
    value = value[: USER_AGENT_MAX_LENGTH * 2].replace("\x00", "")
    value = value.encode("utf-8", "replace").decode("utf-8")[:USER_AGENT_MAX_LENGTH]
    return value or None
