"""wsauth.js recovers the user's pushes after a reconnect, in Chromium, against a real gateway.

The gateway keeps each user's pushes (``WSAUTH_HISTORY_USERS``); the page keeps its
position and offers it when it comes back (``wsauth.since.<offset>.<epoch>``). The
tokens come from a token endpoint routed on the issuer's origin that mints real
tokens with the stack's key and Redis (as in test_channels.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Route

from tests.browser.conftest import Stack
from tests.ws.conftest import Tokens, tokens
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.history import History

__all__ = ["tokens"]  # the gateway tests' token builder, as a fixture here too

# The first backoff after a dropped connection is exactly 1 s (random() = 0.5 of
# 2 s): the pushes the test publishes meanwhile are missed by the page.
PAGE_SCRIPT = """
async ([tokenUrl]) => {
  const { connect } = await import("/static/wsauth.js");
  window.pushes = [];
  window.statuses = [];
  window.recovered = [];
  window.client = connect({
    tokenUrl,
    baseDelay: 2000,
    random: () => 0.5,
    onStatus: (status) => window.statuses.push(status.state),
    onMessage: (message) => { if (message.type === "push") window.pushes.push(message); },
    onPushRecovered: (push) => window.recovered.push(push),
  });
}
"""


def serve_tokens(stack: Stack, tokens: Tokens, user: str) -> Callable[[Route], None]:
    def serve(route: Route) -> None:
        token, claims = tokens.issue(subject=user, sid=f"sid-{user}", issuer=stack.issuer_url)
        body = {"token": token, "expires_in": claims.exp - claims.iat, "url": stack.gateway.ws_url}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    return serve


def push_to(stack: Stack, user: str, data: Any) -> None:
    history = History.from_settings(stack.settings)
    publish_push(stack.redis, stack.settings.redis_prefix, user, data, history=history)


def opened(page: Page, count: int) -> None:
    page.wait_for_function(
        f'window.statuses.filter((state) => state === "open").length === {count}', timeout=10_000
    )


def test_pushes_published_while_the_page_was_away_arrive_after_the_reconnect_in_order_once(
    make_stack: Callable[..., Stack], tokens: Tokens, new_page: Callable[[], Page]
) -> None:
    stack = make_stack(history_users=True)
    stack.wait_for_gateways()
    page = new_page()
    page.route(
        lambda url: url.startswith(f"{stack.issuer_url}/test-token"),
        serve_tokens(stack, tokens, "alice"),
    )
    page.goto(f"{stack.issuer_url}/chat")  # a document of the issuer's origin (its 404 page)
    page.evaluate(PAGE_SCRIPT, ["/test-token"])
    opened(page, 1)
    for number in range(1, 4):
        push_to(stack, "alice", number)
    page.wait_for_function("window.pushes.length === 3", timeout=10_000)

    # The connection drops (1011); while the page waits out its backoff, 5 pushes go by.
    [connection] = stack.gateway.app.gateway.registry.connections_of("alice")
    stack.gateway.loop.call_soon_threadsafe(connection.close, 1011, "internal error")
    page.wait_for_function('window.statuses.at(-1) === "closed"', timeout=10_000)
    for number in range(4, 9):
        push_to(stack, "alice", number)
    assert page.evaluate("window.statuses.at(-1)") == "closed"  # still away: all 5 missed
    opened(page, 2)
    for number in range(9, 11):
        push_to(stack, "alice", number)
    page.wait_for_function("window.pushes.length >= 10", timeout=10_000)
    push_to(stack, "alice", "last")  # anything doubled would come before it
    page.wait_for_function('window.pushes.some((push) => push.data === "last")', timeout=10_000)

    pushes = page.evaluate("window.pushes")
    assert [push["data"] for push in pushes] == [*range(1, 11), "last"]
    offsets = [int(push["offset"]) for push in pushes]
    assert offsets == list(range(offsets[0], offsets[0] + 11))
    assert len({push["epoch"] for push in pushes}) == 1
    [recovered] = page.evaluate("window.recovered")
    assert recovered["recovered"] is True
    # It came back with its resume ticket: one token for the whole test.
    assert page.evaluate("[window.client.tokenFetches, window.client.resumes]") == [1, 1]
    assert page.evaluate("window.client.pushPosition") == {
        "offset": pushes[-1]["offset"],
        "epoch": pushes[-1]["epoch"],
    }
