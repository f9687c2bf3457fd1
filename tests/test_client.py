"""Client input as it reaches the store: addresses validated (resolved behind trusted proxies), user agents bounded."""

from __future__ import annotations

import ipaddress

import pytest

from qsessions.client import (
    MAX_FORWARDED_ENTRIES,
    anonymize_ip,
    clean_ip,
    clean_user_agent,
    forwarded_ip,
    parse_network,
    parse_networks,
)
from qsessions.conf import conf
from qsessions.models import Session
from tests.testapp.client_ip import cf_connecting_ip, not_an_address


@pytest.mark.parametrize(
    "value",
    [
        "1.2.3.4",
        "255.255.255.255",
        "0.0.0.0",
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        " 1.2.3.4",
        "1.2.3.4\n",
        "1.2.3.4\x00",
        "\u0661.\u0662.\u0663.\u0664",  # Arabic-Indic digits
        "0x7f.0.0.1",
        "1e1.1.1.1",
        "",
        "::1",
        "2001:DB8::1",
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
        "1:2:3:4:5:6:7:8:9",
        "unix:/tmp/socket",
    ],
)
def test_clean_ip_agrees_with_ipaddress(value):
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        expected = None
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            expected = None
        elif isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            expected = str(address.ipv4_mapped)
        else:
            expected = str(address)
    assert clean_ip(value) == expected


@pytest.mark.parametrize("value", [None, 127, b"1.2.3.4", ["1.2.3.4"], "1" * 46])
def test_clean_ip_rejects_non_addresses(value):
    assert clean_ip(value) is None


@pytest.mark.parametrize("value", [None, "", 42, b"Mozilla", "\x00"])
def test_clean_user_agent_empty(value):
    assert clean_user_agent(value) is None


def test_clean_user_agent_is_storable():
    assert clean_user_agent("a\x00b") == "ab"
    assert clean_user_agent("x" * 301) == "x" * 300
    assert clean_user_agent("\ud800" + "y") == "?y"


# Anonymisation: applied to addresses clean_ip already gave.


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.160", "81.2.69.0"),
        ("10.0.0.0", "10.0.0.0"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::"),
        ("2001:db8::1", "2001:db8::"),
        ("::1", "::"),
    ],
)
def test_anonymize_ip(ip, expected):
    assert anonymize_ip(ip) == expected


# Networks of trusted proxies.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3", "10.1.2.3/32"),
        (" 10.1.2.3/24 ", "10.1.2.0/24"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:10.1.2.3", "10.1.2.3/32"),
        ("10.0.0.0/33", None),
        ("proxy.internal", None),
        ("", None),
        (None, None),
        (167772160, None),
    ],
)
def test_parse_network(value, expected):
    network = parse_network(value)
    assert (None if network is None else str(network)) == expected


def test_parse_networks_leaves_out_bad_entries():
    assert parse_networks(["10.0.0.0/8", "nope", "::1"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


# The client's address behind trusted proxies.

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ff::/48"])


def _resolve(rf, remote_addr: str | None, forwarded_for: str | None = None, **meta: str) -> str | None:
    request = rf.get("/", **meta)
    if remote_addr is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote_addr
    if forwarded_for is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return forwarded_ip(request, PROXIES)


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        # One proxy: the address it appended.
        ("10.0.0.1", "81.2.69.160", "81.2.69.160"),
        # What the client sent is left of that, and ignored.
        ("10.0.0.1", "6.6.6.6, 81.2.69.160", "81.2.69.160"),
        ("10.0.0.1", "garbage, 81.2.69.160", "81.2.69.160"),
        # Several layers of proxies, and a spoofed entry that claims to be one.
        ("10.0.0.1", "10.9.9.9, 81.2.69.160, 10.0.0.3, 10.0.0.2", "81.2.69.160"),
        # Two headers, joined as a WSGI server (", ") or Django's ASGI handler (",") joins them.
        ("10.0.0.1", "6.6.6.6, 81.2.69.160,10.0.0.2", "81.2.69.160"),
        # IPv6 proxies and clients, and IPv4 clients seen through IPv6 sockets.
        ("2001:db8:ff::1", "2001:db8:1::7, 2001:db8:ff::2", "2001:db8:1::7"),
        ("::ffff:10.0.0.1", "::ffff:81.2.69.160", "81.2.69.160"),
        ("2001:db8:ff::1", "81.2.69.160", "81.2.69.160"),
        # Every address is a proxy's: the request started inside, at the left-most.
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        ("10.0.0.1", None, "10.0.0.1"),
        # Where the client should be there is no address: there is none, not the proxy's nor one further left.
        ("10.0.0.1", "81.2.69.160, garbage", None),
        ("10.0.0.1", "81.2.69.160, 10.0.0.2, unknown, 10.0.0.3", None),
        ("10.0.0.1", "81.2.69.160,", None),
        ("10.0.0.1", "", None),
        ("10.0.0.1", " ", None),
        ("10.0.0.1", "81.2.69.160:4711", None),
        ("10.0.0.1", "[2001:db8::1]", None),
        ("10.0.0.1", "fe80::1%eth0", None),
        ("10.0.0.1", "81.2.69.160\x00", None),
        # Not from a trusted proxy: the header is anyone's, REMOTE_ADDR stands (and is validated later).
        ("81.2.69.160", "10.0.0.2", "81.2.69.160"),
        ("192.168.1.1", "81.2.69.160", "192.168.1.1"),
        ("garbage", "81.2.69.160", "garbage"),
        ("", "81.2.69.160", ""),
        (None, "81.2.69.160", None),
    ],
)
def test_forwarded_ip(rf, remote_addr, forwarded_for, expected):
    assert _resolve(rf, remote_addr, forwarded_for) == expected


