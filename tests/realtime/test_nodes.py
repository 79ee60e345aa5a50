"""Gateway nodes as real processes on one Redis, and the subscription across a Redis restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.realtime.conftest import (
    Issuer,
    close_code,
    gateway_process,
    next_json,
    open_socket,
    wait_until,
)
from tests.support.gateway_server import run_gateway
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import mint
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.state.replay import ReplayGuard, sync_client
from wsauth.shared.store.keystore import KeyStore


def test_two_gateway_processes_both_deliver_a_push_and_share_single_use_tokens(
    settings: Settings, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with gateway_process(settings) as first, gateway_process(settings) as second:
        token, _ = tokens.issue(subject="alice")
        with (
            open_socket(first.url, token) as on_first,
            open_socket(second.url, tokens.issue(subject="alice")[0]) as on_second,
        ):
            assert publish_push(raw_redis, "wsauth:", "alice", {"to": "both"}) == 2
            assert next_json(on_first) == {"type": "push", "data": {"to": "both"}}
            assert next_json(on_second) == {"type": "push", "data": {"to": "both"}}
            answer = refusal(second.url, additional_headers={"Authorization": f"Bearer {token}"})
            assert (answer.status, answer.error) == (401, "token_replayed")


def test_logout_closes_the_users_sockets_on_two_gateway_processes_with_4001(
    settings: Settings, issuer: Issuer
) -> None:
    with gateway_process(settings) as first, gateway_process(settings) as second:
        alice = issuer.login("alice")
        with (
            open_socket(first.url, issuer.ws_token(alice)) as on_first,
            open_socket(second.url, issuer.ws_token(alice)) as on_second,
        ):
            issuer.logout(alice)
            assert close_code(on_first) == 4001
            assert close_code(on_second) == 4001


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis server of this test alone: it is restarted."""
    with EmbeddedRedis() as server:
        yield server


def test_the_subscription_comes_back_by_itself_after_a_redis_restart(
    own_redis: EmbeddedRedis,
    make_settings: Callable[..., Settings],
    key_store: KeyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_url=own_redis.url)
    key = key_store.signing_key()
    assert key is not None
    token, claims = mint(
        key=key,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="alice",
        now=int(time.time()),
        ttl=30,
    )
    writer = sync_client(own_redis.url, timeout=1)
    caplog.set_level(logging.INFO, logger="wsauth.gateway")
    try:
        ReplayGuard(writer, prefix="wsauth:", leeway=5).record(claims)
        with run_gateway(settings) as gateway, open_socket(gateway.ws_url, token) as ws:
            fanout = gateway.app.gateway.fanout
            assert fanout is not None and fanout.subscribed
            own_redis.restart()
            wait_until(lambda: fanout.outages == 1 and fanout.subscribed, timeout=15)
            assert publish_push(writer, "wsauth:", "alice", "after the restart") == 1
            assert next_json(ws) == {"type": "push", "data": "after the restart"}
    finally:
        writer.close()
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING
    assert any("subscribed to wsauth:events again" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info]
