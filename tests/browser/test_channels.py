"""Channels with /static/wsauth.js in Chromium, against a real issuer, gateway and Redis.

The host application decides each user's scope when it mints (DESIGN.md, "Channels
and scopes"); here that host is a token endpoint routed by Playwright on the issuer's
origin (``/test-token?user=...``), which mints and records real tokens with the
stack's key and Redis, with the scope the test sets for each user at that moment.
Pages and the module are the real issuer's origin; the gateway is the real one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Route

from tests.browser.conftest import Stack
from tests.ws.conftest import Tokens, tokens
from wsauth.shared.state.events import publish_message, publish_push
from wsauth.shared.state.inbox import Inbox
from wsauth.shared.state.replay import sync_client

__all__ = ["tokens"]  # the gateway tests' token builder, as a fixture here too

CHAT = "chat:ab"
CHAT_SCOPE = f"sub:{CHAT} pub:{CHAT}"

PAGE_SCRIPT = """
async ([tokenUrl]) => {
  const { connect } = await import("/static/wsauth.js");
  window.got = [];
  window.pushes = [];
  window.statuses = [];
  window.reasons = [];
  window.unsubscribed = [];
  window.refreshErrors = [];
  window.client = connect({
    tokenUrl,
    baseDelay: 50,
    onStatus: (status) => {
      window.statuses.push(status.state);
      window.reasons.push(`${status.state}:${status.code}:${status.reason}`);
    },
    onMessage: (message) => { if (message.type === "push") window.pushes.push(message.data); },
    onUnsubscribed: (channel, reason) => window.unsubscribed.push(`${channel}:${reason}`),
    onRefreshError: (error) => window.refreshErrors.push(String(error.code || error)),
  });
  await new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (window.client.state === "open") return resolve();
      if (Date.now() - started > 5000) return reject(new Error(JSON.stringify(window.reasons)));
      setTimeout(check, 10);
    };
    check();
  });
}
"""


@dataclass
class Host:
    """The routed token endpoint: mints for ``?user=`` with ``scopes[user]``."""

    stack: Stack
    tokens: Tokens
    scopes: dict[str, str] = field(default_factory=dict)
    minted: dict[str, int] = field(default_factory=dict)

    def serve(self, route: Route) -> None:
        parts = urlsplit(route.request.url)
        user = parse_qs(parts.query)["user"][0]
        token, claims = self.tokens.issue(
            subject=user,
            sid=f"sid-{user}",
            scope=self.scopes.get(user),
            issuer=self.stack.issuer_url,
        )
        self.minted[user] = self.minted.get(user, 0) + 1
        body = {
            "token": token,
            "expires_in": claims.exp - claims.iat,
            "url": self.stack.gateway.ws_url,
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def open(self, page: Page, user: str) -> Page:
        base = self.stack.issuer_url
        page.route(lambda url: url.startswith(f"{base}/test-token?"), self.serve)
        # A document the real issuer serves (its 404 page): a page fulfilled by Playwright
        # counts as a public one, which Chromium keeps from opening loopback sockets.
        page.goto(f"{base}/chat")
        page.evaluate(PAGE_SCRIPT, [f"/test-token?user={user}"])
        return page


@pytest.fixture
def host_of(tokens: Tokens) -> Iterator[Callable[[Stack], Host]]:
    yield lambda stack: Host(stack, tokens)


def subscribe(page: Page, channel: str) -> Any:
    """Subscribe; the reply, or the refusal's code."""
    return page.evaluate(
        """async (channel) => {
            try {
                return await window.client.subscribe(channel, (data) => window.got.push(data));
            } catch (error) {
                return error.code;
            }
        }""",
        channel,
    )


def publish(page: Page, channel: str, data: Any) -> Any:
    return page.evaluate(
        """async ([channel, data]) => {
            try { return await window.client.publish(channel, data); }
            catch (error) { return error.code; }
        }""",
        [channel, data],
    )


def wait_for(page: Page, expression: str) -> None:
    page.wait_for_function(expression, timeout=10_000)


def got(page: Page) -> list[Any]:
    return list(page.evaluate("window.got"))


