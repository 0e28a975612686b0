"""Whose forwarding headers count (server/auth/proxies.py): `server.trusted_proxies`."""

from __future__ import annotations

import pytest
from wsfan.auth.proxies import Header, TrustedProxies, check_networks
from wsfan.config import ConfigError, load_settings


def headers(**values: str) -> Header:
    named = {name.replace("_", "-").lower(): value for name, value in values.items()}
    return lambda name: named.get(name.lower())


@pytest.mark.parametrize(
    ("entries", "peer", "trusted"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["::1"], "::1", True),
        (["fd00::/8"], "fd12::1", True),
        (["127.0.0.1"], "::ffff:127.0.0.1", True),  # a dual-stack socket's IPv4 peer
        (["127.0.0.1"], "not an address", False),
        ([], "127.0.0.1", False),
    ],
)
def test_a_peer_is_trusted_when_an_address_or_block_lists_it(
    entries: list[str], peer: str, trusted: bool
) -> None:
    assert TrustedProxies(entries).trusts(peer) is trusted


def test_an_entry_that_is_no_address_is_refused() -> None:
    assert check_networks(["127.0.0.1", "10.0.0.0/8", "localhost"]) == "localhost"
    assert check_networks(["127.0.0.1", "::1"]) is None
    with pytest.raises(ValueError):
        TrustedProxies(["localhost"])


def test_settings_name_the_bad_entry() -> None:
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies.*'proxy\.local'"):
        load_settings(env={"WSFAN_SERVER__TRUSTED_PROXIES": '["proxy.local"]'})


def test_a_trusted_proxy_gives_the_clients_address_and_scheme() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    sent = headers(X_Forwarded_For="198.51.100.7, 203.0.113.5", X_Forwarded_Proto="https")
    assert proxies.client_address(sent, "127.0.0.1") == "203.0.113.5"
    assert proxies.scheme(sent, "127.0.0.1") == "https"


def test_anyone_else_gets_its_own_address_and_plain_http() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    sent = headers(X_Real_Ip="203.0.113.5", X_Forwarded_Proto="https")
    assert proxies.client_address(sent, "192.0.2.1") == "192.0.2.1"
    assert proxies.scheme(sent, "192.0.2.1") == "http"


@pytest.mark.parametrize(
    ("sent", "scheme"),
    [
        ({}, "http"),
        ({"X_Forwarded_Proto": "HTTPS"}, "https"),
        ({"X_Forwarded_Proto": "https, http"}, "http"),  # the last hop's word counts
        ({"X_Forwarded_Proto": "gopher"}, "http"),
        ({"X_Scheme": "https", "X_Forwarded_Proto": "http"}, "https"),  # as Tornado reads them
    ],
)
def test_the_scheme_is_the_last_forwarded_proto_when_it_is_http_or_https(
    sent: dict[str, str], scheme: str
) -> None:
    assert TrustedProxies(["127.0.0.1"]).scheme(headers(**sent), "127.0.0.1") == scheme
