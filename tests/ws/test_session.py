"""ws/session.py: protocol v1 on a real gateway, a real Redis and the ``websockets`` client.

The pure parts (the command bucket, the outbox count) are tested with plain values
at the end.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.inbox import Inbox, InboxMessage, inbox_key
from wsauth.shared.state.replay import sync_client
from wsauth.tornado import ProtocolHandler
from wsauth.ws.session import CommandBucket, Outbox

CHAT = "sub:chat:* pub:chat:*"


@contextlib.contextmanager
def socket(
    gateway: GatewayHandle, token: str, **options: Any
) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    """An open connection and its welcome frame."""
    headers = {"Authorization": f"Bearer {token}"}
    with connect(gateway.ws_url, additional_headers=headers, open_timeout=5, **options) as ws:
        yield ws, json.loads(ws.recv(timeout=5))


def command(ws: ClientConnection, **frame: Any) -> dict[str, Any]:
    """Send one command; return its reply (frames before the reply are an error here)."""
    ws.send(json.dumps(frame))
    reply = json.loads(ws.recv(timeout=5))
    assert reply["type"] == "reply" and reply["id"] == frame.get("id"), reply
    return dict(reply)


def next_frame(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


def nothing_more(ws: ClientConnection) -> bool:
    try:
        ws.recv(timeout=0.3)
    except TimeoutError:
        return True
    return False


# --- subscribe, publish, unsubscribe --------------------------------------------------


def test_a_publish_reaches_every_subscriber_the_sender_too(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    with (
        socket(gateway, tokens.issue(subject="alice", scope=CHAT)[0]) as (alice, _),
        socket(gateway, tokens.issue(subject="bob", scope="sub:chat:lobby")[0]) as (bob, _),
    ):
        assert command(alice, type="subscribe", id=1, channel="chat:lobby")["ok"] is True
        assert command(bob, type="subscribe", id="b1", channel="chat:lobby")["ok"] is True
        assert command(alice, type="publish", id=2, channel="chat:lobby", data={"text": "hi"}) == {
            "type": "reply",
            "id": 2,
            "ok": True,
        }
        expected = {"type": "message", "channel": "chat:lobby", "data": {"text": "hi"}}
        assert next_frame(alice) == expected
        assert next_frame(bob) == expected


def test_a_subscribe_or_publish_the_scope_does_not_grant_is_refused_not_dropped(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    with socket(gateway, tokens.issue(subject="bob", scope="sub:chat:lobby")[0]) as (bob, _):
        assert command(bob, type="subscribe", id=1, channel="chat:secret")["error"] == "not_granted"
        reply = command(bob, type="publish", id=2, channel="chat:lobby", data="x")
        assert reply["error"] == "not_granted"  # sub: does not grant pub:
    with socket(gateway, tokens.issue(subject="eve")[0]) as (eve, _):  # no scope at all
        assert command(eve, type="subscribe", id=1, channel="chat:lobby")["error"] == "not_granted"


def test_after_unsubscribe_no_more_messages_of_the_channel_arrive(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    with socket(gateway, tokens.issue(subject="alice", scope=CHAT)[0]) as (alice, _):
        command(alice, type="subscribe", id=1, channel="chat:a")
        command(alice, type="subscribe", id=2, channel="chat:a")  # idempotent
        assert command(alice, type="unsubscribe", id=3, channel="chat:a")["ok"] is True
        assert command(alice, type="unsubscribe", id=4, channel="chat:a")["ok"] is True
        command(alice, type="publish", id=5, channel="chat:a", data=1)
        assert nothing_more(alice)


def test_subscriptions_per_connection_are_capped(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with run_gateway(make_settings(max_subscriptions=2)) as gateway:
        token = tokens.issue(scope=CHAT)[0]
        with socket(gateway, token) as (ws, _):
            command(ws, type="subscribe", id=1, channel="chat:1")
            command(ws, type="subscribe", id=2, channel="chat:2")
            assert command(ws, type="subscribe", id=3, channel="chat:3")["error"] == (
                "too_many_subscriptions"
            )
            assert command(ws, type="subscribe", id=4, channel="chat:2")["ok"] is True
            command(ws, type="unsubscribe", id=5, channel="chat:1")
            assert command(ws, type="subscribe", id=6, channel="chat:3")["ok"] is True


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ("{", {"id": None, "error": "bad_json"}),
        ('{"type": "subscribe", "channel": "chat:a"}', {"id": None, "error": "bad_command"}),
        ('{"type": "dance", "id": 3}', {"id": 3, "error": "unknown_type"}),
        ('{"type": "subscribe", "id": 4, "channel": "a b"}', {"id": 4, "error": "bad_channel"}),
        (
            '{"type": "publish", "id": 5, "channel": 7, "data": 1}',
            {"id": 5, "error": "bad_channel"},
        ),
        ('{"type": "send", "id": 6, "data": 1, "as": "admin"}', {"id": 6, "error": "bad_command"}),
        (
            '{"type": "refresh", "id": 7, "token": "not.a.token"}',
            {"id": 7, "error": "token_malformed"},
        ),
    ],
)
def test_a_bad_command_gets_an_error_reply_and_the_connection_stays_usable(
    gateway: GatewayHandle, tokens: Tokens, frame: str, reply: dict[str, Any]
) -> None:
    with socket(gateway, tokens.issue(scope=CHAT)[0]) as (ws, _):
        ws.send(frame)
        assert next_frame(ws) == {"type": "reply", **reply}
        assert command(ws, type="subscribe", id=99, channel="chat:a")["ok"] is True


def test_a_flood_of_commands_is_rate_limited_per_connection_only(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with (
        run_gateway(make_settings(command_rate=1, command_burst=5)) as gateway,
        socket(gateway, tokens.issue(subject="mallory", scope=CHAT)[0]) as (flood, _),
        socket(gateway, tokens.issue(subject="alice", scope=CHAT)[0]) as (alice, _),
    ):
        for index in range(20):
            flood.send(json.dumps({"type": "subscribe", "id": index, "channel": "chat:x"}))
        replies = [next_frame(flood) for _ in range(20)]
        assert [reply.get("ok") for reply in replies[:5]] == [True] * 5
        refused = replies[5:]
        assert {reply["error"] for reply in refused} == {"rate_limited"}
        assert all(0 < reply["retry_after"] <= 1 for reply in refused)
        # Malformed frames count too: garbage is no way around the limit.
        flood.send("garbage")
        reply = next_frame(flood)
        assert (reply["id"], reply["error"]) == (None, "rate_limited")
        # The other connection is untouched.
        assert command(alice, type="subscribe", id=1, channel="chat:x")["ok"] is True


# --- send: the inbox stream -----------------------------------------------------------


def test_send_appends_the_data_with_the_senders_identity_to_the_inbox(
    gateway: GatewayHandle, tokens: Tokens, redis_url: str
) -> None:
    client = sync_client(redis_url, timeout=1)
    inbox = Inbox(client, "wsauth:", group="backend", consumer="b1")
    inbox.ensure_group()
    try:
        token, _claims = tokens.issue(subject="alice", sid="session-1")
        with socket(gateway, token) as (ws, _):
            assert command(ws, type="send", id=1, data={"order": 42})["ok"] is True
            assert command(ws, type="send", id=2, data=None)["ok"] is True
        first, second = inbox.read(count=10, block=1.0)
        assert (first.sub, first.sid, first.data) == ("alice", "session-1", {"order": 42})
        assert second.data is None and second.connection == first.connection
        assert first.connection and abs(first.at - time.time()) < 30
        assert inbox.pending() == 2
        assert inbox.ack(first.id, second.id) == 2
        assert inbox.read(block=None) == []
    finally:
        client.close()


def test_the_inbox_stream_is_capped(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    with (
        run_gateway(make_settings(inbox_max_length=1, command_burst=1000)) as gateway,
        socket(gateway, tokens.issue()[0]) as (ws, _),
    ):
        for index in range(300):
            ws.send(json.dumps({"type": "send", "id": index, "data": "x" * 100}))
        for _ in range(300):
            assert next_frame(ws).get("ok") is True
    # MAXLEN ~ trims whole macro nodes (100 entries by default): about the cap.
    assert redis_client.xlen(inbox_key("wsauth:")) <= 200


# --- refresh --------------------------------------------------------------------------


def test_refresh_with_a_narrower_scope_leaves_the_channels_no_longer_granted_at_once(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    with (
        socket(gateway, tokens.issue(subject="bob", sid="s1", scope=CHAT)[0]) as (bob, _),
        socket(gateway, tokens.issue(subject="alice", scope=CHAT)[0]) as (alice, _),
    ):
        for channel in ("chat:a", "chat:b"):
            command(bob, type="subscribe", id=channel, channel=channel)
        command(alice, type="subscribe", id=1, channel="chat:a")
        fresh, claims = tokens.issue(subject="bob", sid="s1", scope="sub:chat:b")
        bob.send(json.dumps({"type": "refresh", "id": 9, "token": fresh}))
        assert next_frame(bob) == {
            "type": "unsubscribed",
            "channel": "chat:a",
            "reason": "scope_changed",
        }
        assert next_frame(bob) == {"type": "reply", "id": 9, "ok": True, "expires_in": None}
        assert not tokens.recorded(claims)  # consumed like a handshake
        command(alice, type="publish", id=2, channel="chat:a", data="gone?")
        assert next_frame(alice)["data"] == "gone?"
        assert nothing_more(bob)
        # The new scope applies to the next subscribe; the old one no longer does.
        assert command(bob, type="subscribe", id=10, channel="chat:a")["error"] == "not_granted"
        assert command(bob, type="publish", id=11, channel="chat:b", data=1)["error"] == (
            "not_granted"
        )


@pytest.mark.parametrize(
    ("other", "code"),
    [
        ({"subject": "mallory", "sid": "s1"}, "subject_mismatch"),
        ({"sid": "s2"}, "subject_mismatch"),
    ],
)
def test_refresh_with_a_token_of_another_sub_or_sid_is_refused_and_leaves_it_unspent(
    gateway: GatewayHandle, tokens: Tokens, other: dict[str, Any], code: str
) -> None:
    with socket(gateway, tokens.issue(subject="bob", sid="s1", scope=CHAT)[0]) as (bob, _):
        fresh, claims = tokens.issue(**{"subject": "bob", "scope": "sub:*", **other})
        assert command(bob, type="refresh", id=1, token=fresh)["error"] == code
        assert tokens.recorded(claims)
        assert command(bob, type="subscribe", id=2, channel="news")["error"] == "not_granted"


def test_refresh_with_a_spent_or_unsigned_token_is_refused(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    first, _ = tokens.issue(subject="bob")
    with socket(gateway, first) as (bob, _):
        assert command(bob, type="refresh", id=1, token=first)["error"] == "token_replayed"
        unrecorded, _ = tokens.issue(subject="bob", record=False)
        assert command(bob, type="refresh", id=2, token=unrecorded)["error"] == "token_replayed"
        expired, _ = tokens.issue(subject="bob", now=int(time.time()) - 120)
        assert command(bob, type="refresh", id=3, token=expired)["error"] == "token_expired"


def test_refresh_extends_the_connection_past_its_maximum_age(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with (
        run_gateway(make_settings(max_connection_age=2)) as gateway,
        socket(gateway, tokens.issue(subject="bob")[0]) as (bob, welcome),
    ):
        assert 1.7 <= welcome["expires_in"] <= 2
        time.sleep(1.0)
        reply = command(bob, type="refresh", id=1, token=tokens.issue(subject="bob")[0])
        assert 1.7 <= reply["expires_in"] <= 2
        time.sleep(1.2)  # past the first deadline: still open
        assert command(bob, type="subscribe", id=2, channel="x")["error"] == "not_granted"
        with pytest.raises(ConnectionClosed) as closed:
            bob.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002


# --- slow readers ---------------------------------------------------------------------


def test_a_reader_that_falls_behind_is_closed_with_4004_and_others_keep_theirs(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    with (
        run_gateway(make_settings(max_pending_bytes=256 * 1024)) as gateway,
        # max_queue=1: the client stops reading its socket after one frame.
        socket(gateway, tokens.issue(subject="slow")[0], max_queue=1),
        socket(gateway, tokens.issue(subject="fast")[0]),
    ):
        registry = gateway.app.gateway.registry
        [connection] = registry.connections_of("slow")
        frame = "x" * 60_000

        def flood() -> None:
            for _ in range(400):  # 24 MB: more than every socket buffer on the way
                connection.send(frame)

        gateway.loop.call_soon_threadsafe(flood)
        deadline = time.monotonic() + 10
        while registry.connections_of("slow") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not registry.connections_of("slow")
        assert connection.close_code in (4004, None)
        assert connection._close_sent == 4004
        assert len(registry.connections_of("fast")) == 1


# --- pure parts -----------------------------------------------------------------------


def test_the_command_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = CommandBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    assert bucket.take(100.5) is True
    assert bucket.take(100.5) is False
    assert [bucket.take(110.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_the_outbox_counts_queued_bytes_until_written() -> None:
    outbox = Outbox(100)
    assert outbox.queued(60) is True
    assert outbox.queued(40) is True
    assert outbox.queued(1) is False
    outbox.written(101)
    assert outbox.pending == 0


def test_commands_are_counted_by_command_and_outcome(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    with socket(gateway, tokens.issue(scope=CHAT)[0]) as (ws, _):
        command(ws, type="subscribe", id=1, channel="chat:a")
        command(ws, type="subscribe", id=2, channel="news")
        ws.send("{")
        next_frame(ws)
    body = urllib.request.urlopen(f"{gateway.http_url}/metrics", timeout=5).read().decode()  # noqa: S310
    for line in (
        'wsauth_gateway_commands_total{command="subscribe",outcome="ok"} 1.0',
        'wsauth_gateway_commands_total{command="subscribe",outcome="not_granted"} 1.0',
        'wsauth_gateway_commands_total{command="invalid",outcome="bad_json"} 1.0',
    ):
        assert line in body


class HostSocket(ProtocolHandler):  # the public name of the built-in handler
    """A host application's handler that takes ``send`` messages itself."""

    taken: ClassVar[list[InboxMessage]] = []

    async def send_handler(self, message: InboxMessage) -> None:  # type: ignore[override]
        self.taken.append(message)
        self.send(json.dumps({"type": "push", "data": {"taken": message.data}}))


def test_a_host_handler_may_take_send_messages_instead_of_the_inbox(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    async def mount() -> None:
        gateway.app.add_handlers(r".*", [(r"/host-ws", HostSocket, {"node": gateway.app.node})])

    gateway.call(mount)
    headers = {"Authorization": f"Bearer {tokens.issue(subject='alice', sid='s')[0]}"}
    with connect(gateway.ws_url.replace("/ws", "/host-ws"), additional_headers=headers) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        ws.send(json.dumps({"type": "send", "id": 1, "data": "hello host"}))
        assert next_frame(ws) == {"type": "push", "data": {"taken": "hello host"}}
        assert next_frame(ws) == {"type": "reply", "id": 1, "ok": True}
    [taken] = HostSocket.taken
    assert (taken.sub, taken.sid, taken.data) == ("alice", "s", "hello host")
    assert not redis_client.exists(inbox_key("wsauth:"))


@given(
    st.floats(min_value=0.1, max_value=1000),
    st.integers(min_value=1, max_value=500),
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=300),
)
def test_the_command_bucket_never_allows_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    now = 1000.0
    bucket = CommandBucket(rate=rate, burst=burst, now=now)
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += bucket.take(now)
        assert allowed <= burst + rate * (now - 1000.0) + 1e-6
