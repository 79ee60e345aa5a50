"""shared/core/proxies.py: who the client is, from the peer and trusted proxies' X-Forwarded-For."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from wsauth.shared.core.proxies import client_address, parse_address, rate_key

PROXIES = (ip_network("10.0.0.0/8"), ip_network("2001:db8:ffff::/48"))


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_address("192.0.2.10", ["198.51.100.1"], ()) == "192.0.2.10"


def test_an_untrusted_peer_cannot_choose_its_address_with_x_forwarded_for() -> None:
    assert client_address("192.0.2.10", ["10.0.0.1, 198.51.100.1"], PROXIES) == "192.0.2.10"


def test_a_trusted_proxy_names_the_client_it_received_the_request_from() -> None:
    assert client_address("10.0.0.5", ["198.51.100.1"], PROXIES) == "198.51.100.1"


def test_the_rightmost_untrusted_entry_wins_over_what_the_client_wrote_to_its_left() -> None:
    forwarded = ["203.0.113.66, 198.51.100.1, 10.1.1.1"]
    assert client_address("10.0.0.5", forwarded, PROXIES) == "198.51.100.1"


def test_repeated_x_forwarded_for_lines_are_read_as_one_list_in_order() -> None:
    assert client_address("10.0.0.5", ["203.0.113.66", "198.51.100.1"], PROXIES) == "198.51.100.1"


def test_garbage_in_x_forwarded_for_stops_at_the_last_trusted_hop() -> None:
    assert client_address("10.0.0.5", ["198.51.100.1, not-an-ip"], PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.5", ["198.51.100.1, not-an-ip, 10.9.9.9"], PROXIES) == "10.9.9.9"


def test_a_chain_of_only_trusted_proxies_names_the_leftmost_one() -> None:
    assert client_address("10.0.0.5", ["10.0.0.7, 10.0.0.6"], PROXIES) == "10.0.0.7"


def test_a_missing_header_behind_a_trusted_proxy_leaves_the_proxy_as_the_client() -> None:
    assert client_address("10.0.0.5", [], PROXIES) == "10.0.0.5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
    ],
)
def test_addresses_are_read_with_ports_brackets_and_mapped_ipv4(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", ["", "unknown", "[::1", "1.2.3", "x" * 100, "_hidden"])
def test_anything_else_is_not_an_address(text: str) -> None:
    assert parse_address(text) is None


def test_ipv6_clients_share_a_bucket_per_64_and_ipv4_clients_have_their_own() -> None:
    assert (
        rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    )
    assert rate_key("192.0.2.1") == "192.0.2.1"


def test_an_unreadable_peer_gets_one_shared_bucket() -> None:
    assert client_address(None, ["198.51.100.1"], PROXIES) == "unknown"
