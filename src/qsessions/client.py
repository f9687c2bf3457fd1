"""What the session store is told about the client: a validated IP address and a bounded user agent.

By default the client's address is ``REMOTE_ADDR``, the peer of the connection. ``X-Forwarded-For`` is read only
when that peer is a proxy the site trusts (``QSESSIONS_TRUSTED_PROXIES``): anyone can send the header, so trusting
it from anywhere would let every client choose the address its session records.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Length of the ``user_agent`` column; longer user agents are cut to fit.
USER_AGENT_MAX_LENGTH = 300

#: How many ``X-Forwarded-For`` entries are looked at, from the right: one per proxy layer, with room to spare. It
#: bounds the work a huge header costs; the client is never further left than the last trusted proxy's entry.
MAX_FORWARDED_ENTRIES = 16

#: IPv4 addresses seen through IPv6 sockets, as ``::ffff:a.b.c.d``.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


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


def anonymize_ip(ip: str) -> str:
    """Return a clean address (as ``clean_ip`` gives) without its host part: IPv4 to /24, IPv6 to /48.

    That is about what a coarse GeoIP lookup needs, and no longer names one household or device.
    """
    if ":" not in ip:
        return ip[: ip.rindex(".")] + ".0"
    return str(ipaddress.IPv6Network((ip, 48), strict=False).network_address)


def parse_network(value: object) -> Network | None:
    """Return ``value`` (``"10.0.0.0/8"``, ``"2001:db8::/32"``, one address) as a network, or ``None``.

    An IPv4-mapped IPv6 network is turned into the IPv4 network it maps, since ``clean_ip`` turns mapped client
    addresses into IPv4 ones.
    """
    if not isinstance(value, str):
        return None
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_networks(values: Iterable[object]) -> tuple[Network, ...]:
    """The networks among ``values``; entries that are not one are left out (the system checks report them)."""
    networks = (parse_network(value) for value in values)
    return tuple(network for network in networks if network is not None)


def _is_trusted(ip: str, networks: tuple[Network, ...]) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address in network for network in networks)


def forwarded_ip(request: HttpRequest, networks: tuple[Network, ...]) -> str | None:
    """The client's address behind the trusted proxies in ``networks``, or ``None`` where it cannot be known.

    Each proxy appends the address of its own peer to ``X-Forwarded-For``, so the entries right of the first
    untrusted one were written by trusted proxies, and everything left of it by someone we do not trust. The client
    is therefore the right-most entry outside ``networks``; a malformed entry there means that no trusted proxy
    vouches for an address, so there is none. When every entry is trusted, the request came from inside (a health
    check, an internal service) and its origin is the left-most. Several headers arrive joined by commas.
    """
    remote = request.META.get("REMOTE_ADDR")
    remote_ip = clean_ip(remote)
    if remote_ip is None or not _is_trusted(remote_ip, networks):
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR")
    if header is None:
        # The trusted proxy itself made the request.
        return remote_ip
    entries = header.rsplit(",", MAX_FORWARDED_ENTRIES)
    ip = None
    for entry in reversed(entries[-MAX_FORWARDED_ENTRIES:]):
        ip = clean_ip(entry.strip())
        if ip is None or not _is_trusted(ip, networks):
            return ip
    # Every entry looked at is trusted: the left-most is the origin, unless there are more than were looked at.
    return ip if len(entries) <= MAX_FORWARDED_ENTRIES else None
