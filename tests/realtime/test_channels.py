"""Channels on a real gateway: Gateway.join/leave, publish_message, the ``message`` frame."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from tests.realtime.conftest import next_json, open_socket, wait_until
from tests.support.gateway_server import GatewayHandle
from tests.ws.conftest import Tokens
from wsauth.shared.core.errors import BadChannel, BadEvent
from wsauth.shared.state.events import apublish_message, publish_message, publish_push
from wsauth.shared.state.replay import async_client


def connection_of(gateway: GatewayHandle, sub: str) -> Any:
    """The gateway-side connection of the one socket of ``sub``."""
    registry = gateway.app.gateway.registry
    wait_until(lambda: len(registry.connections_of(sub)) == 1, what=f"{sub}'s connection")
    return next(iter(registry.connections_of(sub)))


def join(gateway: GatewayHandle, connection: Any, channel: str) -> None:
    async def run() -> None:
        gateway.app.gateway.join(connection, channel)
        await gateway.app.gateway.synced()

    gateway.call(run)


def leave(gateway: GatewayHandle, connection: Any, channel: str) -> None:
    async def run() -> None:
        gateway.app.gateway.leave(connection, channel)
        await gateway.app.gateway.synced()

    gateway.call(run)


def test_a_channel_message_reaches_the_members_only_as_a_message_frame(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with (
        open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice,
        open_socket(gateway.ws_url, tokens.issue(subject="bob")[0]) as bob,
    ):
        join(gateway, connection_of(gateway, "alice"), "chat:lobby")
        join(gateway, connection_of(gateway, "alice"), "chat:lobby")  # idempotent
        publish_message(raw_redis, "wsauth:", "chat:lobby", {"text": "hi"})
        assert next_json(alice) == {
            "type": "message",
            "channel": "chat:lobby",
            "data": {"text": "hi"},
        }
        # Had bob (not a member) received it, it would come before this push.
        publish_push(raw_redis, "wsauth:", "bob", "for bob")
        assert next_json(bob) == {"type": "push", "data": "for bob"}


def test_a_connection_that_left_or_closed_gets_no_more_messages_of_the_channel(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with (
        open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice,
        open_socket(gateway.ws_url, tokens.issue(subject="bob")[0]) as bob,
    ):
        a, b = connection_of(gateway, "alice"), connection_of(gateway, "bob")
        join(gateway, a, "room")
        join(gateway, a, "other")
        join(gateway, b, "room")
        leave(gateway, a, "room")
        leave(gateway, a, "room")  # idempotent
        publish_message(raw_redis, "wsauth:", "room", 1)
        assert next_json(bob) == {"type": "message", "channel": "room", "data": 1}
        publish_message(raw_redis, "wsauth:", "other", 2)
        # alice left "room": the first thing she receives is the "other" message.
        assert next_json(alice) == {"type": "message", "channel": "other", "data": 2}
    registry = gateway.app.gateway.registry
    wait_until(lambda: len(registry) == 0, what="both connections to close")
    assert registry.channels() == frozenset()


def test_join_of_a_closed_connection_is_a_no_op(gateway: GatewayHandle, tokens: Tokens) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]):
        connection = connection_of(gateway, "alice")
    registry = gateway.app.gateway.registry
    wait_until(lambda: len(registry) == 0, what="the connection to close")
    join(gateway, connection, "late")
    assert registry.channels() == frozenset()


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "chat:*", "{tag}", "é", None, 7])
def test_join_and_publish_refuse_a_channel_name_outside_the_grammar(
    gateway: GatewayHandle, raw_redis: redis.Redis, name: Any
) -> None:
    with pytest.raises(BadChannel):
        gateway.app.gateway.join(object(), name)  # type: ignore[arg-type]
    with pytest.raises(BadChannel):
        gateway.app.gateway.leave(object(), name)  # type: ignore[arg-type]
    with pytest.raises(BadChannel):
        publish_message(raw_redis, "wsauth:", name, "x")


def test_publish_message_refuses_data_that_is_not_json(raw_redis: redis.Redis) -> None:
    with pytest.raises(BadEvent):
        publish_message(raw_redis, "wsauth:", "room", {1, 2})


def test_apublish_message_delivers_from_asyncio_code(
    gateway: GatewayHandle, tokens: Tokens, redis_url: str
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice:
        join(gateway, connection_of(gateway, "alice"), "a.b_c-d@e:f")

        async def publish() -> int:
            client = async_client(redis_url, timeout=2.0)
            try:
                return await apublish_message(client, "wsauth:", "a.b_c-d@e:f", [1])
            finally:
                await client.aclose()

        assert asyncio.run(publish()) == 1
        assert next_json(alice) == {"type": "message", "channel": "a.b_c-d@e:f", "data": [1]}
