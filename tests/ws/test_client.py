"""ws/client.py and ws/cli.py against a real gateway and a stand-in issuer endpoint.

The stand-in answers ``POST /api/tokens`` like the issuer's JSON API does
(HTTP Basic in, ``{"token", "expires_in", "url"}`` out), minting with the test key
and recording the jti in the real Redis.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from websockets.sync.client import connect as ws_connect

from tests.support.gateway_server import GatewayHandle
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port
from wsauth.ws.cli import CONNECT_ATTEMPTS
from wsauth.ws.cli import connect as connect_command
from wsauth.ws.client import ClientError, connect, fetch_token

CLIENT_ID = "svc-reports"
CLIENT_SECRET = "s3cret-value-for-tests"


@pytest.fixture
def issuer_url(tokens: Tokens, gateway: GatewayHandle) -> Iterator[str]:
    class TokenEndpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.path != "/api/tokens":
                self._answer(404, {"error": "not_found"})
            elif self.headers.get("Authorization") != f"Basic {expected}":
                self._answer(401, {"error": "not_authenticated"})
            else:
                token, _ = tokens.issue(subject=f"client:{CLIENT_ID}")
                self._answer(200, {"token": token, "expires_in": 30, "url": gateway.ws_url})

        def _answer(self, status: int, document: dict[str, object]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_token_returns_the_issuer_answer(issuer_url: str, gateway: GatewayHandle) -> None:
    document = fetch_token(issuer_url, CLIENT_ID, CLIENT_SECRET)
    assert document["url"] == gateway.ws_url
    assert document["token"].count(".") == 2


def test_fetch_token_raises_the_issuer_error_code_on_refusal(issuer_url: str) -> None:
    with pytest.raises(ClientError) as caught:
        fetch_token(issuer_url, CLIENT_ID, "wrong")
    assert (caught.value.http_status, caught.value.error) == (401, "not_authenticated")


def test_fetch_token_refuses_a_non_http_url() -> None:
    with pytest.raises(ClientError):
        fetch_token("file:///etc/passwd", CLIENT_ID, CLIENT_SECRET)


def test_connect_yields_the_welcome_message(gateway: GatewayHandle, tokens: Tokens) -> None:
    token, _ = tokens.issue(subject="erin")

    async def first_message() -> str | bytes:
        connection = await connect(gateway.ws_url, token)
        async with connection:
            async for message in connection:
                return message
        raise AssertionError("no message")

    assert json.loads(asyncio.run(first_message())) == {"type": "welcome", "sub": "erin"}


def test_connect_raises_the_gateway_reason_code_on_refusal(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue(record=False)
    with pytest.raises(ClientError) as caught:
        asyncio.run(connect(gateway.ws_url, token))
    assert (caught.value.http_status, caught.value.error) == (401, "token_replayed")


def test_connect_command_prints_the_messages_as_json_lines(issuer_url: str) -> None:
    result = CliRunner().invoke(
        connect_command,
        ["--issuer", issuer_url, "--client-id", CLIENT_ID, "--count", "1"],
        env={"WSAUTH_CLIENT_SECRET": CLIENT_SECRET},
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f'{{"type":"welcome","sub":"client:{CLIENT_ID}"}}']


def test_connect_command_fails_with_one_line_and_status_2(issuer_url: str) -> None:
    result = CliRunner().invoke(
        connect_command,
        ["--issuer", issuer_url, "--client-id", CLIENT_ID, "--client-secret", "wrong"],
    )
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "not_authenticated" in result.output


def test_connect_command_gives_up_on_an_issuer_it_never_reached_and_names_its_url() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(
        connect_command,
        ["--issuer", issuer, "--client-id", CLIENT_ID],
        env={"WSAUTH_CLIENT_SECRET": CLIENT_SECRET},
    )
    assert (result.exit_code, result.stdout) == (2, "")
    *retries, last = result.stderr.splitlines()
    unreachable = f"issuer unreachable at {issuer}: Connection refused"
    assert len(retries) == CONNECT_ATTEMPTS - 1
    for line in retries:
        assert re.fullmatch(rf"wsauth: {re.escape(unreachable)}; retrying in \d+\.\ds", line)
    assert last == (
        f"wsauth: error: {unreachable} (gave up after {CONNECT_ATTEMPTS} attempts); "
        "is it running? (--retry-forever keeps trying)"
    )


def test_connect_command_with_retry_forever_keeps_retrying_past_the_bound() -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "wsauth", "connect", "--issuer", issuer, "--retry-forever"],
        env={**os.environ, "WSAUTH_CLIENT_ID": CLIENT_ID, "WSAUTH_CLIENT_SECRET": CLIENT_SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(CONNECT_ATTEMPTS + 1)]
        assert process.poll() is None  # still retrying after more failures than the bound
        assert all(f"issuer unreachable at {issuer}" in line for line in lines)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_gateway_command_serves_until_sigterm(settings: Settings, tokens: Tokens) -> None:
    wsauth = Path(sys.executable).with_name("wsauth")
    env = {
        **os.environ,
        "WSAUTH_REDIS_URL": str(settings.redis_url),
        "WSAUTH_KEYS_DIR": str(settings.keys_dir),
    }
    process = subprocess.Popen(
        [str(wsauth), "gateway", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("gateway listening on ws://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        token, _ = tokens.issue()
        with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _, stderr = process.communicate()
    assert "Traceback" not in stderr
