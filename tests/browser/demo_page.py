"""The demo page as the browser tests see it: what a person clicks and reads, its token fetches."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Locator, Page, Request, Response, WebSocket, expect

TOKEN_PATH = "/ws-token"


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWS compact token, unverified (the tests only read its jti)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


@dataclass
class TokenFetch:
    """One ``POST /ws-token`` the page made, and what it got."""

    status: int
    jti: str | None


@dataclass
class DemoPage:
    page: Page
    base_url: str
    token_fetches: list[TokenFetch] = field(default_factory=list)
    token_requests: int = 0
    socket_urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("request", self._on_request)
        self.page.on("response", self._on_response)
        self.page.on("websocket", self._on_websocket)

    def _on_websocket(self, socket: WebSocket) -> None:
        self.socket_urls.append(socket.url)

    def _on_request(self, request: Request) -> None:
        if urlsplit(request.url).path == TOKEN_PATH:
            self.token_requests += 1

    def _on_response(self, response: Response) -> None:
        if urlsplit(response.url).path != TOKEN_PATH:
            return
        jti = None
        if response.ok:
            jti = str(token_claims(response.json()["token"])["jti"])
        self.token_fetches.append(TokenFetch(response.status, jti))

    # --- what a person does -------------------------------------------------------

    def open(self) -> None:
        self.page.goto(f"{self.base_url}/")

    def log_in(self, username: str, password: str) -> None:
        """Log in with the page's form (from the page shown now, or from a fresh load)."""
        if not self.page.get_by_label("Username").is_visible():
            self.open()
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.locator("#user")).to_have_text(username)

    def push(self, text: str) -> None:
        self.page.locator("#push-text").fill(text)
        self.page.locator("#push").click()
        expect(self.page.locator("#push-result")).to_have_text("sent")

    def log_out(self) -> None:
        self.page.locator("#logout").click()
        expect(self.page.locator("#logged-out")).to_be_visible()

    # --- what a person sees -----------------------------------------------------------

    @property
    def status(self) -> Locator:
        """The connection badge; its ``data-state`` is the client's state."""
        return self.page.locator("#status")

    @property
    def status_detail(self) -> Locator:
        return self.page.locator("#status-detail")

    def messages(self, kind: str) -> Locator:
        """Lines of the message list of one kind: welcome, push, status, message."""
        return self.page.locator(f"#messages li[data-kind={kind}]")

    def expect_state(self, state: str) -> None:
        expect(self.status).to_have_attribute("data-state", state)

    def jtis(self) -> list[str]:
        return [fetch.jti for fetch in self.token_fetches if fetch.jti is not None]
