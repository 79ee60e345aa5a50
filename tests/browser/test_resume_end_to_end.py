"""``wsauth.js`` resumes in Chromium against real processes: a gateway killed mid-stream.

Everything is real: the issuer (in-process werkzeug, its demo login and
``/ws-token``), Redis, and two ``wsauth gateway`` processes A and B sharing the
keys and Redis, with ``WSAUTH_HISTORY_CHANNELS=demo`` (the demo issuer grants
``sub:demo pub:demo``). The page logs in and loads ``/static/wsauth.js`` from
the issuer; the module fetches its token from ``/ws-token`` as the demo page
does. Between the page and the gateways sits a loopback TCP proxy — the load
balancer (:mod:`tests.browser.tcp_proxy`): the issuer hands out the proxy's URL,
and the test decides which node a new connection reaches.

What is asserted comes from outside the page: the issuer's ``/metrics`` (token
requests it answered), the gateways' ``/metrics`` (handshakes by outcome), the
proxy (which node each connection went to), and what the page recorded through
the module's callbacks (welcomes, channel messages with their offsets).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
from playwright.sync_api import Page, WebSocket
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

from tests.browser.conftest import ALICE, wait_for_subscribers
from tests.browser.gateway_process import GatewayNode, gateway_node
from tests.browser.tcp_proxy import TcpProxy, tcp_proxy
from tests.support.issuer_server import run_issuer
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import Unavailable
from wsauth.shared.state.events import publish_message
from wsauth.shared.state.history import History
from wsauth.shared.state.redis_server import free_port

CHANNEL = "demo"  # granted to every demo user: sub:demo pub:demo
TOTAL = 3_000
RATE = 500  # messages per second: six seconds of stream
KILL_AT = 1_000  # messages the page has received when A is killed
TOKEN_ENDPOINT = "wsauth.ws_token"  # the Flask endpoint of POST /ws-token

PAGE_SCRIPT = """
async ([username, password]) => {
  const login = await fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-WSAuth-CSRF": "1" },
    body: JSON.stringify({ username, password }),
  });
  if (!login.ok) throw new Error(`login answered ${login.status}`);
  const { connect } = await import("/static/wsauth.js");
  window.welcomes = [];
  window.got = [];
  window.closes = [];
  window.recoveries = [];
  window.client = connect({
    baseDelay: 50,
    onMessage: (message) => { if (message.type === "welcome") window.welcomes.push(message); },
    onClose: (info) => window.closes.push(info),
    onRecovered: (channel, reply) => window.recoveries.push({ channel, ...reply }),
  });
  await new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (window.client.state === "open" && window.welcomes.length === 1) return resolve();
      if (Date.now() - started > 10000) return reject(new Error(window.client.state));
      setTimeout(check, 10);
    };
    check();
  });
}
"""

LAST_ARRIVED = f"window.got.length > 0 && window.got[window.got.length - 1][2] === {TOTAL - 1}"

SUBSCRIBE = """
(channel) => window.client.subscribe(channel, (data, message) => {
  window.got.push([message.offset, message.epoch, data]);
})
"""


@dataclass
class Cluster:
    """The issuer, gateways A and B, and the proxy in front of them (routing to A)."""

    issuer_url: str
    a: GatewayNode
    b: GatewayNode
    proxy: TcpProxy
    settings: Settings

    def open_page(self, page: Page) -> Page:
        """Log in on the issuer's origin and connect with wsauth.js (one token fetch)."""
        # A document the real issuer serves (its 404 page), so the page and the module
        # are the issuer's origin, as the demo page is.
        page.goto(f"{self.issuer_url}/chat")
        page.evaluate(PAGE_SCRIPT, list(ALICE))
        return page

    def token_requests(self) -> tuple[int, int]:
        """From the issuer's ``/metrics``: requests to ``/ws-token`` (any status), and
        tokens it issued to browsers."""
        families = _metrics(self.issuer_url)
        requested = sum(
            sample.value
            for sample in families["wsauth_issuer_http_requests"]
            if sample.name.endswith("_total") and sample.labels["endpoint"] == TOKEN_ENDPOINT
        )
        issued = sum(
            sample.value
            for sample in families["wsauth_issuer_tokens_issued"]
            if sample.name.endswith("_total") and sample.labels["client"] == "browser"
        )
        return int(requested), int(issued)


