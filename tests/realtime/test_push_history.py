"""History of pushes to users (``WSAUTH_HISTORY_USERS``) on a real gateway and Redis.

A client offers the last push it saw in the handshake
(``wsauth.since.<offset>.<epoch>``); the welcome says whether the gap was filled,
then the missed pushes come, then live ones: in order, none twice.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from websockets.sync.client import ClientConnection, connect

from tests.realtime.conftest import next_json
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.cli.main import cli
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.history import History, Position, user_meta_key, user_stream_key
from wsauth.ws.handshake import push_since

PREFIX = "wsauth:"


@pytest.fixture
def history_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(history_users="true", history_size=100)


@pytest.fixture
def gateway(history_settings: Settings) -> Iterator[GatewayHandle]:
    with run_gateway(history_settings) as handle:
        yield handle


@contextlib.contextmanager
def connected(
    url: str, token: str, since: tuple[str, str] | None = None
) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    """Connect with a Bearer token (and a push position); yield the socket and welcome."""
    options: dict[str, Any] = {"additional_headers": {"Authorization": f"Bearer {token}"}}
    if since is not None:
        options["subprotocols"] = ["wsauth", f"wsauth.since.{since[0]}.{since[1]}"]
    with connect(url, open_timeout=5, **options) as socket:
        welcome = json.loads(socket.recv(timeout=5))
        assert welcome["type"] == "welcome", welcome
        yield socket, welcome


def push(settings: Settings, client: redis.Redis, sub: str, data: Any) -> None:
    publish_push(client, PREFIX, sub, data, history=History.from_settings(settings))


def test_pushes_carry_offset_and_epoch_and_the_welcome_says_where_the_user_is(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    with connected(gateway.ws_url, tokens.issue(subject="alice")[0]) as (socket, welcome):
        assert welcome["push"] == {}  # no push kept for alice yet: no position
        push(history_settings, raw_redis, "alice", {"n": 1})
        frame = next_json(socket)
    assert (frame["type"], frame["data"], frame["offset"]) == ("push", {"n": 1}, "1")
    epoch = frame["epoch"]
    assert raw_redis.ttl(user_stream_key(PREFIX, "alice")) > 0
    assert raw_redis.ttl(user_meta_key(PREFIX, "alice")) > 0
    with connected(gateway.ws_url, tokens.issue(subject="alice")[0]) as (_, welcome):
        assert welcome["push"] == {"offset": "1", "epoch": epoch}


def test_pushes_published_while_away_come_after_the_welcome_in_order_then_live_ones(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    with connected(gateway.ws_url, tokens.issue(subject="bob")[0]) as (socket, _):
        push(history_settings, raw_redis, "bob", "one")
        first = next_json(socket)
    for n in range(2, 6):  # nobody holds bob: kept in the history only
        push(history_settings, raw_redis, "bob", n)
    since = (first["offset"], first["epoch"])
    with connected(gateway.ws_url, tokens.issue(subject="bob")[0], since) as (socket, welcome):
        assert socket.subprotocol == "wsauth"
        assert welcome["push"] == {"recovered": True, "offset": "5", "epoch": first["epoch"]}
        missed = [next_json(socket) for _ in range(4)]
        push(history_settings, raw_redis, "bob", 6)
        live = next_json(socket)
    assert [(m["type"], m["data"], m["offset"]) for m in missed] == [
        ("push", n, str(n)) for n in range(2, 6)
    ]
    assert (live["data"], live["offset"]) == (6, "6")


def test_pushes_flowing_during_the_handshake_arrive_once_each_in_order(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    push(history_settings, raw_redis, "carol", 0)
    epoch = raw_redis.hget(user_meta_key(PREFIX, "carol"), "epoch")
    started = threading.Event()

    def publisher() -> None:
        client = redis.Redis.from_url(str(history_settings.redis_url))
        started.set()
        for n in range(1, 150):
            push(history_settings, client, "carol", n)
            time.sleep(0.001)
        client.close()

    thread = threading.Thread(target=publisher)
    thread.start()
    started.wait()
    try:
        token = tokens.issue(subject="carol")[0]
        with connected(gateway.ws_url, token, ("1", epoch)) as (socket, welcome):
            got = []
            while len(got) < 149:
                got.append(next_json(socket)["data"])
    finally:
        thread.join()
    assert welcome["push"]["recovered"] is True
    assert got == list(range(1, 150))


def test_a_lost_push_history_says_epoch_changed_in_the_welcome(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    push(history_settings, raw_redis, "dave", "before")
    old = raw_redis.hget(user_meta_key(PREFIX, "dave"), "epoch")
    raw_redis.delete(user_meta_key(PREFIX, "dave"), user_stream_key(PREFIX, "dave"))  # expired
    push(history_settings, raw_redis, "dave", "after")
    token = tokens.issue(subject="dave")[0]
    with connected(gateway.ws_url, token, ("1", old)) as (socket, welcome):
        assert welcome["push"]["recovered"] is False
        assert welcome["push"]["reason"] == "epoch_changed"
        assert welcome["push"]["offset"] == "1" and welcome["push"]["epoch"] != old
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.3)  # nothing of the new epoch is replayed as if missed


def test_a_since_on_a_gateway_without_push_history_says_no_history(
    settings: Settings, tokens: Tokens
) -> None:
    with run_gateway(settings) as plain:
        with connected(plain.ws_url, tokens.issue()[0], ("3", "AAAAAAAAAAAA")) as (_, welcome):
            assert welcome["push"] == {"recovered": False, "reason": "no_history"}
        with connected(plain.ws_url, tokens.issue()[0]) as (_, welcome):
            assert "push" not in welcome


@pytest.mark.parametrize(
    "offered",
    [
        ["wsauth", "wsauth.since.x.AAAA"],
        ["wsauth", "wsauth.since.1"],
        ["wsauth", "wsauth.since.01.AAAA"],
        ["wsauth", "wsauth.since.1.AAAA", "wsauth.since.2.AAAA"],
        ["wsauth.since.1.AAAA"],
    ],
)
def test_a_malformed_push_position_is_400_before_the_token_is_spent(
    gateway: GatewayHandle, tokens: Tokens, offered: list[str]
) -> None:
    token, claims = tokens.issue()
    answer = refusal(
        gateway.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=offered,
    )
    assert (answer.status, answer.error) == (400, "bad_request")
    assert tokens.recorded(claims)  # not spent: the client may try again with it


def test_a_sub_with_a_brace_keeps_no_push_history(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    with connected(gateway.ws_url, tokens.issue(subject="odd{name}")[0]) as (socket, welcome):
        assert "push" not in welcome
        push(history_settings, raw_redis, "odd{name}", "live only")
        frame = next_json(socket)
    assert frame == {"type": "push", "data": "live only"}
    assert raw_redis.keys(f"{PREFIX}history:*") == []


def test_the_push_position_is_read_from_the_since_subprotocol_only() -> None:
    assert push_since(["wsauth, wsauth.bearer.abc"]) is None
    assert push_since(["wsauth, wsauth.since.17.Ab-_"]) == Position(17, "Ab-_")
    assert push_since(["wsauth", "wsauth.since.0.e"]) == Position(0, "e")


def test_wsauth_push_from_a_backend_keeps_the_push_in_the_users_history(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis, history_settings: Settings
) -> None:
    with connected(gateway.ws_url, tokens.issue(subject="erin")[0]) as (socket, _):
        result = CliRunner().invoke(
            cli,
            ["push", "erin", '{"from": "cli"}'],
            env={
                "WSAUTH_REDIS_URL": str(history_settings.redis_url),
                "WSAUTH_HISTORY_USERS": "true",
            },
        )
        assert result.exit_code == 0, result.output
        frame = next_json(socket)
    assert (frame["data"], frame["offset"]) == ({"from": "cli"}, "1")
    assert raw_redis.xlen(user_stream_key(PREFIX, "erin")) == 1


def test_an_unreadable_push_history_says_so_in_the_welcome_and_live_pushes_still_flow(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    # A real Redis error on the read (WRONGTYPE: the meta key is a list here).
    raw_redis.rpush(user_meta_key(PREFIX, "frank"), "not a hash")
    token = tokens.issue(subject="frank")[0]
    with connected(gateway.ws_url, token, ("3", "AAAAAAAAAAAA")) as (socket, welcome):
        assert welcome["push"] == {"recovered": False, "reason": "redis_unavailable"}
        publish_push(raw_redis, PREFIX, "frank", "live")  # without history: still delivered
        assert next_json(socket) == {"type": "push", "data": "live"}
