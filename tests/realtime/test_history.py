"""History and recovery on a real gateway: subscribe with ``since``, offsets and epochs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from websockets.sync.client import ClientConnection

from tests.realtime.conftest import next_json, open_socket
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.cli.main import cli
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_message
from wsauth.shared.state.history import History, meta_key, stream_key

SCOPE = "sub:chat:* pub:chat:* sub:plain"


@pytest.fixture
def history_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(history_channels="chat:*", history_size=100)


@pytest.fixture
def gateway(history_settings: Settings) -> Iterator[GatewayHandle]:
    with run_gateway(history_settings) as handle:
        yield handle


def command(socket: ClientConnection, **frame: Any) -> dict[str, Any]:
    """Send a command; return its reply (frames before the reply go to ``socket.seen``)."""
    socket.send(json.dumps(frame))
    seen: list[dict[str, Any]] = getattr(socket, "seen", [])
    socket.seen = seen  # type: ignore[attr-defined]
    while True:
        message = next_json(socket)
        if message.get("type") == "reply" and message.get("id") == frame["id"]:
            return dict(message)
        seen.append(message)


def publish(settings: Settings, client: redis.Redis, channel: str, data: Any) -> None:
    publish_message(client, "wsauth:", channel, data, history=History.from_settings(settings))


def test_messages_of_a_history_channel_carry_offset_and_epoch_and_recover_after_a_drop(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        reply = command(socket, type="subscribe", id=1, channel="chat:lobby")
        assert reply["ok"] is True and "offset" not in reply  # no stream yet
        publish(history_settings, raw_redis, "chat:lobby", "one")
        first = next_json(socket)
        assert (first["data"], first["offset"]) == ("one", "1")
        epoch = first["epoch"]
    for n in range(2, 6):  # while the client is away
        publish(history_settings, raw_redis, "chat:lobby", n)
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        since = {"offset": "1", "epoch": epoch}
        reply = command(socket, type="subscribe", id=2, channel="chat:lobby", since=since)
        recovered = socket.seen  # type: ignore[attr-defined]
        assert [(m["data"], m["offset"], m["epoch"]) for m in recovered] == [
            (n, str(n), epoch) for n in range(2, 6)
        ]
        assert (reply["recovered"], reply["offset"], reply["epoch"]) == (True, "5", epoch)
        publish(history_settings, raw_redis, "chat:lobby", 6)
        assert next_json(socket)["offset"] == "6"


def test_a_subscribe_while_messages_flow_gets_every_one_once_in_order(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    history = History.from_settings(history_settings)
    publish_message(raw_redis, "wsauth:", "chat:busy", 0, history=history)
    epoch = raw_redis.hget(meta_key("wsauth:", "chat:busy"), "epoch")
    stop = threading.Event()

    def publisher() -> None:
        client = redis.Redis.from_url(str(history_settings.redis_url))
        n = 1
        while not stop.is_set() and n < 80:
            publish_message(client, "wsauth:", "chat:busy", n, history=history)
            n += 1
        client.close()

    thread = threading.Thread(target=publisher)
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        thread.start()
        since = {"offset": "1", "epoch": epoch}  # has seen message 0 (offset 1)
        reply = command(socket, type="subscribe", id=1, channel="chat:busy", since=since)
        thread.join()
        got = [m["data"] for m in socket.seen]  # type: ignore[attr-defined]
        top = int(reply["offset"])
        while len(got) < 79:
            got.append(next_json(socket)["data"])
    assert reply["recovered"] is True
    assert top >= 1
    assert got == list(range(1, 80))


def test_recovery_after_the_history_was_lost_says_epoch_changed(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    publish(history_settings, raw_redis, "chat:x", "before")
    old = raw_redis.hget(meta_key("wsauth:", "chat:x"), "epoch")
    raw_redis.flushdb()  # Redis restarted empty
    publish(history_settings, raw_redis, "chat:x", "after")
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        since = {"offset": "1", "epoch": old}
        reply = command(socket, type="subscribe", id=1, channel="chat:x", since=since)
        assert socket.seen == []  # type: ignore[attr-defined]
    assert (reply["recovered"], reply["reason"], reply["offset"]) == (False, "epoch_changed", "1")
    assert reply["epoch"] != old


def test_since_on_a_channel_without_history_is_not_recovered(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        since = {"offset": "3", "epoch": "whatever"}
        reply = command(socket, type="subscribe", id=1, channel="plain", since=since)
    assert (reply["ok"], reply["recovered"], reply["reason"]) == (True, False, "no_history")


def test_a_bad_position_is_an_error_reply_and_joins_nothing(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        since = {"offset": "-1", "epoch": "e"}
        reply = command(socket, type="subscribe", id=1, channel="chat:y", since=since)
        assert reply["error"] == "bad_command"
        [connection] = gateway.app.gateway.registry.connections_of("alice")
        assert "chat:y" not in connection.session.subscriptions


def test_a_publish_from_the_socket_goes_through_the_history(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        command(socket, type="subscribe", id=1, channel="chat:room")
        command(socket, type="publish", id=2, channel="chat:room", data={"a": 1})
        seen = socket.seen or [next_json(socket)]  # type: ignore[attr-defined]
    assert (seen[0]["data"], seen[0]["offset"]) == ({"a": 1}, "1")
    assert raw_redis.xlen(stream_key("wsauth:", "chat:room")) == 1


def test_a_history_read_without_the_sub_grant_is_refused_before_anything_is_read(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    publish(history_settings, raw_redis, "chat:secret", "classified")
    epoch = raw_redis.hget(meta_key("wsauth:", "chat:secret"), "epoch")
    with open_socket(gateway.ws_url, tokens.issue(scope="sub:plain")[0]) as socket:
        since = {"offset": "0", "epoch": epoch}
        reply = command(socket, type="subscribe", id=1, channel="chat:secret", since=since)
        assert socket.seen == []  # type: ignore[attr-defined]
    assert reply["error"] == "not_granted"


def test_wsauth_publish_from_a_backend_goes_through_the_history(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(scope=SCOPE)[0]) as socket:
        command(socket, type="subscribe", id=1, channel="chat:cli")
        result = CliRunner().invoke(
            cli,
            ["publish", "chat:cli", '{"from": "cli"}'],
            env={
                "WSAUTH_REDIS_URL": str(history_settings.redis_url),
                "WSAUTH_HISTORY_CHANNELS": "chat:*",
            },
        )
        assert result.exit_code == 0, result.output
        frame = next_json(socket)
    assert (frame["data"], frame["offset"]) == ({"from": "cli"}, "1")
    assert raw_redis.xlen(stream_key("wsauth:", "chat:cli")) == 1