def _metrics(base_url: str) -> dict[str, list[Any]]:
    answer = requests.get(f"{base_url}/metrics", timeout=5)
    answer.raise_for_status()
    return {
        family.name: list(family.samples) for family in text_string_to_metric_families(answer.text)
    }


def handshakes(node: GatewayNode) -> dict[str, int]:
    """A gateway's ``wsauth_gateway_handshakes_total`` by outcome (non-zero ones)."""
    return {
        sample.labels["outcome"]: int(sample.value)
        for sample in _metrics(node.http_url)["wsauth_gateway_handshakes"]
        if sample.name.endswith("_total") and sample.value
    }


def address(node: GatewayNode) -> tuple[str, int]:
    parts = urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def cluster(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Cluster]:
    issuer_url = f"http://127.0.0.1:{free_port()}"
    history = {"WSAUTH_HISTORY_CHANNELS": CHANNEL}
    with contextlib.ExitStack() as stack:
        base = make_settings(issuer=issuer_url, history_channels=CHANNEL)
        a = stack.enter_context(gateway_node(base, tmp_path / "gateway-a.log", env=history))
        b = stack.enter_context(gateway_node(base, tmp_path / "gateway-b.log", env=history))
        proxy = stack.enter_context(tcp_proxy(address(a)))
        # The issuer hands out the proxy's URL: the load balancer's, as in production.
        settings = base.replace(gateway_url=f"ws://127.0.0.1:{proxy.port}/ws")
        UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
        port = int(issuer_url.rsplit(":", 1)[1])
        stack.enter_context(run_issuer(settings, port=port))
        wait_for_subscribers(redis_client, settings, 2)
        yield Cluster(issuer_url, a, b, proxy, settings)
    # After the graceful shutdown of whichever gateway is still running.
    logs = "\n".join(path.read_text() for path in tmp_path.glob("gateway-*.log"))
    assert "Traceback" not in logs


def welcome_tickets(page: Page) -> list[str]:
    """The resume tickets of the welcomes the page receives, read off the wire by
    Playwright (the module keeps them from the page's callbacks)."""
    tickets: list[str] = []

    def on_socket(socket: WebSocket) -> None:
        def on_frame(payload: str | bytes) -> None:
            with contextlib.suppress(ValueError, TypeError):
                frame = json.loads(payload)
                if frame.get("type") == "welcome" and "resume" in frame:
                    tickets.append(frame["resume"])

        socket.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return tickets


def spend(url: str, ticket: str, origin: str) -> dict[str, Any]:
    """Resume with ``ticket`` as a browser would (subprotocols, Origin); the welcome."""
    with connect(
        url,
        subprotocols=[Subprotocol("wsauth"), Subprotocol(f"wsauth.resume.{ticket}")],
        origin=Origin(origin),
        open_timeout=5,
    ) as socket:
        welcome: dict[str, Any] = json.loads(socket.recv(timeout=5))
        return welcome


def publisher(settings: Settings, stop: threading.Event, errors: list[BaseException]) -> None:
    """A backend publishing 0, 1, ... TOTAL-1 on the channel at RATE per second, through
    the channel's history (as ``publish_message(..., history=...)`` in any backend)."""
    client = redis.Redis.from_url(settings.effective_redis_url, socket_timeout=2)
    history = History.from_settings(settings)
    began = time.monotonic()
    try:
        for n in range(TOTAL):
            if stop.is_set():
                return
            publish_message(client, settings.redis_prefix, CHANNEL, n, history=history)
            ahead = began + (n + 1) / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    except (Unavailable, redis.RedisError) as error:
        errors.append(error)
    finally:
        client.close()


