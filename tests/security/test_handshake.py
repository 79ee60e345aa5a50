"""Hostile opening handshakes: refused before the token is spent, over raw sockets.

The ``websockets`` client cannot send most of these (repeated headers, other
methods, broken values), so each request is written byte by byte.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import pytest

from tests.security.conftest import ORIGIN, Probe
from tests.security.support import (
    Minter,
    build_request,
    exchange,
    offer,
    read_answer,
    wait_for,
)

# --- Origin -----------------------------------------------------------------------------

ORIGIN_LOOKALIKES = [
    "https://app.example.com.evil.example",
    "https://evil-app.example.com",
    "https://evilapp.example.com",
    "https://app.example.co",
    "https://app.example.com.",
    "null",
    "",
    "http://app.example.com",
    "wss://app.example.com",
    "file://app.example.com",
    "https://app.example.com:8443",
    "https://app.example.com:443@evil.example",
    "https://evil.example#https://app.example.com",
    "https://app.example.com/",
    "https://app.example.com/path",
    "https://app.example.com?",
    "https://app.example.com, https://evil.example",
    "https://xn--app-exmple-5ob.com",
]


@pytest.mark.parametrize("origin", ORIGIN_LOOKALIKES)
def test_an_origin_lookalike_is_refused_and_the_token_not_spent(
    probe: Probe, minter: Minter, origin: str
) -> None:
    token, jti = minter.issue()
    headers, _ = offer(token, "subprotocol")
    probe.refused(
        [("Origin", origin), *headers], 403, "origin_not_allowed", jtis=(jti,), secrets=(token,)
    )


def test_two_origin_headers_are_refused_even_when_one_is_allowed(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    headers, _ = offer(token, "subprotocol")
    probe.refused(
        [("Origin", ORIGIN), ("Origin", "https://evil.example"), *headers],
        403,
        "origin_not_allowed",
        jtis=(jti,),
        secrets=(token,),
    )


@pytest.mark.parametrize("site", ["cross-site", "same-site", "garbage"])
def test_a_cross_site_fetch_without_origin_is_refused(
    probe: Probe, minter: Minter, site: str
) -> None:
    token, jti = minter.issue()
    headers, _ = offer(token, "subprotocol")
    probe.refused(
        [("Sec-Fetch-Site", site), *headers],
        403,
        "origin_not_allowed",
        jtis=(jti,),
        secrets=(token,),
    )


def test_the_allowed_origin_is_accepted_and_the_token_is_never_echoed(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    headers, _ = offer(token, "subprotocol")
    answer = probe.accepted([("Origin", ORIGIN), *headers], jti, token=token)
    assert answer.header("sec-websocket-protocol") == "wsauth"
    assert not any(token in value for _, value in answer.headers)


# --- one token, one place ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sources",
    [
        ("authorization", "query"),
        ("authorization", "subprotocol"),
        ("subprotocol", "query"),
        ("authorization", "subprotocol", "query"),
    ],
    ids="+".join,
)
def test_a_token_offered_in_two_places_is_refused_and_not_spent(
    probe: Probe, minter: Minter, sources: tuple[str, ...]
) -> None:
    token, jti = minter.issue()
    headers: list[tuple[str, str]] = []
    path = "/ws"
    for via in sources:
        more, where = offer(token, via)
        headers += more
        path = where if where != "/ws" else path
    probe.refused(headers, 400, "multiple_tokens", path=path, jtis=(jti,), secrets=(token,))


def test_two_different_tokens_in_two_places_are_refused_and_neither_spent(
    probe: Probe, minter: Minter
) -> None:
    first, first_jti = minter.issue()
    second, second_jti = minter.issue(sub="bob")
    probe.refused(
        [("Authorization", f"Bearer {first}")],
        400,
        "multiple_tokens",
        path=offer(second, "query")[1],
        jtis=(first_jti, second_jti),
        secrets=(first, second),
    )


def test_two_authorization_headers_are_refused(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    header = ("Authorization", f"Bearer {token}")
    probe.refused([header, header], 400, "multiple_tokens", jtis=(jti,), secrets=(token,))


def test_an_authorization_header_beside_a_basic_one_is_refused(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Authorization", "Basic dXNlcjpwYXNz"), ("Authorization", f"Bearer {token}")],
        400,
        "multiple_tokens",
        jtis=(jti,),
        secrets=(token,),
    )


def test_two_bearer_subprotocols_on_two_header_lines_are_refused(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    other, other_jti = minter.issue()
    probe.refused(
        [
            ("Sec-WebSocket-Protocol", f"wsauth, wsauth.bearer.{token}"),
            ("Sec-WebSocket-Protocol", f"wsauth.bearer.{other}"),
        ],
        400,
        "multiple_tokens",
        jtis=(jti, other_jti),
        secrets=(token, other),
    )


def test_two_bearer_subprotocols_on_one_header_line_are_refused(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Sec-WebSocket-Protocol", f"wsauth, wsauth.bearer.{token}, wsauth.bearer.{token}")],
        400,
        "multiple_tokens",
        jtis=(jti,),
        secrets=(token,),
    )


def test_ws_token_twice_in_the_query_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    probe.refused(
        [],
        400,
        "multiple_tokens",
        path=f"/ws?ws_token={token}&ws_token={token}",
        jtis=(jti,),
        secrets=(token,),
    )


def test_an_empty_ws_token_beside_a_real_one_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    probe.refused(
        [],
        400,
        "multiple_tokens",
        path=f"/ws?ws_token=&ws_token={token}",
        jtis=(jti,),
        secrets=(token,),
    )


def test_a_bearer_subprotocol_without_wsauth_is_refused(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Sec-WebSocket-Protocol", f"chat, wsauth.bearer.{token}")],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


def test_thousands_of_subprotocol_values_on_one_line_are_refused(
    probe: Probe, minter: Minter
) -> None:
    token, jti = minter.issue()
    values = ",".join(["x"] * 4000) + f", wsauth, wsauth.bearer.{token}"
    started = time.monotonic()
    probe.refused(
        [("Sec-WebSocket-Protocol", values)], 400, "bad_request", jtis=(jti,), secrets=(token,)
    )
    assert time.monotonic() - started < 2.0


def test_hundreds_of_subprotocol_header_lines_are_refused(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    lines = [("Sec-WebSocket-Protocol", f"p{i}") for i in range(400)]
    probe.refused(
        [*lines, ("Sec-WebSocket-Protocol", f"wsauth, wsauth.bearer.{token}")],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


# --- Authorization values ---------------------------------------------------------------

MALFORMED_BEARER: dict[str, Callable[[str], str]] = {
    "bearer-alone": lambda t: "Bearer",
    "two-credentials": lambda t: f"Bearer  {t} y",
    "credential-then-comma": lambda t: f"Bearer {t},",
    "quoted-credential": lambda t: f'Bearer "{t}"',
    "credential-with-a-parameter": lambda t: f'Bearer {t}, realm="x"',
    "padding-in-the-middle": lambda t: f"Bearer {t[:10]}={t[10:]}",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_BEARER))
def test_a_malformed_bearer_authorization_is_refused_as_a_bad_request(
    probe: Probe, minter: Minter, case: str
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Authorization", MALFORMED_BEARER[case](token))],
        400,
        "bad_request",
        jtis=(jti,),
        secrets=(token,),
    )


OTHER_SCHEMES: dict[str, Callable[[str], str]] = {
    "basic": lambda t: "Basic dXNlcjpwYXNz",
    "token-under-basic": lambda t: f"Basic {t}",
    "token-scheme": lambda t: f"Token {t}",
    "bearer-glued-with-equals": lambda t: f"Bearer={t}",
    "bearer-glued": lambda t: f"Bearer{t}",
    "empty": lambda t: "",
    "credential-only": lambda t: t,
}


@pytest.mark.parametrize("case", sorted(OTHER_SCHEMES))
def test_an_authorization_of_another_scheme_carries_no_token(
    probe: Probe, minter: Minter, case: str
) -> None:
    # Documented (wsauth.ws.handshake.extract_token): only the Bearer scheme carries a token here.
    token, jti = minter.issue()
    probe.refused(
        [("Authorization", OTHER_SCHEMES[case](token))],
        401,
        "token_missing",
        jtis=(jti,),
        secrets=(token,),
    )


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_in_any_case_is_accepted_as_rfc_7235_says(
    probe: Probe, minter: Minter, scheme: str
) -> None:
    token, jti = minter.issue()
    probe.accepted([("Authorization", f"{scheme} {token}")], jti, token=token)


def test_no_token_at_all_is_refused_with_a_bare_bearer_challenge(probe: Probe) -> None:
    answer = probe.refused([], 401, "token_missing")
    assert answer.header("www-authenticate") == "Bearer"


# --- method and protocol version ---------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
def test_a_method_other_than_get_is_refused_and_the_token_not_spent(
    probe: Probe, minter: Minter, method: str
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Authorization", f"Bearer {token}")],
        405,
        "method_not_allowed",
        method=method,
        jtis=(jti,),
        secrets=(token,),
    )


def test_head_is_refused_and_the_token_not_spent(probe: Probe, minter: Minter) -> None:
    token, jti = minter.issue()
    answer, seen = probe.send([("Authorization", f"Bearer {token}")], method="HEAD")
    assert answer.status == 405
    assert seen.commands == {}
    assert seen.dbsize_change == 0
    assert minter.recorded(jti)
    probe.log.expect_refusal("method_not_allowed", token)


@pytest.mark.parametrize("version", ["8", "12", "14", "", "13, 8", "13.0", "thirteen", None])
def test_a_wrong_websocket_version_is_refused_and_the_token_not_spent(
    probe: Probe, minter: Minter, version: str | None
) -> None:
    token, jti = minter.issue()
    probe.refused(
        [("Authorization", f"Bearer {token}")],
        400,
        "bad_request",
        version=version,
        jtis=(jti,),
        secrets=(token,),
    )


@pytest.mark.parametrize(
    "header",
    [("Upgrade", "h2c"), ("Connection", "keep-alive"), ("Sec-WebSocket-Key", "short")],
    ids=["upgrade", "connection", "key"],
)
def test_a_broken_upgrade_request_is_refused_and_the_token_not_spent(
    probe: Probe, minter: Minter, header: tuple[str, str]
) -> None:
    token, jti = minter.issue()
    request = build_request([("Authorization", f"Bearer {token}")])
    name, value = header
    lines = [
        f"{name}: {value}" if line.startswith(f"{name}:") else line
        for line in request.decode().split("\r\n")
    ]
    with probe.watch() as seen:
        answer = exchange(probe.gateway.port, "\r\n".join(lines).encode())
    assert (answer.status, answer.error) == (400, "bad_request")
    assert seen.commands == {}
    assert minter.recorded(jti)
    probe.log.expect_refusal("bad_request", token)


# --- the HTTP layer ------------------------------------------------------------------------


def wait_for_http_layer_line(probe: Probe) -> None:
    wait_for(
        lambda: [r for r in probe.log.records() if r.name.startswith("tornado")],
        what="the HTTP layer's log line",
    )


@pytest.mark.parametrize("character", ["\x00", "\x7f"], ids=["nul", "del"])
@pytest.mark.parametrize("via", ["authorization", "subprotocol"])
def test_a_control_character_after_the_token_never_puts_the_token_in_a_log(
    probe: Probe, minter: Minter, character: str, via: str
) -> None:
    # Tornado refuses the header line (a bare 400) before the gateway sees the request,
    # and logs why: that line must not quote the header value, which holds the token.
    token, jti = minter.issue()
    ((name, value),) = offer(token, via)[0]
    answer, seen = probe.send([(name, value + character)])
    assert answer.status == 400
    assert seen.commands == {}
    assert seen.dbsize_change == 0
    assert minter.recorded(jti)
    wait_for_http_layer_line(probe)
    probe.log.expect_clean(token)


# --- slow clients ------------------------------------------------------------------------


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "one-byte-at-a-time"])
def test_a_client_that_never_finishes_its_headers_is_closed_while_others_are_served(
    make_probe: Callable[..., contextlib.AbstractContextManager[Probe]],
    minter: Minter,
    trickle: bool,
) -> None:
    idle_timeout = 1
    with make_probe(idle_timeout=idle_timeout) as probe:
        token, jti = minter.issue()
        slow = socket.create_connection(("127.0.0.1", probe.gateway.port), timeout=5)
        started = time.monotonic()
        slow.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = threading.Event()

        def keep_sending() -> None:
            # Until the server closes the socket: recv sees EOF, or a send fails.
            slow.settimeout(0.2)
            while time.monotonic() - started < idle_timeout + 5:
                try:
                    if slow.recv(1) == b"":
                        break
                except TimeoutError:
                    if trickle:
                        with contextlib.suppress(OSError):
                            slow.sendall(b"X")
                    continue
                except OSError:
                    break
            closed.set()

        watcher = threading.Thread(target=keep_sending, name="slow-client")
        watcher.start()
        try:
            # Meanwhile, an honest client is served at once.
            probe.accepted(offer(token, "authorization")[0], jti, token=token)
            assert not closed.is_set()
            assert closed.wait(timeout=idle_timeout + 3), "the slow client was never closed"
            elapsed = time.monotonic() - started
        finally:
            watcher.join(timeout=10)
            slow.close()
        assert idle_timeout - 0.2 <= elapsed <= idle_timeout + 2.0, elapsed


def test_a_slow_client_does_not_delay_the_answer_to_a_fast_one(
    probe: Probe, minter: Minter
) -> None:
    with socket.create_connection(("127.0.0.1", probe.gateway.port), timeout=5) as slow:
        slow.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web")
        token, jti = minter.issue()
        started = time.monotonic()
        probe.accepted(offer(token, "authorization")[0], jti, token=token)
        assert time.monotonic() - started < 1.0
        slow.sendall(b"socket\r\n\r\n")
        answer = read_answer(slow)
    assert (answer.status, answer.error) == (400, "bad_request")