@pytest.mark.parametrize("header", ["HTTP_X_REAL_IP", "HTTP_FORWARDED", "HTTP_CF_CONNECTING_IP", "HTTP_TRUE_CLIENT_IP"])
def test_other_headers_are_ignored_behind_proxies(rf, header):
    assert _resolve(rf, "10.0.0.1", "81.2.69.160", **{header: "6.6.6.6"}) == "81.2.69.160"
    assert _resolve(rf, "10.0.0.1", None, **{header: "6.6.6.6"}) == "10.0.0.1"


def test_huge_header_costs_a_bounded_look(rf):
    proxies = ", ".join(["10.0.0.2"] * (MAX_FORWARDED_ENTRIES - 1))
    assert _resolve(rf, "10.0.0.1", f"{'6.6.6.6, ' * 100_000}81.2.69.160, {proxies}") == "81.2.69.160"
    assert _resolve(rf, "10.0.0.1", f"{'x' * 1_000_000}, 81.2.69.160") == "81.2.69.160"
    # More proxies than are looked at: the client is beyond the bound, so unknown.
    assert _resolve(rf, "10.0.0.1", f"81.2.69.160, {proxies}, 10.0.0.2") is None
    assert _resolve(rf, "10.0.0.1", proxies) == "10.0.0.2"


@pytest.mark.django_db
@pytest.mark.parametrize(("ip", "stored"), [("81.2.69.160", "81.2.69.0"), ("::ffff:81.2.69.160", "81.2.69.0")])
def test_store_outside_a_request_is_anonymized(engine, settings, ip, stored):
    settings.QSESSIONS_IP_ANONYMIZE = True
    store = engine(ip=ip)
    store["a"] = 1
    store.save()
    assert Session.objects.get(pk=store.session_key).ip == stored


# Settings: read once, forgotten when they change.


def test_client_ip_is_remote_addr_by_default():
    assert conf.CLIENT_IP is None


def test_trusted_proxies_are_parsed_once(settings):
    settings.QSESSIONS_TRUSTED_PROXIES = ["10.0.0.0/8", "not a network"]
    resolve = conf.CLIENT_IP
    assert resolve is conf.CLIENT_IP
    assert resolve.keywords == {"networks": (ipaddress.ip_network("10.0.0.0/8"),)}
    settings.QSESSIONS_TRUSTED_PROXIES = ["192.168.0.0/16"]
    assert conf.CLIENT_IP.keywords == {"networks": (ipaddress.ip_network("192.168.0.0/16"),)}
    settings.QSESSIONS_TRUSTED_PROXIES = "10.0.0.0/8"
    assert conf.CLIENT_IP is None
    settings.QSESSIONS_TRUSTED_PROXIES = None
    assert conf.CLIENT_IP is None


def test_client_ip_function_is_imported_once(settings):
    settings.QSESSIONS_CLIENT_IP = "tests.testapp.client_ip.cf_connecting_ip"
    assert conf.CLIENT_IP is cf_connecting_ip
    settings.QSESSIONS_CLIENT_IP = "tests.testapp.client_ip.not_an_address"
    assert conf.CLIENT_IP is not_an_address
    settings.QSESSIONS_CLIENT_IP = None
    assert conf.CLIENT_IP is None


def test_ip_anonymize_follows_the_setting(settings):
    assert conf.IP_ANONYMIZE is False
    settings.QSESSIONS_IP_ANONYMIZE = True
    assert conf.IP_ANONYMIZE is True
