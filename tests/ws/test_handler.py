"""ws/handler.py: the public mixin behind a host's own handler, in a host's own application.

The application is the host's (its own routes, Tornado's default ``log_function``,
no wsauth application settings), served on loopback, with a real Redis and the
``websockets`` client.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import tornado.web
import tornado.websocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.host_tornado import HostApp, run_host_app
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.sessions import revoke_session, revoke_subject
from wsauth.tornado import GatewayNode, WsAuthMixin


class EchoHandler(WsAuthMixin, tornado.websocket.WebSocketHandler):
    """A host handler: its own initialize, open, on_message and on_close, none calling super()."""

    def initialize(self, node: GatewayNode, seen: queue.Queue[Any]) -> None:  # type: ignore[override]
        super().initialize(node)
        self.seen = seen

    def open(self) -> None:
        self.seen.put(("open", self.current_user, self.claims.sid, self in self.gateway.registry))
        self.write_message(json.dumps({"hello": self.current_user}))

    def on_message(self, message: str | bytes) -> None:
        self.write_message(f"{self.current_user}: {message!s}")

    def on_close(self) -> None:
        self.seen.put(("close", self.current_user, self in self.gateway.registry))


class Unmounted(WsAuthMixin, tornado.websocket.WebSocketHandler):
    """Mounted without a node: a host's mistake."""


@pytest.fixture
def seen() -> queue.Queue[Any]:
    return queue.Queue()


@pytest.fixture
def make_host(
    seen: queue.Queue[Any],
) -> Callable[..., Any]:
    def build(settings: Settings, **app_settings: Any) -> Any:
        return run_host_app(
            settings,
            lambda node: [
                (r"/chat", EchoHandler, {"node": node, "seen": seen}),
                (r"/unmounted", Unmounted),
            ],
            **app_settings,
        )

    return build


@pytest.fixture
def host(settings: Settings, make_host: Callable[..., Any]) -> Iterator[HostApp]:
    with make_host(settings) as running:
        yield running


def _open(url: str, token: str) -> ClientConnection:
    return connect(url, subprotocols=["wsauth", f"wsauth.bearer.{token}"], open_timeout=5)  # type: ignore[list-item]


def _close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=5)
    except ConnectionClosed:
        pass
    return ws.close_code


def test_the_host_handler_gets_the_sub_as_current_user_and_its_own_messages(
    host: HostApp, tokens: Tokens, seen: queue.Queue[Any]
) -> None:
    token, claims = tokens.issue(subject="alice", sid="s-1")
    with _open(host.url("/chat"), token) as ws:
        assert ws.subprotocol == "wsauth"
        assert json.loads(ws.recv(timeout=5)) == {"hello": "alice"}
        ws.send("hi")
        assert ws.recv(timeout=5) == "alice: hi"
        # Registered before the host's open ran, though it never called super().open().
        assert seen.get(timeout=5) == ("open", "alice", "s-1", True)
    # Unregistered before the host's on_close ran, though it never called super().
    assert seen.get(timeout=5) == ("close", "alice", False)
    assert not tokens.recorded(claims)  # the token was spent
    assert len(host.node) == 0


