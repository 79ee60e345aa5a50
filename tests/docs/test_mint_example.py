"""docs/examples/mint_backend.py runs, in process and over HTTP, against a real gateway and Redis:
what it prints connects once, as the user it was minted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.realtime.conftest import open_socket
from tests.support.gateway_server import run_gateway
from tests.support.issuer_server import run_issuer
from tests.support.welcome import without_ticket
from wsauth.issuer.clients import MINT, ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "mint_backend.py"


@dataclass
class Stack:
    issuer_url: str
    settings: Settings


@pytest.fixture
def stack(make_settings: Callable[..., Settings]) -> Iterator[Stack]:
    gateway_port = free_port()
    settings = make_settings(gateway_url=f"ws://127.0.0.1:{gateway_port}/ws")
    with run_gateway(settings, port=gateway_port), run_issuer(settings) as issuer_url:
        yield Stack(issuer_url, settings)


def run_example(*args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "WSAUTH_KEYS_DIR": str(settings.keys_dir),
        "WSAUTH_REDIS_URL": str(settings.redis_url),
        "WSAUTH_GATEWAY_URL": settings.gateway_url,
    }


def connects_once_as(grant: dict[str, str], sub: str) -> None:
    headers = {"Authorization": f"Bearer {grant['token']}"}
    with connect(grant["url"], additional_headers=headers, open_timeout=5) as socket:
        assert without_ticket(json.loads(socket.recv(timeout=5))) == {"type": "welcome", "sub": sub}
    with pytest.raises(InvalidStatus) as replayed, open_socket(grant["url"], grant["token"]):
        pass  # pragma: no cover - refused
    assert replayed.value.response.status_code == 401


def test_the_mint_example_mints_in_process_a_token_that_connects_once(stack: Stack) -> None:
    done = run_example("alice", "--sid", "web-42", **settings_env(stack.settings))
    assert (done.returncode, done.stderr) == (0, "")
    grant = json.loads(done.stdout)
    assert grant["url"] == stack.settings.gateway_url
    assert grant["expires_in"] == stack.settings.token_ttl
    connects_once_as(grant, "alice")


def test_the_mint_example_exchanges_a_mint_clients_credentials_over_http(
    stack: Stack,
) -> None:
    client_id, secret = ClientStore.in_dir(stack.settings.keys_dir).add(
        "backend", permissions=frozenset({MINT})
    )
    done = run_example(
        "alice", "--http", stack.issuer_url, WSAUTH_CLIENT_ID=client_id, WSAUTH_CLIENT_SECRET=secret
    )
    assert (done.returncode, done.stderr) == (0, "")
    connects_once_as(json.loads(done.stdout), "alice")


def test_the_mint_example_reports_a_client_without_the_mint_permission(stack: Stack) -> None:
    client_id, secret = ClientStore.in_dir(stack.settings.keys_dir).add("plain")
    done = run_example(
        "alice", "--http", stack.issuer_url, WSAUTH_CLIENT_ID=client_id, WSAUTH_CLIENT_SECRET=secret
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "issuer refused: 403 forbidden\n"


def test_the_mint_example_reports_redis_down_without_a_traceback(stack: Stack) -> None:
    env = {**settings_env(stack.settings), "WSAUTH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = run_example("alice", **env)
    assert done.returncode == 1
    assert done.stderr.startswith("cannot mint: redis_unavailable: Redis at redis://127.0.0.1:")
    assert "Traceback" not in done.stderr
