"""wsauth on a real 3-master Redis Cluster: an issuer and two gateways, all in cluster mode.

Token records, session indexes and revocation records are single-key
commands, so they spread over the masters; revocations use classic
PUBLISH/SUBSCRIBE, which a Cluster broadcasts to every node, and pushes the
user's topic: sharded pub/sub where the servers have it (Redis >= 7), else
classic (the embedded 6.2; tests/scaleout/test_sharded.py covers both).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator

import pytest
import requests

from tests.realtime.conftest import Issuer, close_code, next_json, open_socket, wait_until
from tests.scaleout.conftest import Attempt, add_users, handshake
from tests.scaleout.deployments import RedisCluster
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import Jti
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.replay import jti_key, sync_client
from wsauth.shared.state.sessions import session_tokens_key

TOKENS = 6
RACERS = 20  # per token, half on each gateway


@pytest.fixture
def issuer(cluster_settings: Settings, redis_cluster: RedisCluster) -> Iterator[Issuer]:
    """An issuer in cluster mode through the other documented form: one seed node + the flag."""
    add_users(cluster_settings)
    seed = cluster_settings.replace(
        redis_url=f"redis://{redis_cluster.addresses[0]}", redis_cluster=True
    )
    assert seed.effective_redis_url.startswith("redis+cluster://")
    with run_issuer(seed) as url:
        yield Issuer(url, seed)


@pytest.fixture
def gateways(cluster_settings: Settings) -> Iterator[tuple[GatewayHandle, GatewayHandle]]:
    with run_gateway(cluster_settings) as first, run_gateway(cluster_settings) as second:
        wait_until(
            lambda: all(
                g.app.gateway.fanout and g.app.gateway.fanout.subscribed for g in (first, second)
            ),
            timeout=10,
            what="both gateways to subscribe on the cluster",
        )
        yield first, second


def test_racing_uses_of_cluster_tokens_on_two_gateways_let_exactly_one_win_per_token(
    issuer: Issuer,
    gateways: tuple[GatewayHandle, GatewayHandle],
    redis_cluster: RedisCluster,
    cluster_settings: Settings,
) -> None:
    session = issuer.login("alice")
    tokens = [issuer.ws_token(session) for _ in range(TOKENS)]
    prefix = cluster_settings.redis_prefix
    jtis = [_jti(token) for token in tokens]
    owners = {redis_cluster.slot_owner(jti_key(prefix, jti)) for jti in jtis}
    assert len(owners) >= 2, "the tokens should spread over the masters"

    async def race(token: str) -> list[Attempt]:
        urls = [gateways[index % 2].ws_url for index in range(RACERS)]
        return list(await asyncio.gather(*(handshake(url, token) for url in urls)))

    async def all_races() -> list[list[Attempt]]:
        return list(await asyncio.gather(*(race(token) for token in tokens)))

    started = time.monotonic()
    results = asyncio.run(all_races())
    elapsed = time.monotonic() - started
    for attempts in results:
        outcomes = collections.Counter(attempts)
        assert outcomes == {Attempt(101): 1, Attempt(401, "token_replayed"): RACERS - 1}, outcomes
    print(
        f"\ncluster racers: {TOKENS} tokens x {RACERS} racers on 2 gateways over "
        f"{len(owners)} masters: exactly 1 winner each, {elapsed:.2f}s"
    )
    with sync_client(redis_cluster.url, timeout=2) as client:
        assert not any(client.exists(jti_key(prefix, jti)) for jti in jtis)


def test_a_push_through_the_cluster_reaches_connections_on_both_gateways(
    issuer: Issuer,
    gateways: tuple[GatewayHandle, GatewayHandle],
    redis_cluster: RedisCluster,
    cluster_settings: Settings,
) -> None:
    session = issuer.login("alice")
    first, second = gateways
    with (
        open_socket(first.ws_url, issuer.ws_token(session)) as on_first,
        open_socket(second.ws_url, issuer.ws_token(session)) as on_second,
        sync_client(redis_cluster.url, timeout=2) as client,
    ):
        nodes = publish_push(client, cluster_settings.redis_prefix, "alice", {"n": 1})
        assert next_json(on_first) == {"type": "push", "data": {"n": 1}}
        assert next_json(on_second) == {"type": "push", "data": {"n": 1}}
    if first.app.gateway.fanout and first.app.gateway.fanout.mode == "sharded":
        # SPUBLISH and SSUBSCRIBE both go to the master of the topic's slot: an exact count.
        assert nodes == 2
    else:
        # Classic pub/sub: the gateways subscribe on the broadcast channel's master and
        # the Cluster relays the PUBLISH there; the count is the publisher's master's own.
        assert 0 <= nodes <= 2


def test_logout_on_the_cluster_closes_sockets_on_both_gateways_and_deletes_unused_tokens(
    issuer: Issuer,
    gateways: tuple[GatewayHandle, GatewayHandle],
    redis_cluster: RedisCluster,
    cluster_settings: Settings,
) -> None:
    session = issuer.login("alice")
    unused = [issuer.ws_token(session) for _ in range(TOKENS)]
    prefix = cluster_settings.redis_prefix
    first, second = gateways
    with (
        open_socket(first.ws_url, issuer.ws_token(session)) as on_first,
        open_socket(second.ws_url, issuer.ws_token(session)) as on_second,
    ):
        issuer.logout(session)
        assert close_code(on_first) == 4001
        assert close_code(on_second) == 4001
    with sync_client(redis_cluster.url, timeout=2) as client:
        assert not any(client.exists(jti_key(prefix, _jti(token))) for token in unused)
        assert not client.keys(session_tokens_key(prefix, "*"))
    refused = asyncio.run(handshake(first.ws_url, unused[0]))
    assert refused == Attempt(401, "token_replayed")


def test_an_api_client_token_from_the_cluster_issuer_opens_exactly_one_connection(
    issuer: Issuer, gateways: tuple[GatewayHandle, GatewayHandle], cluster_settings: Settings
) -> None:
    from wsauth.issuer.clients import ClientStore

    client_id, secret = ClientStore.in_dir(cluster_settings.keys_dir).add("svc")
    answer = requests.post(f"{issuer.url}/api/tokens", auth=(client_id, secret), timeout=5)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert asyncio.run(handshake(gateways[1].ws_url, token)) == Attempt(101)
    assert asyncio.run(handshake(gateways[0].ws_url, token)) == Attempt(401, "token_replayed")


def _jti(token: str) -> Jti:
    import base64
    import json

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return Jti(claims["jti"])


def test_the_handshake_rate_limit_counts_refusals_on_the_cluster(
    cluster_settings: Settings,
) -> None:
    limited = cluster_settings.replace(rate_limit_handshakes="3/minute")
    with run_gateway(limited) as gateway:
        attempts = [asyncio.run(handshake(gateway.ws_url, "not.a.token")) for _ in range(5)]
    assert [a.status for a in attempts] == [401, 401, 401, 429, 429]
    assert attempts[3].error == "rate_limited"
