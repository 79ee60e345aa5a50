"""Slow and oversized request heads at the issuer's own server (``wsauth issuer``).

werkzeug's development server waited forever for a request head and took
up to 100 header lines of 64 KiB. :mod:`wsauth.issuer.serving` closes a
connection whose head has not arrived within ``WSAUTH_HEADER_TIMEOUT`` (the
request is never handled, even if part of it arrived) and answers a head over
its cap with 431. (The gateway's side is in ``test_tornado_views.py``.)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.security.support import ServiceLog, exchange
from wsauth.issuer import create_app
from wsauth.issuer.serving import MAX_HEAD_BYTES, make_issuer_server
from wsauth.issuer.state import get_state
from wsauth.shared.core.config import Settings

HEADER_TIMEOUT = 1.0


@pytest.fixture
def issuer_port(make_settings: Callable[..., Settings]) -> Iterator[int]:
    """The issuer behind the server of ``wsauth issuer``, with a 1 s header timeout."""
    app = create_app(make_settings(header_timeout=HEADER_TIMEOUT))
    server = make_issuer_server("127.0.0.1", 0, app, header_timeout=HEADER_TIMEOUT)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        get_state(app).close()


def _closed_after(sock: socket.socket, *, within: float, trickle: bool) -> tuple[float, bytes]:
    started = time.monotonic()
    sock.settimeout(0.2)
    received = b""
    while time.monotonic() - started < within:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            if trickle:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "one-byte-at-a-time"])
def test_a_request_head_slower_than_the_header_timeout_is_closed_unhandled(
    issuer_port: int, redis_client: redis.Redis, service_log: ServiceLog, trickle: bool
) -> None:
    with socket.create_connection(("127.0.0.1", issuer_port), timeout=5) as slow:
        slow.sendall(b"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        elapsed, answer = _closed_after(slow, within=HEADER_TIMEOUT + 4, trickle=trickle)
    assert HEADER_TIMEOUT - 0.2 <= elapsed <= HEADER_TIMEOUT + 2.0, elapsed
    assert answer == b"", "the cut-short request was handled"
    assert redis_client.dbsize() == 0
    service_log.expect_refusal("header_timeout", logger="wsauth.issuer.access")


def test_a_slow_client_does_not_hold_up_an_honest_one(issuer_port: int) -> None:
    with socket.create_connection(("127.0.0.1", issuer_port), timeout=5) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        answer = exchange(issuer_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.status == 200
        assert time.monotonic() - started < HEADER_TIMEOUT


def test_a_request_head_over_the_cap_gets_431_with_a_reason_and_one_line(
    issuer_port: int, service_log: ServiceLog
) -> None:
    secret = "s3cr3t-cookie-value-" + "c" * 40
    padding = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(MAX_HEAD_BYTES // 1000 + 1))
    request = (
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {secret}\r\n{padding}\r\n"
    ).encode()
    answer = exchange(issuer_port, request)
    assert (answer.status, answer.error) == (431, "headers_too_large")
    service_log.expect_refusal("headers_too_large", secret, logger="wsauth.issuer.access")


def test_a_head_just_under_the_cap_is_served(issuer_port: int) -> None:
    padding = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(MAX_HEAD_BYTES // 1100))
    answer = exchange(
        issuer_port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{padding}\r\n".encode()
    )
    assert answer.status == 200


def test_a_malformed_request_line_is_a_json_400_that_never_quotes_the_request(
    issuer_port: int, service_log: ServiceLog
) -> None:
    secret = "token-in-the-request-line-" + "t" * 30
    answer = exchange(issuer_port, f"GET /?x={secret} HTTP/1.1 extra\r\n\r\n".encode())
    assert (answer.status, answer.error) == (400, "bad_request")
    service_log.expect_refusal("bad_request", secret, logger="wsauth.issuer.access")
