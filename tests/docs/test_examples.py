"""The example programs of the tutorials run, against real servers on loopback and a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.gateway_server import run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "python_service.py"
TUTORIAL = ROOT / "docs" / "tutorials" / "python-service.md"


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


def run_example(issuer_url: str, client_id: str, secret: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("WSAUTH_") and key != "PYTHONPATH"
    }
    env.update(WSAUTH_CLIENT_ID=client_id, WSAUTH_CLIENT_SECRET=secret)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), issuer_url],
        env=env,
        cwd=EXAMPLE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_python_tutorial_shows_the_example_file_verbatim() -> None:
    assert EXAMPLE.read_text() in TUTORIAL.read_text()


def test_the_python_example_connects_and_prints_the_welcome(
    stack: Stack, redis_client: redis.Redis
) -> None:
    client_id, secret = ClientStore.in_dir(stack.settings.keys_dir).add("tutorial")
    done = run_example(stack.issuer_url, client_id, secret)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"connected as {client_id}\n", "")
    # The token was spent: no jti record is left in Redis.
    assert list(redis_client.scan_iter("wsauth:jti:*")) == []


def test_the_python_example_reports_refused_credentials_with_the_reason_code(
    stack: Stack,
) -> None:
    client_id, _secret = ClientStore.in_dir(stack.settings.keys_dir).add("tutorial")
    done = run_example(stack.issuer_url, client_id, "wrong-secret")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "issuer refused: 401 not_authenticated\n"


def test_the_python_example_reports_a_refused_handshake_with_the_reason_code(
    make_settings: Callable[..., Settings],
) -> None:
    gateway_port = free_port()
    settings = make_settings(gateway_url=f"ws://127.0.0.1:{gateway_port}/ws")
    # A gateway that expects another audience refuses every token of this issuer.
    elsewhere = settings.replace(audience="elsewhere")
    client_id, secret = ClientStore.in_dir(settings.keys_dir).add("tutorial")
    with run_gateway(elsewhere, port=gateway_port), run_issuer(settings) as issuer_url:
        done = run_example(issuer_url, client_id, secret)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "gateway refused: 401 wrong_audience\n"
