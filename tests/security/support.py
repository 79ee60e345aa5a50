"""Tools of the security suite: raw handshakes, Redis command counts, log checks, tokens.

Everything here talks to real servers: a raw socket speaks HTTP/1.1 to the
gateway (so a test can send what no WebSocket client would: repeated headers,
other methods, garbage), ``INFO commandstats`` tells what Redis was asked, and
the log check reads what the services logged through ``caplog``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import select
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import redis

from wsauth.shared.core.config import Settings
from wsauth.shared.core.keyset import SigningKey, b64url
from wsauth.shared.core.tokens import TOKEN_TYPE, new_jti
from wsauth.shared.state.replay import jti_key

WEBSOCKET_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# Loggers of the services under test: wsauth's own and the frameworks they run in.
SERVICE_LOGGERS = ("wsauth", "tornado", "werkzeug")
# Commands that are not about tokens: the probes' own, and the gateway's pub/sub —
# its keep-alive, which may fire at any time, and the user topic an accepted
# connection subscribes to and a closed one leaves (wsauth.ws.fanout).
NOT_TOKEN_COMMANDS = frozenset({"info", "dbsize", "ping", "subscribe", "unsubscribe"})
REMOVE: Any = object()  # a claim or header member to leave out


# --- polling --------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], *, timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# --- raw HTTP -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the server answered; ``status`` None means it closed without answering."""

    status: int | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def error(self) -> str | None:
        if not self.body:
            return None
        document = json.loads(self.body)
        assert isinstance(document, dict), document
        return document.get("error")

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None


def exchange(port: int, request: bytes, *, timeout: float = 5.0, head: bool = False) -> Answer:
    """Send ``request`` bytes on a fresh connection; read one HTTP answer (101: headers only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_answer(sock, timeout=timeout, head=head)


def read_answer(sock: socket.socket, *, timeout: float = 5.0, head: bool = False) -> Answer:
    deadline = time.monotonic() + timeout
    data = b""

    def more() -> bool:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        nonlocal data
        data += chunk
        return bool(chunk)

    while b"\r\n\r\n" not in data:
        if not more():
            assert not data, f"incomplete answer: {data[:200]!r}"
            return Answer(None)
    head_part, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    answer = Answer(status, headers)
    if status == 101 or head:
        return answer
    length = int(answer.header("content-length") or 0)
    while len(body) < length:
        before = len(data)
        if not more():
            break
        body += data[before:]
    assert len(body) == length, f"short body: {body!r}"
    return Answer(status, headers, body)


def build_request(
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "GET",
    path: str = "/ws",
    version: str | None = "13",
    websocket: bool = True,
) -> bytes:
    """An HTTP/1.1 request; ``headers`` may repeat a name. ``version`` None leaves it out."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if websocket:
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {WEBSOCKET_KEY}",
        ]
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def handshake(
    port: int,
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "GET",
    path: str = "/ws",
    version: str | None = "13",
) -> Answer:
    """One opening handshake with exactly these extra headers; the answer."""
    request = build_request(headers, method=method, path=path, version=version)
    return exchange(port, request, head=method == "HEAD")


def offer(token: str, via: str) -> tuple[list[tuple[str, str]], str]:
    """Headers and path that carry ``token`` in one source (authorization, subprotocol, query)."""
    if via == "authorization":
        return [("Authorization", f"Bearer {token}")], "/ws"
    if via == "subprotocol":
        return [("Sec-WebSocket-Protocol", f"wsauth, wsauth.bearer.{token}")], "/ws"
    if via == "query":
        return [], "/ws?ws_token=" + quote(token, safe="")
    raise ValueError(via)


def present(port: int, token: str, *, via: str = "authorization") -> Answer:
    headers, path = offer(token, via)
    return handshake(port, headers, path=path)


def wait_healthy(port: int, *, timeout: float = 5.0) -> None:
    """Poll ``/readyz`` until it answers 200 (Redis and pub/sub connected, keys loaded)."""

    def healthy() -> bool:
        request = build_request(method="GET", path="/readyz", websocket=False)
        try:
            return exchange(port, request, timeout=1).status == 200
        except OSError:
            return False

    wait_for(healthy, timeout=timeout, what="the service to be healthy")


# --- Redis ----------------------------------------------------------------------------


