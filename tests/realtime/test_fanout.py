"""Per-topic fan-out on a real gateway and Redis: a node hears only the users and channels
it holds, subscribes on the first connection and unsubscribes after the last, in batches."""

from __future__ import annotations

import asyncio
import json

import redis
import requests
from websockets.asyncio.client import connect

from tests.realtime.conftest import next_json, open_socket, wait_until
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_message, publish_push, publish_revoke


def events_seen(gateway: GatewayHandle, kind: str) -> float:
    """How many events of ``kind`` the gateway process received from Redis."""
    registry = gateway.app.gateway.metrics.registry
    return registry.get_sample_value("wsauth_gateway_events_total", {"type": kind}) or 0.0


def topics(raw_redis: redis.Redis) -> set[str]:
    return {str(name) for name in raw_redis.pubsub_channels("wsauth:*")}


def test_a_node_receives_no_event_for_users_it_does_not_hold(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice:
        for index in range(200):
            assert publish_push(raw_redis, "wsauth:", f"elsewhere-{index}", index) == 0
            assert publish_message(raw_redis, "wsauth:", "not-here", index) == 0
        assert publish_push(raw_redis, "wsauth:", "alice", "mine") == 1
        assert next_json(alice) == {"type": "push", "data": "mine"}
    # Only alice's push ever reached the process.
    assert events_seen(gateway, "push") == 1
    assert events_seen(gateway, "message") == 0


def test_topics_are_subscribed_on_the_first_connection_and_dropped_after_the_last(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    assert topics(raw_redis) == {"wsauth:events"}
    with open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]):
        # The welcome came after the subscription: the topic is there already.
        assert topics(raw_redis) == {"wsauth:events", "wsauth:user:alice"}
        with open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]):
            assert raw_redis.pubsub_numsub("wsauth:user:alice") == [("wsauth:user:alice", 1)]
        wait_until(lambda: len(gateway.app.gateway.registry) == 1, what="one socket to close")
        assert "wsauth:user:alice" in topics(raw_redis)
    wait_until(
        lambda: topics(raw_redis) == {"wsauth:events"}, what="the user's topic to be dropped"
    )


def test_revocations_stay_on_the_broadcast_channel_every_node_reads(
    two_gateways: tuple[GatewayHandle, GatewayHandle], tokens: Tokens, raw_redis: redis.Redis
) -> None:
    first, second = two_gateways
    with open_socket(first.ws_url, tokens.issue(subject="alice")[0]):
        # Both processes hear it, though only the first holds alice.
        assert publish_revoke(raw_redis, "wsauth:", sub="alice") == 2
    wait_until(lambda: events_seen(second, "revoke") == 1, what="the second node to hear it")


def test_a_reconnect_storm_is_subscribed_in_a_few_batched_commands(
    settings: Settings, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    # A patient Redis timeout: the point is the batching, not a busy test machine.
    with run_gateway(settings.replace(redis_timeout=5.0)) as gateway:
        _storm(gateway, tokens, raw_redis)


def _storm(gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis) -> None:
    fanout = gateway.app.gateway.fanout
    assert fanout is not None
    users = [f"storm-{index}" for index in range(200)]
    issued = [tokens.issue(subject=user)[0] for user in users]
    before = fanout.commands
    counts: list[int] = []

    async def storm() -> None:
        welcomed = 0
        everyone = asyncio.Event()

        async def one(token: str) -> None:
            nonlocal welcomed
            headers = {"Authorization": f"Bearer {token}"}
            async with connect(gateway.ws_url, additional_headers=headers) as socket:
                assert json.loads(await socket.recv())["type"] == "welcome"
                welcomed += 1
                if welcomed == len(issued):
                    counts.append(fanout.commands - before)
                    everyone.set()
                await everyone.wait()

        await asyncio.gather(*(one(token) for token in issued))

    asyncio.run(storm())
    wait_until(lambda: topics(raw_redis) == {"wsauth:events"}, what="the storm's topics to go")
    subscribed, unsubscribed = counts[0], fanout.commands - before - counts[0]
    # 200 users came and went at once: far fewer commands than connections, each way.
    assert subscribed < len(users) / 5, subscribed
    assert unsubscribed < len(users) / 5, unsubscribed


def test_readiness_says_which_pub_sub_the_topics_use(gateway: GatewayHandle) -> None:
    document = requests.get(f"{gateway.http_url}/readyz", timeout=5).json()
    assert document["pubsub_mode"] == "classic"
    assert document["pubsub_mode_reason"] == "not a Redis Cluster"
    assert document["topics"] == 0
