"""Builders for the gateway tests: tokens recorded in the real Redis, a running gateway."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.gateway_server import GatewayHandle, run_gateway
from wsauth.shared.core.config import Settings
from wsauth.shared.core.keyset import SigningKey, b64url
from wsauth.shared.core.tokens import TOKEN_TYPE, Claims, Jti, mint, new_jti
from wsauth.shared.state.replay import ReplayGuard, jti_key, sync_client
from wsauth.shared.store.keystore import KeyStore


@dataclass
class Tokens:
    """Mints tokens as the issuer would, and records their jti in Redis."""

    key: SigningKey
    settings: Settings
    guard: ReplayGuard
    redis: redis.Redis

    def issue(
        self,
        *,
        subject: str = "alice",
        now: int | None = None,
        ttl: int = 30,
        issuer: str | None = None,
        audience: str | None = None,
        key: SigningKey | None = None,
        sid: str | None = None,
        scope: str | None = None,
        record: bool = True,
    ) -> tuple[str, Claims]:
        token, claims = mint(
            key=key or self.key,
            issuer=issuer or self.settings.issuer,
            audience=audience or self.settings.audience,
            subject=subject,
            now=int(time.time()) if now is None else now,
            ttl=ttl,
            sid=sid,
            scope=scope,
        )
        if record:
            self.guard.record(claims)
        return token, claims

    def craft(
        self,
        *,
        header: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        signature: bytes | None = None,
        record: bool = True,
    ) -> tuple[str, Claims]:
        """A hand-built token (signed with the test key unless ``signature`` is given).

        Its jti is recorded like a real token's, so a test can check it was not consumed.
        """
        now = int(time.time())
        full_header: dict[str, Any] = {"alg": self.key.alg, "kid": self.key.kid, "typ": TOKEN_TYPE}
        full_header.update(header or {})
        jti = new_jti()
        full_payload: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": "alice",
            "iat": now,
            "nbf": now,
            "exp": now + 30,
            "jti": jti,
        }
        full_payload.update(payload or {})
        for name in drop:
            full_payload.pop(name, None)
        signing_input = _segment(full_header) + b"." + _segment(full_payload)
        sig = self.key.sign(signing_input) if signature is None else signature
        token = (signing_input + b"." + b64url(sig).encode()).decode()
        claims = Claims(
            iss=self.settings.issuer,
            aud=self.settings.audience,
            sub="alice",
            iat=now,
            nbf=now,
            exp=now + 30,
            jti=Jti(str(full_payload.get("jti", jti))),
            kid=self.key.kid,
        )
        if record:
            self.guard.record(claims)
        return token, claims

    def recorded(self, claims: Claims) -> bool:
        """Is the token's jti still in Redis (not consumed)?"""
        return bool(self.redis.exists(jti_key(self.settings.redis_prefix, claims.jti)))


def _segment(value: dict[str, Any]) -> bytes:
    return b64url(json.dumps(value, separators=(",", ":")).encode()).encode()


@pytest.fixture
def tokens(
    key_store: KeyStore, settings: Settings, redis_url: str, redis_client: redis.Redis
) -> Iterator[Tokens]:
    key = key_store.signing_key()
    assert key is not None
    client = sync_client(redis_url, timeout=1)
    yield Tokens(key, settings, ReplayGuard(client, prefix="wsauth:", leeway=5), redis_client)
    client.close()


@pytest.fixture
def gateway(settings: Settings) -> Iterator[GatewayHandle]:
    with run_gateway(settings) as handle:
        yield handle


@dataclass
class Refusal:
    status: int
    error: str | None
    headers: dict[str, str]


def refusal(url: str, **connect_options: Any) -> Refusal:
    """Open a WebSocket that must be refused; return the HTTP answer."""
    try:
        with connect(url, open_timeout=5, **connect_options):
            pass
    except InvalidStatus as error:
        response = error.response
        body = json.loads(bytes(response.body or b"{}"))
        headers = {name.lower(): value for name, value in response.headers.raw_items()}
        return Refusal(response.status_code, body.get("error"), headers)
    raise AssertionError("the handshake was accepted")


def raw_request(
    port: int, headers: list[tuple[str, str]], *, path: str = "/ws", method: str = "GET"
) -> Refusal:
    """Send a hand-built request (headers may repeat); return the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        error = json.loads(body).get("error") if body else None
        return Refusal(response.status, error, {k.lower(): v for k, v in response.getheaders()})
    finally:
        connection.close()


def websocket_headers(version: str = "13") -> list[tuple[str, str]]:
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", version),
    ]


@pytest.fixture
def make_refusal() -> Callable[..., Refusal]:
    return refusal
