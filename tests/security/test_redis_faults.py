"""Redis down, paused, restarted, flushed: both services fail closed, then recover alone.

Each test runs an issuer and a gateway on a Redis server of its own (never
the session one), really stopped, paused (``CLIENT PAUSE``) or restarted.
While Redis cannot answer, both answer 503 ``redis_unavailable``; once it is
back, the very next request is served, without restarting either service.
A token whose record was lost (restart, flush) is refused, never accepted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
import requests

from tests.security.conftest import ORIGIN, Probe
from tests.security.support import (
    Answer,
    Minter,
    ServiceLog,
    build_request,
    exchange,
    present,
    wait_for,
    wait_healthy,
)
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.state.replay import jti_key

REDIS_TIMEOUT = 0.2


@dataclass
class Stack:
    """An issuer and a gateway sharing one Redis server that the test may break."""

    redis_server: EmbeddedRedis
    control: redis.Redis
    settings: Settings
    issuer_url: str
    gateway: GatewayHandle
    credentials: tuple[str, str]

    def issue(self) -> requests.Response:
        return requests.post(f"{self.issuer_url}/api/tokens", auth=self.credentials, timeout=5)

    def token(self) -> tuple[str, str]:
        """A token from the issuer, and its jti."""
        answer = self.issue()
        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return token, payload["jti"]

    def recorded(self, jti: str) -> bool:
        return bool(self.control.exists(jti_key(self.settings.redis_prefix, jti)))  # type: ignore[arg-type]

    def connect(self, token: str) -> Answer:
        return present(self.gateway.port, token)

    def health(self, port: int) -> int | None:
        request = build_request(path="/readyz", websocket=False)
        return exchange(port, request).status

    def wait_redis(self) -> None:
        """Until Redis answers again (the control client is paused like every other)."""
        wait_for(lambda: _pings(self.control), timeout=10, what="Redis to answer")


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def stack(make_settings: Callable[..., Settings]) -> Iterator[Stack]:
    with contextlib.ExitStack() as resources:
        own = resources.enter_context(EmbeddedRedis())
        settings = make_settings(
            redis_url=own.url, redis_timeout=REDIS_TIMEOUT, allowed_origins=ORIGIN
        )
        credentials = ClientStore.in_dir(settings.keys_dir).add("billing")
        control = redis.Redis.from_url(own.url, decode_responses=True, socket_timeout=5)
        resources.callback(control.close)
        issuer_url = resources.enter_context(run_issuer(settings))
        gateway = resources.enter_context(run_gateway(settings))
        wait_healthy(gateway.port)
        stack = Stack(own, control, settings, issuer_url, gateway, credentials)
        # Both services have talked to Redis once: their connection pools are warm.
        token, _ = stack.token()
        assert stack.connect(token).status == 101
        yield stack


def _assert_unavailable(answer: Answer) -> None:
    assert (answer.status, answer.error) == (503, "redis_unavailable"), answer
    assert answer.header("retry-after") == "1"


def _assert_issuer_unavailable(answer: requests.Response) -> None:
    assert answer.status_code == 503
    assert answer.json() == {"error": "redis_unavailable"}
    assert "token" not in answer.text


def _expect_one_refusal_each(log: ServiceLog, *secrets: str) -> None:
    log.expect_refusal("redis_unavailable", *secrets, logger="wsauth.gateway")
    log.expect_refusal("redis_unavailable", *secrets, logger="wsauth.issuer")


def test_redis_down_makes_both_services_answer_503_and_both_recover_when_it_is_back(
    stack: Stack, service_log: ServiceLog
) -> None:
    before, _ = stack.token()
    stack.redis_server.stop()

    _assert_unavailable(stack.connect(before))
    _assert_issuer_unavailable(stack.issue())
    assert stack.health(stack.gateway.port) == 503
    assert requests.get(f"{stack.issuer_url}/readyz", timeout=5).status_code == 503
    _expect_one_refusal_each(service_log, before)

    stack.redis_server.start()  # same port, empty: no persistence
    token, jti = stack.token()  # the first request after the outage is served
    assert stack.recorded(jti)
    assert stack.connect(token).status == 101
    assert not stack.recorded(jti)
    assert requests.get(f"{stack.issuer_url}/readyz", timeout=5).status_code == 200
    wait_for(lambda: stack.health(stack.gateway.port) == 200, what="gateway readyz 200")


def test_redis_paused_past_the_timeout_makes_both_services_answer_503_and_recover(
    stack: Stack, service_log: ServiceLog
) -> None:
    held, held_jti = stack.token()
    stack.control.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # type: ignore[no-untyped-call]
    started = time.monotonic()

    _assert_unavailable(stack.connect(held))
    _assert_issuer_unavailable(stack.issue())
    assert time.monotonic() - started < 1.2, "a request waited for Redis past its timeout"
    _expect_one_refusal_each(service_log, held)

    stack.wait_redis()
    # Both services dropped their connection on the timeout, so Redis discarded the
    # queued GETDEL and SET: the held token is intact, and no token was stored unseen.
    assert stack.recorded(held_jti)
    assert stack.control.dbsize() == 1
    assert stack.connect(held).status == 101  # served once the pause is over
    token, jti = stack.token()
    assert stack.connect(token).status == 101
    assert not stack.recorded(held_jti)
    assert not stack.recorded(jti)


def test_the_first_handshake_after_a_redis_restart_is_served(stack: Stack) -> None:
    stack.redis_server.restart()
    token, jti = stack.token()  # the issuer's first request after the restart works
    answer = stack.connect(token)  # so must the gateway's, without a spurious 503
    assert answer.status == 101, answer
    assert not stack.recorded(jti)


def test_the_first_handshake_after_redis_drops_idle_connections_is_served(
    stack: Stack,
) -> None:
    # What Redis's own idle `timeout`, a proxy or a failover does to pooled connections.
    killed = stack.control.execute_command(  # type: ignore[no-untyped-call]
        "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
    )
    assert int(killed) >= 2  # at least the issuer's and the gateway's
    token, jti = stack.token()
    answer = stack.connect(token)
    assert answer.status == 101, answer
    assert not stack.recorded(jti)


def test_tokens_issued_before_a_redis_restart_are_refused_as_replayed(
    stack: Stack, service_log: ServiceLog
) -> None:
    before, before_jti = stack.token()
    stack.redis_server.restart()
    assert not stack.recorded(before_jti)
    wait_for(lambda: stack.health(stack.gateway.port) == 200, what="gateway readyz 200")

    answer = stack.connect(before)
    assert (answer.status, answer.error) == (401, "token_replayed")
    service_log.expect_refusal("token_replayed", before)

    token, _ = stack.token()
    assert stack.connect(token).status == 101


def test_tokens_issued_before_flushall_are_refused_as_replayed(
    stack: Stack, service_log: ServiceLog
) -> None:
    before, _ = stack.token()
    stack.control.flushall()

    answer = stack.connect(before)
    assert (answer.status, answer.error) == (401, "token_replayed")
    service_log.expect_refusal("token_replayed", before)

    token, jti = stack.token()
    assert stack.recorded(jti)
    assert stack.connect(token).status == 101


def test_a_flush_at_the_shared_gateway_refuses_old_tokens_with_one_getdel_each(
    probe: Probe, minter: Minter
) -> None:
    token, _jti = minter.issue()
    minter.redis.flushall()
    answer, seen = probe.send([("Authorization", f"Bearer {token}")])
    assert (answer.status, answer.error) == (401, "token_replayed")
    # The GET of the revocation record rides in the GETDEL's pipeline (same round trip).
    assert seen.commands == {"getdel": 1, "get": 1}
    assert seen.dbsize_change == 0
    probe.log.expect_refusal("token_replayed", token)
