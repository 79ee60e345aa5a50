"""Fixtures of the real-time tests: a real issuer, real gateways, one real Redis, and helpers.

Clients are the ``websockets`` library's (sync API: each ``recv`` has a
timeout, so nothing waits with a fixed sleep) and ``requests`` for the issuer.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from click.testing import CliRunner, Result
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from tests.support.polling import wait_until as _wait_until
from tests.support.processes import stop_process
from tests.ws.conftest import Tokens, tokens
from wsauth.issuer.clients import MINT, PUSH, ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.cli.main import cli
from wsauth.shared.core.config import Settings

__all__ = ["Tokens", "tokens"]  # the gateway tests' token builder, shared

CSRF = {"X-WSAuth-CSRF": "1"}
USERS = {"alice": "alice-password-123", "bob": "bob-password-4567"}


# Real-time events arrive within milliseconds: five seconds is a generous bound.
wait_until = functools.partial(_wait_until, timeout=5.0)


@contextlib.contextmanager
def open_socket(url: str, token: str) -> Iterator[ClientConnection]:
    """Connect with a Bearer token; yield the socket after its welcome message."""
    headers = {"Authorization": f"Bearer {token}"}
    with connect(url, additional_headers=headers, open_timeout=5) as socket:
        welcome = json.loads(socket.recv(timeout=5))
        assert welcome["type"] == "welcome", welcome
        yield socket


def next_json(socket: ClientConnection, timeout: float = 5.0) -> Any:
    return json.loads(socket.recv(timeout=timeout))


def close_code(socket: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the gateway closes; return its close code (messages before it are dropped)."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ConnectionClosed):
        while True:
            socket.recv(timeout=max(0.01, deadline - time.monotonic()))
    return socket.close_code


def wsauth(settings: Settings, *args: str) -> Result:
    """Run ``wsauth ARGS`` in-process against the test Redis."""
    return CliRunner().invoke(cli, list(args), env={"WSAUTH_REDIS_URL": str(settings.redis_url)})


@dataclass
class Issuer:
    url: str
    settings: Settings

    def login(self, user: str) -> requests.Session:
        session = requests.Session()
        answer = session.post(
            f"{self.url}/login",
            json={"username": user, "password": USERS[user]},
            headers=CSRF,
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        return session

    def ws_token(self, session: requests.Session) -> str:
        answer = session.post(f"{self.url}/ws-token", headers=CSRF, timeout=5)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])

    def logout(self, session: requests.Session) -> None:
        answer = session.post(f"{self.url}/logout", headers=CSRF, timeout=5)
        assert answer.status_code == 200, answer.text


@pytest.fixture
def users(settings: Settings) -> UserStore:
    store = UserStore.in_dir(settings.keys_dir)
    for name, password in USERS.items():
        store.set_password(name, password)
    return store


@pytest.fixture
def issuer(settings: Settings, users: UserStore) -> Iterator[Issuer]:
    with run_issuer(settings) as url:
        yield Issuer(url, settings)


@pytest.fixture
def pusher(settings: Settings) -> tuple[str, str]:
    """An API client with the push permission: ``(client_id, secret)``."""
    return ClientStore.in_dir(settings.keys_dir).add("pusher", permissions=frozenset({PUSH}))


@pytest.fixture
def minter(settings: Settings) -> tuple[str, str]:
    """An API client with the mint permission (tokens for any ``sub``): ``(client_id, secret)``."""
    return ClientStore.in_dir(settings.keys_dir).add("minter", permissions=frozenset({MINT}))


@pytest.fixture
def plain_client(settings: Settings) -> tuple[str, str]:
    """An API client without any permission."""
    return ClientStore.in_dir(settings.keys_dir).add("reader")


@pytest.fixture
def gateway(settings: Settings) -> Iterator[GatewayHandle]:
    with run_gateway(settings) as handle:
        yield handle


@pytest.fixture
def two_gateways(settings: Settings) -> Iterator[tuple[GatewayHandle, GatewayHandle]]:
    """Two gateway nodes (each its own thread, loop and subscription) on one Redis."""
    with run_gateway(settings) as first, run_gateway(settings) as second:
        yield first, second


@pytest.fixture
def raw_redis(redis_client: redis.Redis) -> redis.Redis:
    """The test Redis (emptied for this test), decoded responses."""
    return redis_client


# --- real `wsauth gateway` processes -----------------------------------------------


@dataclass
class GatewayProcess:
    process: subprocess.Popen[str]
    url: str

    @property
    def http_url(self) -> str:
        return self.url.replace("ws://", "http://").removesuffix("/ws")


def gateway_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    env.update(
        {
            "WSAUTH_REDIS_URL": str(settings.redis_url),
            "WSAUTH_KEYS_DIR": str(settings.keys_dir),
            "WSAUTH_ISSUER": settings.issuer,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def gateway_process(settings: Settings, **extra: str) -> Iterator[GatewayProcess]:
    """``wsauth gateway --port 0`` as a child process; SIGTERM (then SIGKILL) by PID on exit."""
    wsauth = Path(sys.executable).with_name("wsauth")
    process = subprocess.Popen(
        [str(wsauth), "gateway", "--port", "0"],
        env=gateway_env(settings, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("gateway listening on ws://127.0.0.1:"), line
        handle = GatewayProcess(process, line.rsplit(" ", 1)[1])
        wait_until(lambda: _healthy(handle.http_url), what="the gateway process to subscribe")
        yield handle
    finally:
        stop_process(process)
        process.communicate()


def _healthy(http_url: str) -> bool:
    try:
        answer = requests.get(f"{http_url}/readyz", timeout=2)
    except requests.RequestException:
        return False
    return answer.status_code == 200 and answer.json()["checks"]["pubsub"] is True