def test_two_users_chat_on_a_channel_only_they_are_granted_and_a_refresh_removes_one(
    make_stack: Callable[..., Stack],
    host_of: Callable[[Stack], Host],
    new_page: Callable[[], Page],
) -> None:
    stack = make_stack()
    stack.wait_for_gateways()
    host = host_of(stack)
    host.scopes.update(alice=CHAT_SCOPE, bob=CHAT_SCOPE, carol="sub:chat:other")
    alice, bob, carol = (host.open(new_page(), user) for user in ("alice", "bob", "carol"))

    assert subscribe(alice, CHAT)["ok"] is True
    assert subscribe(bob, CHAT)["ok"] is True
    assert subscribe(carol, CHAT) == "not_granted"
    assert publish(carol, CHAT, "let me in") == "not_granted"

    assert publish(alice, CHAT, {"from": "alice", "text": "hi bob"})["ok"] is True
    wait_for(bob, "window.got.length === 1")
    assert publish(bob, CHAT, {"from": "bob", "text": "hi alice"})["ok"] is True
    wait_for(alice, "window.got.length === 2")
    assert (
        got(alice)
        == got(bob)
        == [
            {"from": "alice", "text": "hi bob"},
            {"from": "bob", "text": "hi alice"},
        ]
    )

    # The host narrows bob's scope; his next token says so, and a refresh applies it.
    host.scopes["bob"] = "sub:chat:other"
    reply = bob.evaluate("window.client.refresh()")
    assert reply["ok"] is True and host.minted["bob"] == 2
    assert bob.evaluate("window.unsubscribed") == [f"{CHAT}:scope_changed"]

    assert publish(alice, CHAT, {"from": "alice", "text": "still there?"})["ok"] is True
    wait_for(alice, "window.got.length === 3")
    # Had bob got the message, it would have come before this push, sent after it.
    publish_push(stack.redis, stack.settings.redis_prefix, "bob", "marker")
    wait_for(bob, "window.pushes.length === 1")
    assert len(got(bob)) == 2
    assert publish(bob, CHAT, "back?") == "not_granted"
    # Without a reconnect: one token fetch for the socket, one for the refresh.
    assert bob.evaluate("window.statuses") == ["connecting", "open"]
    assert len(stack.gateway.app.gateway.registry.connections_of("bob")) == 1


def test_the_client_refreshes_before_the_deadline_and_stays_connected(
    make_stack: Callable[..., Stack],
    host_of: Callable[[Stack], Host],
    new_page: Callable[[], Page],
) -> None:
    stack = make_stack(max_connection_age=2)
    stack.wait_for_gateways()
    host = host_of(stack)
    host.scopes["alice"] = CHAT_SCOPE
    page = host.open(new_page(), "alice")
    assert subscribe(page, CHAT)["ok"] is True
    page.wait_for_timeout(3_500)  # past the 2 s maximum age: refreshed at least once
    assert host.minted["alice"] >= 3
    assert page.evaluate("window.statuses") == ["connecting", "open"]
    assert page.evaluate("window.refreshErrors") == []
    publish_message(stack.redis, stack.settings.redis_prefix, CHAT, "still subscribed")
    wait_for(page, "window.got.length === 1")


def test_the_client_subscribes_its_channels_again_after_a_reconnect(
    make_stack: Callable[..., Stack],
    host_of: Callable[[Stack], Host],
    new_page: Callable[[], Page],
) -> None:
    stack = make_stack()
    stack.wait_for_gateways()
    host = host_of(stack)
    host.scopes["alice"] = CHAT_SCOPE + " sub:news"
    page = host.open(new_page(), "alice")
    assert subscribe(page, CHAT)["ok"] is True
    assert subscribe(page, "news")["ok"] is True
    host.scopes["alice"] = CHAT_SCOPE  # the next token no longer grants news
    registry = stack.gateway.app.gateway.registry
    [connection] = registry.connections_of("alice")
    stack.gateway.loop.call_soon_threadsafe(connection.close, 1011, "internal error")
    wait_for(page, 'window.statuses.filter((state) => state === "open").length === 2')
    wait_for(page, "window.unsubscribed.length === 1")
    assert page.evaluate("window.unsubscribed") == ["news:not_granted"]
    publish_message(stack.redis, stack.settings.redis_prefix, CHAT, "after the reconnect")
    wait_for(page, "window.got.length === 1")
    assert got(page) == ["after the reconnect"]


def test_send_reaches_the_backends_inbox_and_unsubscribe_stops_the_messages(
    make_stack: Callable[..., Stack],
    host_of: Callable[[Stack], Host],
    new_page: Callable[[], Page],
    redis_url: str,
    request: pytest.FixtureRequest,
) -> None:
    request_cleanup = request.addfinalizer
    stack = make_stack()
    stack.wait_for_gateways()
    backend = sync_client(redis_url, timeout=2)
    request_cleanup(backend.close)
    inbox = Inbox(backend, "wsauth:", group="g", consumer="c")
    inbox.ensure_group()
    host = host_of(stack)
    host.scopes["alice"] = CHAT_SCOPE
    page = host.open(new_page(), "alice")
    assert page.evaluate("window.client.send({order: 42})")["ok"] is True
    [message] = inbox.read(block=2.0)
    assert (message.sub, message.sid, message.data) == ("alice", "sid-alice", {"order": 42})
    assert subscribe(page, CHAT)["ok"] is True
    assert page.evaluate(f"window.client.unsubscribe({json.dumps(CHAT)})")["ok"] is True
    assert publish(page, CHAT, "nobody listens")["ok"] is True
    publish_push(stack.redis, stack.settings.redis_prefix, "alice", "marker")
    wait_for(page, "window.pushes.length === 1")
    assert got(page) == []
    refused = page.evaluate(
        "window.client.publish('chat:elsewhere', 1).catch((error) => error.code)"
    )
    assert refused == "not_granted"
