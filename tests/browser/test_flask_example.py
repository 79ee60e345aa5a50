"""docs/examples/flask_app.py, as docs/howto/flask.md runs it: its own process and port, a real
gateway, the session's real Redis; driven over HTTP and WebSocket, and in Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from websockets.exceptions import InvalidStatus

from tests.realtime.conftest import close_code, open_socket
from tests.support.gateway_server import run_gateway
from tests.support.polling import wait_until
from tests.support.processes import stop_process
from tests.support.welcome import welcome_text
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port
from wsauth.ws.lifetime import REVOKED

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "flask_app.py"
ALICE = {"username": "alice", "password": "alice-password-123"}
CSRF = {"X-WSAuth-CSRF": "1"}


@dataclass
class Example:
    url: str
    settings: Settings


@pytest.fixture
def example(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Example]:
    """The example app in its own process, configured by WSAUTH_* variables, and a gateway."""
    app_port, gateway_port = free_port(), free_port()
    url = f"http://127.0.0.1:{app_port}"
    settings = make_settings(issuer=url, gateway_url=f"ws://127.0.0.1:{gateway_port}/ws")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    env.update(
        EXAMPLE_SECRET_KEY="example-secret-key-long-enough-0123456789",
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
        WSAUTH_REDIS_URL=str(settings.redis_url),
        WSAUTH_ISSUER=url,
        WSAUTH_GATEWAY_URL=settings.gateway_url,
    )
    log = (tmp_path / "example.log").open("w")
    with run_gateway(settings, port=gateway_port):
        app = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--port", str(app_port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def up() -> bool:
                assert app.poll() is None, (tmp_path / "example.log").read_text()
                try:
                    return requests.get(url, timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            wait_until(up, timeout=30, what="the example app to serve")
            yield Example(url, settings)
        finally:
            stop_process(app, timeout=10)
            log.close()


def test_the_example_logs_in_mints_a_token_that_connects_once_and_logout_closes_it(
    example: Example,
) -> None:
    with requests.Session() as browser:
        refused = browser.post(f"{example.url}/wsauth/ws-token", headers=CSRF, timeout=5)
        assert refused.status_code == 401
        browser.post(f"{example.url}/login", data=ALICE, timeout=5)
        answer = browser.post(f"{example.url}/wsauth/ws-token", headers=CSRF, timeout=5)
        assert answer.status_code == 200, answer.text
        grant = answer.json()
        assert grant["url"] == example.settings.gateway_url
        with open_socket(grant["url"], grant["token"]) as socket:
            with (
                pytest.raises(InvalidStatus) as replayed,
                open_socket(grant["url"], grant["token"]),
            ):
                pass  # pragma: no cover - the second use is refused
            assert replayed.value.response.status_code == 401  # single use
            browser.post(f"{example.url}/logout", timeout=5)
            assert close_code(socket) == REVOKED
        again = browser.post(f"{example.url}/wsauth/ws-token", headers=CSRF, timeout=5)
        assert again.status_code == 401


def test_the_example_page_connects_with_its_rendered_token_then_with_a_fetched_one(
    example: Example, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(example.url)
    page.fill("input[name=username]", ALICE["username"])
    page.fill("input[name=password]", ALICE["password"])
    page.click("text=Log in")
    log = page.locator("#log")
    welcome = welcome_text("alice")
    expect(log).to_have_text(re.compile(f"^{welcome}\\n$"))
    page.click("#reconnect")
    expect(log).to_have_text(re.compile(f"^{welcome}\\n{welcome}\\n$"))
