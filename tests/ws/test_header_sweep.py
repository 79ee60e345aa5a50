"""The gateway's header timeout is the client's, not a saturated server's (ws/server.py).

In a reconnect storm the gateway's loop may be behind: a request head can wait
in the socket, or be read and not yet parsed, past ``WSAUTH_HEADER_TIMEOUT``.
Closing such a connection made the client come back later (bench/results/
resume-storm-10000.md saw 6,030 such closes among 10,000 resumes) and could
spend a ticket on a connection already closed. A client that sends nothing is
still closed (tests/security/test_tornado_views.py).
"""

from __future__ import annotations

import asyncio
import socket

from wsauth.ws.server import _HeadStream, _server_is_late

HEAD = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _pair() -> tuple[_HeadStream, socket.socket]:
    server_side, client_side = socket.socketpair()
    stream = _HeadStream(server_side)
    stream.reading_head = True
    return stream, client_side


def test_a_silent_client_is_late_itself() -> None:
    async def scenario() -> bool:
        stream, client = _pair()
        pending = stream.read_until_regex(b"\r?\n\r?\n")
        try:
            return _server_is_late(stream)
        finally:
            stream.close()
            client.close()
            pending.cancel()

    assert asyncio.run(scenario()) is False


def test_bytes_waiting_in_the_socket_mean_the_server_is_late() -> None:
    async def scenario() -> bool:
        stream, client = _pair()
        pending = stream.read_until_regex(b"\r?\n\r?\n")
        client.sendall(HEAD[:10])  # arrived; the loop has not read it yet
        try:
            return _server_is_late(stream)
        finally:
            stream.close()
            client.close()
            pending.cancel()

    assert asyncio.run(scenario()) is True


def test_a_head_read_but_not_yet_parsed_means_the_server_is_late() -> None:
    async def scenario() -> tuple[bool, bool]:
        stream, client = _pair()
        pending = stream.read_until_regex(b"\r?\n\r?\n")
        client.sendall(HEAD)
        await pending  # Tornado's read is done; the request would start next
        try:
            return _server_is_late(stream), stream.reading()
        finally:
            stream.close()
            client.close()

    assert asyncio.run(scenario()) == (True, False)


def test_a_parsed_head_or_a_closed_stream_is_never_swept() -> None:
    async def scenario() -> tuple[bool, bool]:
        stream, client = _pair()
        stream.reading_head = False
        parsed = _server_is_late(stream)
        stream.reading_head = True
        stream.close()
        client.close()
        return parsed, _server_is_late(stream)

    assert asyncio.run(scenario()) == (False, False)
