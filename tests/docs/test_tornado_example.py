"""docs/examples/tornado_chat.py, the Tornado how-to's example, runs as a program and is driven
end to end: a real process, a real Redis, tokens minted with the public ``wsauth.Issuer``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.ws.conftest import refusal
from wsauth import Issuer
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.redis_server import free_port
from wsauth.shared.state.replay import jti_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "tornado_chat.py"
HOWTO = ROOT / "docs" / "howto" / "tornado.md"


@dataclass
class Chat:
    url: str
    process: subprocess.Popen[str]


@pytest.fixture
def issuer(settings: Settings) -> Iterator[Issuer]:
    with Issuer(settings) as minting:
        yield minting


@pytest.fixture
def chat(settings: Settings) -> Iterator[Chat]:
    """Start the example as its README says; yield its URL; stop it with SIGTERM."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("WSAUTH_") and key != "PYTHONPATH"
    }
    env.update(WSAUTH_REDIS_URL=str(settings.redis_url), WSAUTH_KEYS_DIR=str(settings.keys_dir))
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(port)],
        env=env,
        cwd=EXAMPLE.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            line = process.stdout.readline()
            assert line == f"chat on ws://127.0.0.1:{port}/chat\n", process.stderr.read()
            yield Chat(f"ws://127.0.0.1:{port}/chat", process)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


def _join(url: str, token: str) -> ClientConnection:
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5)


def _next(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(timeout=5))


def _close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=10)
    except ConnectionClosed:
        pass
    return ws.close_code


def test_the_tornado_howto_shows_the_example_file_verbatim() -> None:
    assert EXAMPLE.read_text() in HOWTO.read_text()


def test_the_tornado_example_chats_between_two_authenticated_users(
    chat: Chat, issuer: Issuer, redis_client: redis.Redis
) -> None:
    alice = issuer.issue("alice")
    alice_token = alice.token
    with _join(chat.url, alice_token) as first:
        assert _next(first) == {"type": "joined", "user": "alice"}
        with _join(chat.url, issuer.issue("bob").token) as bob:
            assert _next(first) == {"type": "joined", "user": "bob"}
            assert _next(bob) == {"type": "joined", "user": "bob"}
            bob.send("hello")
            assert _next(first) == {"type": "said", "user": "bob", "text": "hello"}
            assert _next(bob) == {"type": "said", "user": "bob", "text": "hello"}
        assert _next(first) == {"type": "left", "user": "bob"}
    assert not redis_client.exists(jti_key("wsauth:", alice.claims.jti))
    # The token worked once: the same one again is refused before the upgrade.
    again = refusal(chat.url, additional_headers={"Authorization": f"Bearer {alice_token}"})
    assert (again.status, again.error) == (401, "token_replayed")


def test_the_tornado_example_refuses_a_handshake_without_a_token(chat: Chat) -> None:
    answer = refusal(chat.url)
    assert (answer.status, answer.error) == (401, "token_missing")


def test_the_tornado_example_gets_pushes_and_revocations_and_closes_with_1001_on_sigterm(
    chat: Chat, issuer: Issuer, redis_client: redis.Redis
) -> None:
    with (
        _join(chat.url, issuer.issue("alice").token) as alice,
        _join(chat.url, issuer.issue("mallory").token) as mallory,
    ):
        assert _next(alice)["type"] == "joined"
        assert _next(alice)["user"] == "mallory"
        assert publish_push(redis_client, "wsauth:", "alice", "from a backend") == 1
        assert _next(alice) == {"type": "push", "data": "from a backend"}
        assert issuer.revoke(sub="mallory").nodes == 1
        assert _close_code(mallory) == 4001
        assert _next(alice) == {"type": "left", "user": "mallory"}
        # SIGTERM to the example: its node closes every connection with 1001.
        chat.process.send_signal(signal.SIGTERM)
        assert _close_code(alice) == 1001
    assert chat.process.wait(timeout=15) == 0
