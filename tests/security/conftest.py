"""Fixtures of the security suite: a real gateway on loopback, the session Redis, probes.

Every refusal is checked the same way (:class:`Probe`): the HTTP status and
``{"error": code}``, Redis untouched (no token command in ``INFO
commandstats``, the key count unchanged, the recorded jti still there), and
exactly one ``reason=<code>`` line from the gateway with no part of the token.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tests.conftest import TEST_SECRET
from tests.security.support import (
    Answer,
    Listener,
    Minter,
    RedisWatch,
    ServiceLog,
    handshake,
    offer,
    wait_healthy,
)
from tests.support.gateway_server import GatewayHandle, run_gateway
from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.store.keystore import KeyStore

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def suite_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """One EdDSA key, ``current``, for the gateway shared by a test module."""
    store = KeyStore(tmp_path_factory.mktemp("keys"))
    store.generate("EdDSA", now=int(time.time()) - 3600)
    return store


@pytest.fixture(scope="module")
def gateway_settings(suite_keys: KeyStore, redis_server: EmbeddedRedis) -> Settings:
    return load_settings(
        env={},
        overrides={
            "redis_url": redis_server.url,
            "keys_dir": str(suite_keys.dir),
            "secret_key": TEST_SECRET,
            "allowed_origins": ORIGIN,
        },
    )


@pytest.fixture(scope="module")
def gateway(gateway_settings: Settings) -> Iterator[GatewayHandle]:
    """A gateway shared by a test module, connected to Redis before any test counts commands.

    Tests only send requests to it; none changes its settings, keys or state.
    """
    with run_gateway(gateway_settings) as handle:
        wait_healthy(handle.port)
        yield handle


@pytest.fixture
def minter(suite_keys: KeyStore, gateway_settings: Settings, redis_client: redis.Redis) -> Minter:
    """Tokens for the shared gateway; ``redis_client`` empties the database first."""
    key = suite_keys.signing_key()
    assert key is not None
    return Minter(key, gateway_settings, redis_client)


@pytest.fixture
def watch(redis_client: redis.Redis) -> RedisWatch:
    return RedisWatch(redis_client)


@pytest.fixture
def service_log(caplog: pytest.LogCaptureFixture) -> ServiceLog:
    return ServiceLog(caplog)


@pytest.fixture
def listener() -> Iterator[Listener]:
    own = Listener()
    yield own
    own.close()


@dataclass
class Probe:
    """Present tokens to the gateway and check the whole outcome."""

    gateway: GatewayHandle
    minter: Minter
    watch: RedisWatch
    log: ServiceLog

    def send(
        self, headers: list[tuple[str, str]], *, path: str = "/ws", **options: object
    ) -> tuple[Answer, RedisWatch]:
        with self.watch() as seen:
            answer = handshake(self.gateway.port, headers, path=path, **options)  # type: ignore[arg-type]
        return answer, seen

    def refused(
        self,
        headers: list[tuple[str, str]],
        status: int,
        code: str,
        *,
        path: str = "/ws",
        jtis: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (),
        **options: object,
    ) -> Answer:
        """The request is refused with ``status``/``code`` and Redis is never asked.

        ``jtis`` must still be recorded afterwards; ``secrets`` must never be logged.
        """
        answer, seen = self.send(headers, path=path, **options)
        assert (answer.status, answer.error) == (status, code), answer
        assert answer.header("content-type") == "application/json"
        if status == 401:
            assert (answer.header("www-authenticate") or "").startswith("Bearer")
        assert seen.commands == {}, f"Redis was asked: {seen.commands}"
        assert seen.dbsize_change == 0
        for jti in jtis:
            assert self.minter.recorded(jti), "a refused request consumed the jti"
        self.log.expect_refusal(code, *secrets)
        return answer

    def refuse_token(
        self, token: str, status: int, code: str, *, jti: str = "", via: str = "authorization"
    ) -> Answer:
        headers, path = offer(token, via)
        return self.refused(
            headers, status, code, path=path, jtis=(jti,) if jti else (), secrets=(token,)
        )

    def accepted(
        self, headers: list[tuple[str, str]], jti: str, *, token: str, path: str = "/ws"
    ) -> Answer:
        """The upgrade happens and the jti is consumed with exactly one GETDEL (and the
        GET of the revocation records, ``revoked_sub`` and ``revoked_sid`` when the token
        has a sid, in the same pipeline)."""
        answer, seen = self.send(headers, path=path)
        assert answer.status == 101, answer
        assert seen.commands.pop("get", 0) in (1, 2), seen.commands
        assert seen.commands == {"getdel": 1}
        assert seen.dbsize_change == -1
        assert not self.minter.recorded(jti)
        self.log.expect_accepted(token)
        return answer

    def accept_token(self, token: str, jti: str, *, via: str = "authorization") -> Answer:
        headers, path = offer(token, via)
        return self.accepted(headers, jti, token=token, path=path)


@pytest.fixture
def probe(
    gateway: GatewayHandle, minter: Minter, watch: RedisWatch, service_log: ServiceLog
) -> Probe:
    return Probe(gateway, minter, watch, service_log)


@pytest.fixture
def make_probe(
    gateway_settings: Settings, minter: Minter, watch: RedisWatch, service_log: ServiceLog
) -> Callable[..., contextlib.AbstractContextManager[Probe]]:
    """``with make_probe(**settings changes) as probe``: a probe on a gateway of its own,
    started when the block starts (after whatever the test prepared)."""

    @contextlib.contextmanager
    def start(**changes: Any) -> Iterator[Probe]:
        with run_gateway(gateway_settings.replace(**changes)) as handle:
            wait_healthy(handle.port)
            yield Probe(handle, minter, watch, service_log)

    return start
