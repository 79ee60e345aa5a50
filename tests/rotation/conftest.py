"""The whole stack for rotation tests: issuer + gateway on loopback, clients connecting nonstop.

Timings are small so that a full rotation takes seconds. The servers cache
the JWKS for :data:`SERVER_CACHE` (1 s: the issuer's ``max-age``, the URL
gateway's refresh, the file gateway's check interval); the ``wsauth keys``
commands are told ``WSAUTH_JWKS_CACHE`` = :data:`RULE_CACHE` (2 s). The C of
the timing rule is an upper bound of every gateway's cache interval, as in
production, so it is at least the servers' interval, with room for a fetch.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from tests.support.polling import wait_until
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.core.keyset import SigningKey
from wsauth.shared.core.tokens import mint
from wsauth.shared.state.replay import ReplayGuard, sync_client
from wsauth.shared.store.keystore import KeyStore

WSAUTH = str(Path(sys.executable).with_name("wsauth"))
SERVER_CACHE = 1
RULE_CACHE = 2
TOKEN_TTL = 2
LEEWAY = 1
SOURCES = ["file", "url"]


# Rotation steps wait on refresh intervals of a second or two: fifteen seconds is the bound.
poll = functools.partial(wait_until, timeout=15.0)


def kid_of(token: str) -> str:
    header = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@dataclass
class Stack:
    """A running issuer and gateway sharing one key store, and an API client of the issuer."""

    settings: Settings
    issuer_url: str
    gateway: GatewayHandle
    client_id: str
    client_secret: str

    @property
    def keys_dir(self) -> Path:
        return self.settings.keys_dir

    @property
    def env(self) -> dict[str, str]:
        """The environment of an operator's shell: the store and the rule's timings."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("WSAUTH_")}
        env.update(
            WSAUTH_REDIS_URL=self.settings.effective_redis_url,
            WSAUTH_KEYS_DIR=str(self.keys_dir),
            WSAUTH_JWKS_CACHE=str(RULE_CACHE),
            WSAUTH_TOKEN_TTL=str(TOKEN_TTL),
            WSAUTH_LEEWAY=str(LEEWAY),
        )
        return env

    def wsauth(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real ``wsauth`` console script as an operator would."""
        return subprocess.run(
            [WSAUTH, *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def keys(self, *args: str) -> str:
        """``wsauth keys ARGS``, which must succeed; its stdout."""
        done = self.wsauth("keys", *args)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def token(self, session: requests.Session | None = None) -> str:
        """A token from ``POST /api/tokens``, as a service gets one."""
        post = (session or requests).post
        answer = post(
            f"{self.issuer_url}/api/tokens", auth=(self.client_id, self.client_secret), timeout=5
        )
        answer.raise_for_status()
        return str(answer.json()["token"])

    def record(self, key: SigningKey) -> str:
        """A token signed by ``key`` with its jti recorded in Redis, as the issuer would."""
        token, claims = mint(
            key=key,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            subject=self.client_id,
            now=int(time.time()),
            ttl=TOKEN_TTL,
        )
        client = sync_client(self.settings.effective_redis_url, timeout=1)
        try:
            ReplayGuard(client, prefix=self.settings.redis_prefix, leeway=LEEWAY).record(claims)
        finally:
            client.close()
        return token

    def outcome(self, token: str) -> str:
        """Open a WebSocket with ``token``: ``"welcome"``, or the error code of the refusal."""
        try:
            with connect(
                self.gateway.ws_url,
                subprotocols=[Subprotocol("wsauth"), Subprotocol(f"wsauth.bearer.{token}")],
                open_timeout=5,
            ) as ws:
                return str(json.loads(ws.recv(timeout=5))["type"])
        except InvalidStatus as error:
            body = json.loads(bytes(error.response.body or b"{}"))
            return f"{error.response.status_code} {body.get('error')}"

    def readyz(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.gateway.http_url}/readyz", timeout=5).json())

    def gateway_kids(self) -> list[str]:
        return list(self.readyz()["keyset"]["kids"])

    def private_key(self, kid: str) -> SigningKey:
        record = next(r for r in KeyStore(self.keys_dir).records() if r.kid == kid)
        return SigningKey.from_pem(
            record.alg, (self.keys_dir / "private" / f"{kid}.pem").read_bytes()
        )


@contextlib.contextmanager
def run_stack(settings: Settings, *, source: str) -> Iterator[Stack]:
    """Issuer and gateway on loopback; the gateway reads jwks.json (file) or the issuer's URL."""
    client_id, secret = ClientStore.in_dir(settings.keys_dir).add("rotation-test")
    with run_issuer(settings) as issuer_url:
        gateway_settings = settings
        if source == "url":
            gateway_settings = settings.replace(jwks_url=f"{issuer_url}/.well-known/jwks.json")
        with run_gateway(gateway_settings) as gateway:
            stack = Stack(settings, issuer_url, gateway, client_id, secret)
            poll(lambda: stack.readyz()["status"] == "ok", what="a healthy gateway")
            yield stack


@pytest.fixture
def rotation_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(jwks_cache=SERVER_CACHE, token_ttl=TOKEN_TTL, leeway=LEEWAY)


@pytest.fixture(params=SOURCES)
def stack(request: pytest.FixtureRequest, rotation_settings: Settings) -> Iterator[Stack]:
    with run_stack(rotation_settings, source=request.param) as running:
        yield running


@dataclass
class Traffic:
    """Clients that fetch a token and open a WebSocket, again and again, until stopped.

    ``failures`` holds ``(time.monotonic(), what)`` for every attempt that did
    not end in the gateway's welcome: a refusal as ``"401 unknown_kid"``,
    anything else as the exception.
    """

    stack: Stack
    clients: int = 2
    accepted: Counter[str] = field(default_factory=Counter)  # by kid
    failures: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        for number in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"client-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in self._threads)

    def total(self, kid: str | None = None) -> int:
        with self._lock:
            return self.accepted[kid] if kid else sum(self.accepted.values())

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    token = self.stack.token(session)
                    outcome = self.stack.outcome(token)
                except Exception as error:  # every failure counts, whatever it is
                    outcome = f"{type(error).__name__}: {error}"
                with self._lock:
                    if outcome == "welcome":
                        self.accepted[kid_of(token)] += 1
                    else:
                        self.failures.append((time.monotonic(), outcome))
