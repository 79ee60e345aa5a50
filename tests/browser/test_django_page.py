"""The Django example project's chat page in headless Chromium: log in with Django's own form,
the page connects with the token Django rendered into it, and reconnects with one fetched
from the token view (Django's CSRF token) when the gateway asks it to re-authenticate."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect

from tests.support.django_example import PASSWORD, DjangoSite, run_django_site
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.welcome import welcome_text
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.redis_server import free_port
from wsauth.ws.lifetime import REAUTHENTICATE


@pytest.fixture
def site_and_gateway(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[DjangoSite, GatewayHandle]]:
    site_port, gateway_port = free_port(), free_port()
    settings = make_settings(
        gateway_url=f"ws://127.0.0.1:{gateway_port}/ws",
        allowed_origins=f"http://127.0.0.1:{site_port}",  # the Django pages may connect
    )
    with (
        run_gateway(settings, port=gateway_port) as gateway,
        run_django_site(settings, tmp_path / "db.sqlite3", port=site_port) as site,
    ):
        yield site, gateway


def test_the_django_page_connects_with_its_rendered_token_and_reconnects_with_a_fetched_one(
    site_and_gateway: tuple[DjangoSite, GatewayHandle],
    new_page: Callable[[], Page],
    redis_client: redis.Redis,
) -> None:
    site, gateway = site_and_gateway
    page = new_page()
    page.goto(f"{site.url}/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    log = page.locator("#log li")
    expect(log.first).to_have_text(re.compile(f"^{welcome_text('alice')}$"))
    publish_push(redis_client, "wsauth:", "alice", "hello from a backend")
    expect(log.nth(1)).to_have_text('{"type":"push","data":"hello from a backend"}')
    # 4002: the page fetches a fresh token from the token view (POST, X-CSRFToken).
    gateway.call(
        lambda: gateway.app.gateway.close_connections(code=REAUTHENTICATE, reason="reauthenticate")
    )
    expect(log.nth(2)).to_have_text("closed 4002")
    expect(log.nth(3)).to_have_text(re.compile(f"^{welcome_text('alice')}$"))
