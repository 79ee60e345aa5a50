"""End to end: a real issuer and a real gateway on loopback, sharing one real Redis.

The browser flow here is what a browser does on the wire — a cookie session,
`POST /ws-token` with the custom header, then the token offered as a
subprotocol with the page's Origin — driven by `requests` and the `websockets`
client; tests/browser/ drives a real Chromium through the same flow.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests
import websockets
from websockets.exceptions import InvalidStatus

from tests.support.gateway_server import run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

CSRF_HEADER = {"X-WSAuth-CSRF": "1"}
ALICE = ("alice", "correct horse battery staple")


@dataclass
class Stack:
    issuer_url: str
    ws_url: str
    settings: Settings


@pytest.fixture
def stack(make_settings: Callable[..., Settings]) -> Iterator[Stack]:
    """Issuer and gateway with one configuration, as `wsauth dev` runs them."""
    issuer_port, gateway_port = free_port(), free_port()
    issuer_url = f"http://127.0.0.1:{issuer_port}"
    settings = make_settings(issuer=issuer_url, gateway_url=f"ws://127.0.0.1:{gateway_port}/ws")
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    with (
        run_gateway(settings, port=gateway_port) as gateway,
        run_issuer(settings, port=issuer_port),
    ):
        yield Stack(issuer_url, gateway.ws_url, settings)


def browser_session(stack: Stack) -> requests.Session:
    session = requests.Session()
    answer = session.post(
        f"{stack.issuer_url}/login",
        json={"username": ALICE[0], "password": ALICE[1]},
        headers=CSRF_HEADER,
    )
    assert answer.status_code == 200, answer.text
    return session


def fetch_browser_token(stack: Stack, session: requests.Session) -> dict[str, Any]:
    answer = session.post(
        f"{stack.issuer_url}/ws-token", headers={**CSRF_HEADER, "Origin": stack.issuer_url}
    )
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


async def welcome(url: str, **options: Any) -> tuple[dict[str, Any], str | None]:
    async with websockets.connect(url, open_timeout=5, **options) as socket:
        message = json.loads(await asyncio.wait_for(socket.recv(), 5))
        return message, socket.subprotocol


def refusal(url: str, **options: Any) -> tuple[int, dict[str, Any]]:
    async def attempt() -> tuple[int, dict[str, Any]]:
        try:
            async with websockets.connect(url, open_timeout=5, **options):
                pass
        except InvalidStatus as error:
            return error.response.status_code, json.loads(error.response.body or b"{}")
        raise AssertionError("the handshake was accepted")

    return asyncio.run(attempt())


def test_browser_flow_login_token_subprotocol_welcome(stack: Stack) -> None:
    session = browser_session(stack)
    document = fetch_browser_token(stack, session)
    assert document["url"] == stack.ws_url
    assert document["expires_in"] == stack.settings.token_ttl
    message, subprotocol = asyncio.run(
        welcome(
            document["url"],
            subprotocols=["wsauth", f"wsauth.bearer.{document['token']}"],  # type: ignore[list-item]
            origin=stack.issuer_url,  # type: ignore[arg-type]
        )
    )
    assert message.items() >= {"type": "welcome", "sub": "alice"}.items()
    assert subprotocol == "wsauth"


def test_api_client_flow_basic_credentials_then_authorization_header(stack: Stack) -> None:
    client_id, secret = ClientStore.in_dir(stack.settings.keys_dir).add("reporting")
    answer = requests.post(f"{stack.issuer_url}/api/tokens", auth=(client_id, secret), timeout=5)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    message, _ = asyncio.run(
        welcome(stack.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    )
    assert message.items() >= {"type": "welcome", "sub": client_id}.items()


def test_a_used_token_replayed_is_refused(stack: Stack) -> None:
    token = fetch_browser_token(stack, browser_session(stack))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    asyncio.run(welcome(stack.ws_url, additional_headers=headers))
    assert refusal(stack.ws_url, additional_headers=headers) == (401, {"error": "token_replayed"})


def test_a_browser_token_from_another_origin_page_is_refused_and_not_spent(
    stack: Stack, redis_client: redis.Redis
) -> None:
    token = fetch_browser_token(stack, browser_session(stack))["token"]
    before = redis_client.keys("wsauth:jti:*")
    status = refusal(
        stack.ws_url,
        subprotocols=["wsauth", f"wsauth.bearer.{token}"],  # type: ignore[list-item]
        origin="http://evil.example",  # type: ignore[arg-type]
    )
    assert status == (403, {"error": "origin_not_allowed"})
    assert redis_client.keys("wsauth:jti:*") == before


def test_a_cross_site_page_cannot_get_a_browser_token(stack: Stack) -> None:
    session = browser_session(stack)
    no_header = session.post(f"{stack.issuer_url}/ws-token")
    foreign = session.post(
        f"{stack.issuer_url}/ws-token", headers={**CSRF_HEADER, "Origin": "http://evil.example"}
    )
    assert (no_header.status_code, foreign.status_code) == (403, 403)
    assert "token" not in no_header.text and "token" not in foreign.text


def test_no_log_line_of_either_service_contains_a_token_or_secret(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_id, secret = ClientStore.in_dir(stack.settings.keys_dir).add("logger-check")
    session = browser_session(stack)
    browser_token = fetch_browser_token(stack, session)["token"]
    api_token = requests.post(
        f"{stack.issuer_url}/api/tokens", auth=(client_id, secret), timeout=5
    ).json()["token"]
    asyncio.run(welcome(f"{stack.ws_url}?ws_token={browser_token}"))
    refusal(f"{stack.ws_url}?ws_token={browser_token}")  # replayed: logged as a refusal
    refusal(stack.ws_url, additional_headers={"Authorization": f"Bearer {api_token}x"})
    # The services' loggers only: the websockets *client* logs its own request headers.
    text = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in {"wsauth", "werkzeug", "tornado", "flask", "issuer", "ws"}
    )
    assert "reason=token_replayed" in text  # the refusals were logged ...
    for secret_value in (browser_token, api_token, secret, ALICE[1], "ws_token="):
        assert secret_value not in text  # ... without what must stay secret
    for part in browser_token.split(".") + api_token.split("."):
        assert part not in text
