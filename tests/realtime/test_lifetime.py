"""Connection lifetime through real gateways: max age (4002), idle (4003), 1009, shutdown (1001)."""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
from collections.abc import Callable

from tests.realtime.conftest import close_code, gateway_process, next_json, open_socket
from tests.support.gateway_server import run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push


def test_a_connection_older_than_the_maximum_age_is_closed_with_4002(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with (
        run_gateway(make_settings(max_connection_age=1)) as gateway,
        open_socket(gateway.ws_url, tokens.issue()[0]) as ws,
    ):
        assert close_code(ws, timeout=5) == 4002
        assert ws.close_reason == "reauthenticate"


def test_a_message_over_the_size_limit_closes_with_1009(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with (
        run_gateway(make_settings(max_message_size=1024)) as gateway,
        open_socket(gateway.ws_url, tokens.issue()[0]) as ws,
    ):
        ws.send("x" * 1025)
        assert close_code(ws) == 1009


class SilentClient:
    """A WebSocket client on a raw socket that never answers a ping."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, "connection closed without a close frame"
            data += chunk
        return data

    def frames_until_close(self) -> tuple[list[int], int]:
        """The opcodes received, and the close code."""
        opcodes = []
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read(2))
            payload = self._read(length)
            opcodes.append(first & 0x0F)
            if first & 0x0F == 0x8:
                return opcodes, struct.unpack(">H", payload[:2])[0]

    def close(self) -> None:
        self.sock.close()


def test_a_client_that_answers_no_ping_is_closed_with_4003_and_a_live_one_stays(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    settings = make_settings(ping_interval=1, ping_timeout=1)
    with (
        run_gateway(settings) as gateway,
        open_socket(gateway.ws_url, tokens.issue(subject="alive")[0]) as alive,
    ):
        silent = SilentClient(gateway.port, tokens.issue(subject="silent")[0])
        try:
            opcodes, code = silent.frames_until_close()
        finally:
            silent.close()
        assert code == 4003
        assert 0x9 in opcodes  # it was pinged first
        # The websockets client answers pings: it is still connected and served.
        publish_push(tokens.redis, "wsauth:", "alive", "still here")
        assert next_json(alive)["data"] == "still here"


def test_sigterm_closes_every_connection_of_a_gateway_process_with_1001(
    settings: Settings, tokens: Tokens
) -> None:
    with gateway_process(settings) as gateway, contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(open_socket(gateway.url, tokens.issue()[0])) for _ in range(3)
        ]
        gateway.process.send_signal(signal.SIGTERM)
        assert [close_code(ws, timeout=10) for ws in sockets] == [1001, 1001, 1001]
        assert gateway.process.wait(timeout=15) == 0
        _, stderr = gateway.process.communicate()
    assert "Traceback" not in stderr
