"""Who is the client? The peer address, or what trusted proxies say it is.

Pure: addresses and header values in, an address out. Both services apply the
same rule (the issuer to ``REMOTE_ADDR``, the gateway to the socket peer):

- The immediate peer is the client, unless it is in ``WSAUTH_TRUSTED_PROXIES``.
- When it is, ``X-Forwarded-For`` (every line, in order, as one list) is read
  from the right: each proxy appends the address it received the request from,
  so entries are skipped while they are trusted proxies too, and the first
  untrusted one is the client. Entries to its left were written by the client
  itself and are never believed.
- An entry that is not an IP address ends the walk: the last trusted hop is
  then the client (a proxy that writes garbage is not trusted further, and a
  forged entry can never choose someone else's bucket).

A spoofed ``X-Forwarded-For`` from an untrusted peer is therefore ignored, and
one from behind a trusted proxy can only add entries to the left of the
address the proxy appended, which are never read.

:func:`rate_key` turns the client address into the rate-limit bucket: IPv4 and
IPv4-mapped IPv6 addresses as themselves, other IPv6 addresses by their /64
(one host usually owns a whole /64, so a per-address limit would be none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

__all__ = ["client_address", "parse_address", "rate_key"]

# An X-Forwarded-For list longer than this is not walked further (a bounded cost).
MAX_HOPS = 32


def parse_address(text: str) -> Address | None:
    """An IP address from a peer or ``X-Forwarded-For`` entry, or None.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]`` and ``[::1]:80``;
    an IPv4-mapped IPv6 address becomes the IPv4 address.
    """
    value = text.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    if not value or len(value) > 45:
        return None
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]
) -> str:
    """The client's address as text: ``peer``, or the rightmost untrusted forwarded entry.

    ``forwarded_for`` is every ``X-Forwarded-For`` header line, in order.
    Returns ``"unknown"`` when the peer address is missing or unreadable (a
    Unix socket, a test client), so that such requests share one bucket.
    """
    address = parse_address(peer or "")
    if address is None:
        return "unknown"
    if not proxies or not _trusted(address, proxies):
        return str(address)
    entries: list[str] = []
    for line in forwarded_for:
        entries.extend(line.split(","))
    for entry in reversed(entries[-MAX_HOPS:]):
        hop = parse_address(entry)
        if hop is None:
            break
        address = hop
        if not _trusted(hop, proxies):
            break
    return str(address)


def rate_key(client: str) -> str:
    """The rate-limit bucket of a client address: itself, or its /64 for IPv6."""
    address = parse_address(client)
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return client
