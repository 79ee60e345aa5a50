"""wsauth.ws.client.ReconnectingClient's protocol v1 methods against a real gateway and Redis.

The tokens come from a fetcher that mints as a host application would, with the
scope the test sets at that moment (the issuer's own API tokens carry no scope).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.realtime.conftest import Issuer, open_socket
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_message
from wsauth.shared.state.inbox import Inbox
from wsauth.shared.state.replay import sync_client
from wsauth.ws.backoff import Backoff
from wsauth.ws.client import CommandRefused, ReconnectingClient

FAST = Backoff(base=0.01, cap=0.05)


class Host:
    """Mints a token for ``svc`` with the current ``scope``; counts them."""

    def __init__(self, tokens: Tokens, url: str, scope: str) -> None:
        self.tokens, self.url, self.scope, self.minted = tokens, url, scope, 0

    async def fetch(self) -> dict[str, Any]:
        self.minted += 1
        token, _ = self.tokens.issue(subject="svc", sid="svc-session", scope=self.scope)
        return {"token": token, "url": self.url}


async def next_of(iterator: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame of type ``kind`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await anext(iterator))
            if frame["type"] == kind:
                return dict(frame)


def test_the_python_client_subscribes_publishes_sends_and_is_refused_with_codes(
    gateway: GatewayHandle, tokens: Tokens, redis_url: str
) -> None:
    host = Host(tokens, gateway.ws_url, "sub:chat:* pub:chat:lobby")
    backend = Inbox(sync_client(redis_url, timeout=2), "wsauth:", group="g", consumer="c")
    backend.ensure_group()

    async def scenario() -> list[Any]:
        async with ReconnectingClient(host.fetch, backoff=FAST) as client:
            frames = aiter(client)
            await next_of(frames, "welcome")
            assert (await client.subscribe("chat:lobby"))["ok"] is True
            assert (await client.publish("chat:lobby", {"text": "hi"}))["ok"] is True
            message = await next_of(frames, "message")
            with pytest.raises(CommandRefused) as refused:
                await client.publish("chat:other", 1)
            assert refused.value.error == "not_granted"
            with pytest.raises(CommandRefused) as refused:
                await client.subscribe("news")
            assert refused.value.error == "not_granted" and "news" not in client.channels
            assert (await client.send({"order": 42}))["ok"] is True
            assert (await client.unsubscribe("chat:lobby"))["ok"] is True
            return [message]

    [message] = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert message == {"type": "message", "channel": "chat:lobby", "data": {"text": "hi"}}
    [sent] = backend.read()
    assert (sent.sub, sent.sid, sent.data) == ("svc", "svc-session", {"order": 42})


def test_the_python_client_refreshes_in_band_and_resubscribes_after_a_reconnect(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    lost: list[tuple[str, str]] = []

    async def scenario(gateway: GatewayHandle, host: Host) -> dict[str, Any]:
        client = ReconnectingClient(
            host.fetch, backoff=FAST, on_unsubscribed=lambda *args: lost.append(args)
        )
        async with client:
            frames = aiter(client)
            welcome = await next_of(frames, "welcome")
            assert 1.7 <= welcome["expires_in"] <= 2
            await client.subscribe("chat:a")
            await client.subscribe("chat:b")
            await asyncio.sleep(2.5)  # past the 2 s maximum age: refreshed, not reconnected
            assert client.refreshes >= 1 and client.connections == 1
            # A narrower scope at the next refresh leaves chat:b at once.
            host.scope = "sub:chat:a"
            await client.refresh()
            assert lost == [("chat:b", "scope_changed")]
            assert list(client.channels) == ["chat:a"]
            # A reconnect (the gateway closes with 1011) subscribes chat:a again.
            [connection] = gateway.app.gateway.registry.connections_of("svc")
            gateway.loop.call_soon_threadsafe(connection.close, 1011, "internal error")
            await next_of(frames, "welcome")
            assert client.connections == 2
            # Answered after the re-subscribe sent on the welcome (commands run in order).
            assert (await client.subscribe("chat:a"))["ok"] is True
            publish_message(redis_client, "wsauth:", "chat:a", "again")
            return await next_of(frames, "message")

    with run_gateway(make_settings(max_connection_age=2)) as gateway:
        host = Host(tokens, gateway.ws_url, "sub:chat:*")
        message = asyncio.run(asyncio.wait_for(scenario(gateway, host), 30))
    assert message["data"] == "again"


def test_the_demo_issuer_grants_browser_users_the_demo_channel_only(
    gateway: GatewayHandle, issuer: Issuer
) -> None:
    token = issuer.ws_token(issuer.login("alice"))
    with open_socket(gateway.ws_url, token) as socket:
        for command_id, channel in ((1, "demo"), (2, "chat:lobby")):
            socket.send(json.dumps({"type": "subscribe", "id": command_id, "channel": channel}))
        replies = [json.loads(socket.recv(timeout=5)) for _ in range(2)]
        socket.send(json.dumps({"type": "publish", "id": 3, "channel": "demo", "data": "hi"}))
        assert json.loads(socket.recv(timeout=5)) == {"type": "reply", "id": 3, "ok": True}
        assert json.loads(socket.recv(timeout=5)) == {
            "type": "message",
            "channel": "demo",
            "data": "hi",
        }
    assert [reply.get("ok", reply.get("error")) for reply in replies] == [True, "not_granted"]


def test_a_channel_subscribed_before_connecting_is_subscribed_on_connect(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    host = Host(tokens, gateway.ws_url, "sub:orders:*")

    async def scenario() -> dict[str, Any]:
        async with ReconnectingClient(host.fetch, backoff=FAST) as client:
            assert await client.subscribe("orders:eu") == {"pending": True}
            with pytest.raises(CommandRefused) as refused:
                await client.send("too early")
            assert refused.value.error == "not_connected"
            frames = aiter(client)
            await next_of(frames, "welcome")
            # Commands of a connection run in order: once this (idempotent) one is
            # answered, the re-subscribe sent on the welcome is done, topic included.
            assert (await client.subscribe("orders:eu"))["ok"] is True
            assert gateway.app.gateway.registry.members("orders:eu")
            publish_message(redis_client, "wsauth:", "orders:eu", {"order": 17})
            return await next_of(frames, "message")

    message = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert message["data"] == {"order": 17}
