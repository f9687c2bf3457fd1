"""Client input as it reaches the store: addresses validated, user agents bounded."""

from __future__ import annotations

import ipaddress

import pytest

from qsessions.client import clean_ip, clean_user_agent


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