def test_a_page_on_a_killed_gateway_resumes_on_the_other_and_misses_nothing(
    cluster: Cluster, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    tickets = welcome_tickets(page)
    cluster.open_page(page)
    assert cluster.token_requests() == (1, 1)
    reply = page.evaluate(SUBSCRIBE, CHANNEL)
    assert reply["ok"] is True

    stop, errors = threading.Event(), list[BaseException]()
    stream = threading.Thread(target=publisher, args=(cluster.settings, stop, errors))
    stream.start()
    try:
        page.wait_for_function(f"window.got.length >= {KILL_AT}", timeout=10_000)
        # The balancer sends new connections to B; A dies without a close frame.
        cluster.proxy.route_to(address(cluster.b))
        cluster.a.kill()
        # Until the last message published arrives (after any recovered ones).
        page.wait_for_function(LAST_ARRIVED, timeout=20_000)
    finally:
        stop.set()
        stream.join(timeout=10)
    assert errors == []
    page.wait_for_timeout(200)  # a duplicate of the last messages would land by now

    # (1) The page came back on B, and B's welcome says it resumed.
    assert cluster.proxy.routed == [address(cluster.a), address(cluster.b)]
    welcomes = page.evaluate("window.welcomes")
    assert [welcome.get("resumed", False) for welcome in welcomes] == [False, True]
    assert all("resume" not in welcome for welcome in welcomes)  # kept from the page
    assert handshakes(cluster.b) == {"accepted": 1}
    assert page.evaluate("[window.client.tokenFetches, window.client.resumes]") == [1, 1]
    [recovery] = page.evaluate("window.recoveries")
    assert (recovery["channel"], recovery["recovered"]) == (CHANNEL, True)

    # (2) The issuer saw no token request after the first one.
    assert cluster.token_requests() == (1, 1)

    # (3) Every message exactly once, in order: offsets 1..TOTAL of one epoch, data 0..TOTAL-1.
    got = page.evaluate("window.got")
    assert [offset for offset, _, _ in got] == [str(n) for n in range(1, TOTAL + 1)]
    assert len({epoch for _, epoch, _ in got}) == 1
    assert [data for _, _, data in got] == list(range(TOTAL))

    # The ticket A handed out was spent by the resume: replaying it is refused before
    # the upgrade.
    assert len(tickets) == 2
    with pytest.raises(InvalidStatus) as refused:
        spend(cluster.b.url, tickets[0], cluster.issuer_url)
    response = refused.value.response
    assert (response.status_code, json.loads(response.body or b"{}")) == (
        401,
        {"error": "ticket_replayed"},
    )


def test_a_ticket_spent_by_someone_else_is_refused_and_the_page_takes_one_fresh_token(
    cluster: Cluster, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    tickets = welcome_tickets(page)
    cluster.open_page(page)
    assert cluster.token_requests() == (1, 1)
    [ticket] = tickets

    # Someone who copied the page's ticket uses it first: it works, once.
    assert spend(cluster.a.url, ticket, cluster.issuer_url)["resumed"] is True
    # Then the page's connection drops (a network blip): the page offers its spent
    # ticket, the gateway refuses it before the upgrade, the page takes a fresh token.
    assert cluster.proxy.sever() == 1
    page.wait_for_function("window.welcomes.length === 2", timeout=10_000)

    assert handshakes(cluster.a) == {"accepted": 3, "ticket_replayed": 1}
    assert cluster.token_requests() == (2, 2)
    welcomes = page.evaluate("window.welcomes")
    assert [welcome.get("resumed", False) for welcome in welcomes] == [False, False]
    assert page.evaluate("[window.client.tokenFetches, window.client.resumes]") == [2, 0]
    closes = page.evaluate("window.closes.map((close) => [close.code, close.delay])")
    assert [code for code, _ in closes] == [1006, 1006]
    assert closes[1][1] == 0  # the refused ticket: a fresh token at once, no backoff
    assert cluster.proxy.routed == [address(cluster.a)] * 3
    assert page.evaluate("window.client.state") == "open"