def test_the_host_handler_refuses_like_the_gateway_and_never_opens(
    host: HostApp, tokens: Tokens, seen: queue.Queue[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token, _ = tokens.issue()
    with _open(host.url("/chat"), token):
        pass
    assert seen.get(timeout=5)[0] == "open"
    assert seen.get(timeout=5)[0] == "close"
    replayed = refusal(host.url("/chat"), additional_headers={"Authorization": f"Bearer {token}"})
    assert (replayed.status, replayed.error) == (401, "token_replayed")
    assert replayed.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert replayed.headers["x-request-id"]
    missing = refusal(host.url("/chat"))
    assert (missing.status, missing.error) == (401, "token_missing")
    other_origin = refusal(host.url("/chat"), origin="https://evil.example")  # type: ignore[arg-type]
    assert (other_origin.status, other_origin.error) == (403, "origin_not_allowed")
    fresh, fresh_claims = tokens.issue()
    # A refused request leaves the token unspent (the Origin check comes first).
    assert refusal(
        f"{host.url('/chat')}?ws_token={fresh}",
        origin="https://evil.example",  # type: ignore[arg-type]
    ).error == ("origin_not_allowed")
    assert tokens.recorded(fresh_claims)
    assert seen.empty()  # the host's open never ran for a refused handshake
    lines = [r.getMessage() for r in caplog.records]
    assert not any(token in line or fresh in line for line in lines)
    wsauth_lines = [r.getMessage() for r in caplog.records if r.name == "wsauth.gateway"]
    assert any(
        line.startswith("GET /chat 401 ") and "reason=token_replayed" in line
        for line in wsauth_lines
    )
    # The handshake lines are wsauth's, not Tornado's default (which prints the URI).
    assert not [
        r for r in caplog.records if r.name == "tornado.access" and "/chat" in r.getMessage()
    ]
    body, _ = host.node.metrics.render()
    assert b'wsauth_gateway_handshakes_total{outcome="accepted"} 1.0' in body
    assert b'wsauth_gateway_handshakes_total{outcome="token_replayed"} 1.0' in body


def test_the_handshake_rate_limit_applies_to_the_host_handler_with_429_and_retry_after(
    make_settings: Callable[..., Settings], make_host: Callable[..., Any], tokens: Tokens
) -> None:
    with make_host(make_settings(rate_limit_handshakes="2/minute")) as host:
        assert refusal(host.url("/chat")).status == 401
        assert refusal(host.url("/chat")).status == 401
        over = refusal(host.url("/chat"))
        assert (over.status, over.error) == (429, "rate_limited")
        assert int(over.headers["retry-after"]) >= 1
        # Blocked before the token is looked at: a good token is refused and stays unspent.
        token, claims = tokens.issue()
        blocked = refusal(
            host.url("/chat"), additional_headers={"Authorization": f"Bearer {token}"}
        )
        assert blocked.status == 429
        assert tokens.recorded(claims)


def test_a_push_reaches_the_host_handlers_connections_of_that_sub(
    host: HostApp, tokens: Tokens, redis_client: redis.Redis
) -> None:
    with _open(host.url("/chat"), tokens.issue(subject="alice")[0]) as ws:
        ws.recv(timeout=5)
        assert publish_push(redis_client, "wsauth:", "alice", {"n": 1}) == 1
        assert json.loads(ws.recv(timeout=5)) == {"type": "push", "data": {"n": 1}}


def test_revoking_the_sub_closes_the_host_handlers_connection_with_4001(
    host: HostApp, tokens: Tokens, redis_client: redis.Redis, seen: queue.Queue[Any]
) -> None:
    with (
        _open(host.url("/chat"), tokens.issue(subject="mallory")[0]) as revoked,
        _open(host.url("/chat"), tokens.issue(subject="alice", sid="s-2")[0]) as by_session,
        _open(host.url("/chat"), tokens.issue(subject="alice")[0]) as kept,
    ):
        revoked.recv(timeout=5)
        by_session.recv(timeout=5)
        kept.recv(timeout=5)
        revoke_subject(redis_client, "wsauth:", "mallory")
        revoke_session(redis_client, "wsauth:", "s-2")
        assert _close_code(revoked) == 4001
        assert _close_code(by_session) == 4001
        kept.send("still here")
        assert kept.recv(timeout=5) == "alice: still here"
    closes = [event for event in (seen.get(timeout=5) for _ in range(6)) if event[0] == "close"]
    assert sorted(closes) == [
        ("close", "alice", False),
        ("close", "alice", False),
        ("close", "mallory", False),
    ]


def test_the_host_handlers_connection_is_closed_with_4002_at_its_maximum_age(
    make_settings: Callable[..., Settings], make_host: Callable[..., Any], tokens: Tokens
) -> None:
    with (
        make_host(make_settings(max_connection_age=1)) as host,
        _open(host.url("/chat"), tokens.issue()[0]) as ws,
    ):
        assert _close_code(ws) == 4002


def test_a_message_over_the_size_limit_closes_the_host_handlers_connection_with_1009(
    make_settings: Callable[..., Settings], make_host: Callable[..., Any], tokens: Tokens
) -> None:
    # The host application sets no websocket_max_message_size: the mixin applies the setting.
    with (
        make_host(make_settings(max_message_size=64)) as host,
        _open(host.url("/chat"), tokens.issue()[0]) as ws,
    ):
        ws.recv(timeout=5)
        ws.send("x" * 65)
        assert _close_code(ws) == 1009


def test_closing_the_node_closes_the_host_handlers_connections_with_1001(
    host: HostApp, tokens: Tokens
) -> None:
    with _open(host.url("/chat"), tokens.issue()[0]) as ws:
        ws.recv(timeout=5)
        assert host.call(host.node.close_connections) == 0
        assert _close_code(ws) == 1001


def test_a_handler_mounted_without_a_node_answers_500_and_spends_no_token(
    host: HostApp, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    token, claims = tokens.issue()
    answer = refusal(
        host.url("/unmounted"), additional_headers={"Authorization": f"Bearer {token}"}
    )
    assert (answer.status, answer.error) == (500, "internal_error")
    assert tokens.recorded(claims)
    errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert errors == ["Unmounted has no GatewayNode: mount it with dict(node=node)"]
    assert not any(token in r.getMessage() for r in caplog.records)


def test_a_handler_listing_websockethandler_before_the_mixin_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="list WsAuthMixin before WebSocketHandler"):

        class Wrong(tornado.websocket.WebSocketHandler, WsAuthMixin):  # type: ignore[misc]
            pass


def test_a_handler_overriding_get_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"must not override get\(\)"):

        class Bypass(WsAuthMixin, tornado.websocket.WebSocketHandler):
            async def get(self, *args: Any, **kwargs: Any) -> None:
                await tornado.websocket.WebSocketHandler.get(self, *args, **kwargs)


def test_the_builtin_gateway_socket_is_the_public_mixin() -> None:
    from wsauth.ws.app import GatewaySocket

    assert issubclass(GatewaySocket, WsAuthMixin)
    assert issubclass(GatewaySocket, tornado.web.RequestHandler)
