"""Where wsauth's view of a handshake could differ from Tornado's: refused before the GETDEL.

Tornado parses the request (its header parser strips only space and tab,
keeps ``\\xa0`` and other latin-1 bytes, joins repeated headers with a comma),
then ``WebSocketHandler.get`` checks Upgrade, Connection, Origin and the
version and, during the upgrade, decodes ``Sec-WebSocket-Extensions``. Each
request here is one that wsauth once accepted (and so spent the token) while
Tornado then refused it or failed: each must now be refused by wsauth's own
checks, with the token's jti still in Redis, one ``reason=`` line, no token in
any log line and no traceback.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import pytest

from tests.security.conftest import ORIGIN, Probe
from tests.security.support import (
    Minter,
    build_request,
    exchange,
    offer,
    wait_for,
)

NBSP = "\xa0"  # latin-1 no-break space: whitespace to str.strip(), not to HTTP
NEL = "\x85"  # latin-1 next line: the same


def _refused_raw(
    probe: Probe, minter: Minter, request: bytes, status: int, code: str, token: str, jti: str
) -> None:
    """Send raw bytes; the answer is ``status``/``code`` and nothing touched Redis."""
    with probe.watch() as seen:
        answer = exchange(probe.gateway.port, request)
    assert (answer.status, answer.error) == (status, code), answer
    assert seen.commands == {}, seen.commands
    assert seen.dbsize_change == 0
    assert minter.recorded(jti), "a refused request consumed the jti"
    probe.log.expect_refusal(code, token)


# --- non-ASCII whitespace and other characters ---------------------------------------------

BENT_VALUES: dict[str, tuple[str, str]] = {
    "upgrade-nbsp": ("Upgrade", f"websocket{NBSP}"),
    "upgrade-nel": ("Upgrade", f"websocket{NEL}"),
    "upgrade-latin1-letter": ("Upgrade", "websocke\xf4"),
    "version-nbsp": ("Sec-WebSocket-Version", f"13{NBSP}"),
    "version-leading-nel": ("Sec-WebSocket-Version", f"{NEL}13"),
    "connection-nbsp": ("Connection", f"Upgrade{NBSP}"),
    "key-nbsp": ("Sec-WebSocket-Key", f"dGhlIHNhbXBsZSBub25jZQ=={NBSP}"),
}


@pytest.mark.parametrize("case", sorted(BENT_VALUES))
def test_a_handshake_header_with_non_ascii_whitespace_is_refused_before_the_token_is_spent(
    probe: Probe, minter: Minter, case: str
) -> None:
    # str.strip() removed \xa0 and \x85, Tornado does not: it then refused the upgrade
    # (400 or 426) after wsauth had spent the token.
    name, value = BENT_VALUES[case]
    token, jti = minter.issue()
    request = build_request([("Authorization", f"Bearer {token}")])
    lines = [
        line
        for line in request.decode("latin-1").split("\r\n")
        if not line.lower().startswith(name.lower() + ":")
    ]
    lines.insert(1, f"{name}: {value}")
    _refused_raw(
        probe,
        minter,
        "\r\n".join(lines).encode("latin-1"),
        400,
        "bad_request",
        token,
        jti,
    )


@pytest.mark.parametrize(
    "separator", [NBSP, NEL, "\t", " \t"], ids=["nbsp", "nel", "tab", "sp-tab"]
)
def test_a_bearer_scheme_separated_by_anything_but_spaces_is_refused(
    probe: Probe, minter: Minter, separator: str
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Authorization", f"Bearer{separator}{token}")],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


@pytest.mark.parametrize("character", [NBSP, NEL, "\xe9"], ids=["nbsp", "nel", "latin1-letter"])
def test_a_subprotocol_header_with_a_non_ascii_character_is_refused(
    probe: Probe, minter: Minter, character: str
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Sec-WebSocket-Protocol", f"wsauth{character}, wsauth.bearer.{token}")],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


# --- Origin: the exact match the docs promise -----------------------------------------------

NOT_EXACTLY_THE_ORIGIN = [
    ORIGIN.upper(),
    "HTTPS://app.example.com",
    "https://APP.example.com",
    "https://app.Example.com",
    f"{ORIGIN}:443",
    f"{ORIGIN}{NBSP}",
    f"{NBSP}{ORIGIN}",
    f"{ORIGIN}{NEL}",
    f"{ORIGIN}\xff",
]


@pytest.mark.parametrize("origin", NOT_EXACTLY_THE_ORIGIN)
def test_an_origin_that_only_normalises_to_an_allowed_one_is_refused(
    probe: Probe, minter: Minter, origin: str
) -> None:
    token, jti = minter.issue()
    headers, _ = offer(token, "subprotocol")
    probe.refused(
        [("Origin", origin), *headers], 403, "origin_not_allowed", jtis=(jti,), secrets=(token,)
    )


# --- versions and bodies --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.2", "HTTP/1.9"])
def test_a_handshake_over_another_http_version_is_refused_before_the_token_is_spent(
    probe: Probe, minter: Minter, version: str
) -> None:
    token, jti = minter.issue()
    request = build_request([("Authorization", f"Bearer {token}")])
    request = request.replace(b" HTTP/1.1\r\n", f" {version}\r\n".encode(), 1)
    _refused_raw(probe, minter, request, 400, "bad_request", token, jti)


BODIES: dict[str, tuple[list[tuple[str, str]], bytes]] = {
    "content-length": ([("Content-Length", "5")], b"hello"),
    "content-length-zero": ([("Content-Length", "0")], b""),
    "chunked": ([("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"),
    "chunked-empty": ([("Transfer-Encoding", "chunked")], b"0\r\n\r\n"),
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_a_handshake_that_carries_a_body_is_refused_before_the_token_is_spent(
    probe: Probe, minter: Minter, case: str
) -> None:
    headers, body = BODIES[case]
    token, jti = minter.issue()
    request = build_request([("Authorization", f"Bearer {token}"), *headers]) + body
    _refused_raw(probe, minter, request, 400, "bad_request", token, jti)


# --- repeated headers (Tornado joins them with a comma) --------------------------------------

REPEATED = {
    "upgrade": ("Upgrade", "websocket"),
    "version": ("Sec-WebSocket-Version", "13"),
    "key": ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
}


@pytest.mark.parametrize("case", sorted(REPEATED))
def test_a_repeated_handshake_header_is_refused_before_the_token_is_spent(
    probe: Probe, minter: Minter, case: str
) -> None:
    name, value = REPEATED[case]
    token, jti = minter.issue()
    probe.refused(
        [(name, value), ("Authorization", f"Bearer {token}")],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


@pytest.mark.parametrize("host", ["evil.example", None], ids=["two-hosts", "nbsp-host"])
def test_two_host_headers_or_a_bent_host_are_refused_by_the_http_layer_untouched(
    probe: Probe, minter: Minter, host: str | None
) -> None:
    token, jti = minter.issue()
    request = build_request([("Authorization", f"Bearer {token}")])
    if host is None:
        request = request.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\xa0\r\n", 1)
    else:
        request = request.replace(b"\r\n\r\n", f"\r\nHost: {host}\r\n\r\n".encode(), 1)
    with probe.watch() as seen:
        answer = exchange(probe.gateway.port, request)
    assert answer.status == 400
    assert seen.commands == {}
    assert minter.recorded(jti)
    probe.log.expect_clean(token)


def test_a_folded_authorization_header_is_refused_by_the_http_layer_and_never_logged(
    probe: Probe, minter: Minter
) -> None:
    # obs-fold (RFC 9112 §5.2): a proxy may read the continuation as its own line.
    token, jti = minter.issue()
    answer, seen = probe.send([("Authorization", f"Bearer\r\n {token}")])
    assert answer.status == 400
    assert seen.commands == {}
    assert minter.recorded(jti)
    wait_for(
        lambda: [r for r in probe.log.records() if r.name.startswith("tornado")],
        what="the HTTP layer's log line",
    )
    probe.log.expect_clean(token)


# --- Sec-WebSocket-Extensions (decoded by Tornado during the upgrade) ------------------------

BAD_EXTENSIONS = [
    "x; b*=idna''%ff",  # Tornado's RFC 2231 decoding raised UnicodeError after the GETDEL
    "permessage-deflate; client_max_window_bits*=utf-8''15",
    "a;;b",
    "",
    "a b",
    f"permessage-deflate{NBSP}",
]


@pytest.mark.parametrize("value", BAD_EXTENSIONS)
def test_a_malformed_extensions_header_is_refused_before_the_token_is_spent(
    probe: Probe, minter: Minter, value: str
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Sec-WebSocket-Extensions", value), ("Authorization", f"Bearer {token}")],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


def test_the_extensions_a_browser_offers_are_accepted(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    probe.accepted(
        [
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            ("Authorization", f"Bearer {token}"),
        ],
        jti,
        token=token,
    )


# --- slow and oversized heads ----------------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float, *, trickle: bool) -> float | None:
    """Seconds until the server closed ``sock`` (None: still open after ``seconds``)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except TimeoutError:
            if trickle:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
        except OSError:
            return time.monotonic() - started
    return None


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "one-byte-at-a-time"])
def test_a_request_head_slower_than_the_header_timeout_is_closed_with_one_line(
    make_probe: Callable[..., contextlib.AbstractContextManager[Probe]],
    minter: Minter,
    trickle: bool,
) -> None:
    # The idle timeout stays long: the header timeout alone closes the slow client.
    with make_probe(header_timeout=1.0, idle_timeout=300) as probe:
        token, jti = minter.issue()
        with socket.create_connection(("127.0.0.1", probe.gateway.port), timeout=5) as slow:
            slow.sendall(f"GET /ws HTTP/1.1\r\nAuthorization: Bearer {token}\r\n".encode())
            elapsed = _closed_within(slow, 5.0, trickle=trickle)
        assert elapsed is not None, "the slow client was never closed"
        assert 0.8 <= elapsed <= 2.5, elapsed
        assert minter.recorded(jti)
        probe.log.expect_refusal("header_timeout", token)


def test_a_kept_alive_connection_gets_the_header_timeout_for_its_next_request_too(
    make_probe: Callable[..., contextlib.AbstractContextManager[Probe]],
) -> None:
    with make_probe(header_timeout=1.0, idle_timeout=300) as probe:
        with socket.create_connection(("127.0.0.1", probe.gateway.port), timeout=5) as sock:
            sock.sendall(build_request(method="GET", path="/healthz", websocket=False))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            elapsed = _closed_within(sock, 5.0, trickle=True)
        assert elapsed is not None and elapsed <= 2.5, elapsed
        probe.log.expect_refusal("header_timeout")


def test_a_request_head_over_the_cap_gets_431_and_one_line(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    padding = [(f"X-Pad-{i}", "p" * 1000) for i in range(17)]
    probe.refused(
        [("Authorization", f"Bearer {token}"), *padding],
        431,
        "headers_too_large",
        jtis=(jti,),
        secrets=(token,),
    )