def command_calls(client: redis.Redis) -> dict[str, int]:
    """``INFO commandstats`` as {command: calls}."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@dataclass
class RedisWatch:
    """Command counts and key count of the session Redis, before and after a block."""

    client: redis.Redis
    commands: dict[str, int] = field(default_factory=dict)
    dbsize_change: int = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[RedisWatch]:
        before, size = command_calls(self.client), self.client.dbsize()
        yield self
        after = command_calls(self.client)
        self.dbsize_change = self.client.dbsize() - size
        self.commands = {
            name: calls - before.get(name, 0)
            for name, calls in after.items()
            if calls != before.get(name, 0) and name not in NOT_TOKEN_COMMANDS
        }


# --- logs -----------------------------------------------------------------------------


def fragments(secret: str) -> list[str]:
    """The parts of a token that must never be logged: itself and each long segment."""
    parts = [secret, *secret.split(".")]
    return [part for part in parts if len(part) >= 12]


class ServiceLog:
    """Reads the services' log records captured by ``caplog`` (from any thread)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        self.caplog = caplog

    def records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name.split(".")[0] in SERVICE_LOGGERS]

    def reason_lines(self, logger: str = "wsauth.gateway") -> list[str]:
        return [
            r.getMessage()
            for r in self.records()
            if r.name == logger and "reason=" in r.getMessage()
        ]

    def lines(self, logger: str, needle: str) -> list[str]:
        return [
            r.getMessage() for r in self.records() if r.name == logger and needle in r.getMessage()
        ]

    def expect_refusal(
        self, code: str, *secrets: str, logger: str = "wsauth.gateway", timeout: float = 3.0
    ) -> str:
        """Exactly one line of ``logger`` carries ``reason=`` and it is ``reason=<code>``.

        The access line is written after the answer is sent, so it is polled for.
        """
        wait_for(lambda: self.reason_lines(logger), timeout=timeout, what=f"reason={code} logged")
        lines = self.reason_lines(logger)
        assert len(lines) == 1, lines
        assert f"reason={code}" in lines[0].split(), lines[0]
        self.expect_clean(*secrets)
        return lines[0]

    def expect_accepted(self, *secrets: str, timeout: float = 3.0) -> str:
        """One ``GET /ws 101`` access line, no refusal, nothing secret logged."""
        found = wait_for(
            lambda: self.lines("wsauth.gateway", "GET /ws 101 "), timeout=timeout, what="101 logged"
        )
        assert len(found) == 1, found
        assert not self.reason_lines(), self.reason_lines()
        self.expect_clean(*secrets)
        return str(found[0])

    def expect_clean(self, *secrets: str) -> None:
        """No traceback, and no part of any secret, in any service log record."""
        for record in self.records():
            text = record.getMessage() + (record.exc_text or "")
            assert record.exc_info is None, text
            assert "Traceback" not in text, text
            for secret in secrets:
                for part in fragments(secret):
                    assert part not in text, f"{record.name} logged a token part: {text[:160]}"


# --- tokens ---------------------------------------------------------------------------


def segment(value: Any) -> str:
    """A base64url segment of a JSON value, or of raw bytes as they are."""
    if isinstance(value, bytes):
        return b64url(value)
    return b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass
class Minter:
    """Builds tokens relative to ``time.time()``, honest or hostile, and records jtis."""

    key: SigningKey
    settings: Settings
    redis: redis.Redis

    def header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": self.key.alg, "kid": self.key.kid, "typ": TOKEN_TYPE}
        header.update(changes)
        return {name: value for name, value in header.items() if value is not REMOVE}

    def payload(self, *, now: int | None = None, **changes: Any) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        payload: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": "alice",
            "iat": now,
            "nbf": now,
            "exp": now + 30,
            "jti": new_jti(),
        }
        payload.update(changes)
        return {name: value for name, value in payload.items() if value is not REMOVE}

    def sign(
        self,
        header: dict[str, Any] | bytes | None = None,
        payload: dict[str, Any] | bytes | None = None,
        *,
        key: SigningKey | None = None,
    ) -> str:
        """A token whose signature is genuine (by ``key``, default ours) over any content."""
        header = self.header() if header is None else header
        payload = self.payload() if payload is None else payload
        signing_input = f"{segment(header)}.{segment(payload)}"
        return f"{signing_input}.{b64url((key or self.key).sign(signing_input.encode()))}"

    def hmac_sign(self, header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
        signing_input = f"{segment(header)}.{segment(payload)}"
        mac = hmac.new(secret, signing_input.encode(), digest[header["alg"]]).digest()
        return f"{signing_input}.{b64url(mac)}"

    def record(self, jti: str, sub: str = "alice", ttl: int = 60) -> str:
        """Record ``jti`` as the issuer does (SET NX EX); return its Redis key."""
        name = jti_key(self.settings.redis_prefix, jti)  # type: ignore[arg-type]
        assert self.redis.set(name, sub, nx=True, ex=ttl)
        return name

    def recorded(self, jti: str) -> bool:
        return bool(self.redis.exists(jti_key(self.settings.redis_prefix, jti)))  # type: ignore[arg-type]

    def issue(self, **changes: Any) -> tuple[str, str]:
        """A signed token with these claim changes, its jti recorded; (token, jti)."""
        payload = self.payload(**changes)
        jti = payload.get("jti")
        token = self.sign(self.header(), payload)
        if isinstance(jti, str):
            self.record(jti, payload["sub"] if isinstance(payload.get("sub"), str) else "alice")
        else:
            jti = ""
        return token, jti


# --- outbound connections -------------------------------------------------------------


class Listener:
    """A listening socket on 127.0.0.1 that counts who connects to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def connections(self, *, within: float) -> int:
        """Accept whatever arrives within ``within`` seconds; return the total so far."""
        deadline = time.monotonic() + within
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                break
            with contextlib.suppress(BlockingIOError):
                connection, _ = self.sock.accept()
                connection.close()
                self.accepted += 1
        return self.accepted

    def close(self) -> None:
        self.sock.close()
