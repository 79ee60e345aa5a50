"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, and a live stack.

Chromium is the system one (``/usr/bin/chromium``, Debian's ``chromium``
package, which ``.ci/run`` installs); Playwright only drives it, it never
downloads a browser. Without Chromium the tests fail with a message that
says how to install it: they never skip, so CI cannot go green without them.

Each test module gets one browser; each test its own context (a fresh
profile: no cookies or storage carried over) and its own issuer and gateway
on loopback ports, with the session's real Redis.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.demo_page import DemoPage
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import channel
from wsauth.shared.state.redis_server import free_port

CHROMIUM = Path(os.environ.get("WSAUTH_CHROMIUM", "/usr/bin/chromium"))
# Headless, and quiet: this machine's network is closed, and Chromium's
# background services would otherwise keep trying to reach Google.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALICE = ("alice", "alice-password-123")
BOB = ("bob", "bob-password-456")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium per test module; Playwright gives it a fresh profile directory."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser tests need Debian's chromium "
            "package. Install it with `apt-get install -y chromium` (.ci/run does this), "
            "or point WSAUTH_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium: Browser) -> Iterator[Callable[[], Page]]:
    """Open pages, each in its own browser context (its own cookie jar); all closed after."""
    contexts: list[BrowserContext] = []

    def open_page() -> Page:
        context = chromium.new_context()
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@dataclass
class Stack:
    """A live issuer and gateway sharing settings and one Redis."""

    issuer_url: str
    gateway: GatewayHandle
    settings: Settings
    redis: redis.Redis

    def wait_for_gateways(self, count: int = 1) -> None:
        """Wait until ``count`` gateways listen for events (a push before that is lost)."""
        wait_for_subscribers(self.redis, self.settings, count)


def wait_for_subscribers(client: redis.Redis, settings: Settings, count: int) -> None:
    deadline = time.monotonic() + 10
    name = channel(settings.redis_prefix)
    while True:
        subscribed = dict(client.pubsub_numsub(name)).get(name, 0)
        if int(subscribed) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{subscribed} gateway(s) subscribed to {name}, wanted {count}")
        time.sleep(0.02)


@pytest.fixture
def make_stack(
    make_settings: Callable[..., Settings], redis_client: redis.Redis
) -> Iterator[Callable[..., Stack]]:
    """Start an issuer and a gateway (settings overrides as given); stopped after the test.

    The demo users alice and bob exist in the stack's user store.
    """
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> Stack:
            issuer_port, gateway_port = free_port(), free_port()
            issuer_url = f"http://127.0.0.1:{issuer_port}"
            settings = make_settings(
                issuer=issuer_url,
                gateway_url=f"ws://127.0.0.1:{gateway_port}/ws",
                **overrides,
            )
            users = UserStore.in_dir(settings.keys_dir)
            for name, password in (ALICE, BOB):
                users.set_password(name, password)
            gateway = stack.enter_context(run_gateway(settings, port=gateway_port))
            stack.enter_context(run_issuer(settings, port=issuer_port))
            return Stack(issuer_url, gateway, settings, redis_client)

        yield start


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


@pytest.fixture
def demo(stack: Stack, new_page: Callable[[], Page]) -> DemoPage:
    """The demo page of ``stack``, in a fresh browser context, not yet logged in."""
    return DemoPage(new_page(), stack.issuer_url)
