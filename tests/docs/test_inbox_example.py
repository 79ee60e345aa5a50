"""docs/examples/inbox_backend.py runs: a backend reads what a client sends and answers it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.realtime.conftest import open_socket
from tests.support.gateway_server import GatewayHandle
from tests.ws.conftest import Tokens, gateway, tokens
from wsauth.shared.core.config import Settings

__all__ = ["gateway", "tokens"]  # fixtures of the gateway tests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "inbox_backend.py"


def test_the_protocol_reference_shows_the_inbox_example_verbatim() -> None:
    assert EXAMPLE.read_text() in (ROOT / "docs" / "reference" / "protocol.md").read_text()


def test_the_inbox_example_answers_what_a_client_sends(
    gateway: GatewayHandle, tokens: Tokens, settings: Settings
) -> None:
    token, _ = tokens.issue(subject="alice")
    with open_socket(gateway.ws_url, token) as socket:
        socket.send(json.dumps({"type": "send", "id": 1, "data": {"question": 42}}))
        assert json.loads(socket.recv(timeout=5)) == {"type": "reply", "id": 1, "ok": True}
        env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
        env["WSAUTH_REDIS_URL"] = str(settings.redis_url)
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(socket.recv(timeout=5)) == {
            "type": "push",
            "data": {"echo": {"question": 42}},
        }
